"""Readers that turn landed files (WARC/WET, Gutenberg text, Pushshift dumps) into documents.

Each reader streams its file and yields :class:`~rosie_pipeline.ingest.records.Row` and
:class:`~rosie_pipeline.ingest.records.Rejected` items; :mod:`rosie_pipeline.step` writes
them out atomically with their statistics.
"""
