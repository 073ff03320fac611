"""Thin Dagster orchestration for Rosie: assets call into rosie_pipeline (and launch rosie_model)."""
