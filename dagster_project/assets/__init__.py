"""Rosie's assets, one module per group of the asset graph."""
