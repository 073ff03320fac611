"""Rosie's model package: architecture, training engine, evaluation, generation and export.

It runs alone on a GPU box: it never imports dagster or rosie_pipeline and reads only the token-shard
contract written by the data pipeline (see DESIGN.md).
"""
