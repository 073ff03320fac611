"""Rosie's data library: readers, cleaning, filters, dedup, dialogue building, tokenizer, shards.

Pure Python on polars/pyarrow and friends; it never imports dagster, so every step can be used and
tested on its own and orchestrated by anything.
"""
