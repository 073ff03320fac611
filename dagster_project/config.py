"""Run-config plumbing shared by the assets: typed Dagster Config -> rosie_pipeline options."""

import dataclasses
from typing import Any

import dagster as dg


def dataclass_from_config(config: dg.Config, options_type: type[Any]) -> Any:
    """Build ``options_type`` from the config fields of the same names (lists become tuples)."""
    values = {}
    for field in dataclasses.fields(options_type):
        if hasattr(config, field.name):
            value = getattr(config, field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return options_type(**values)


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table for asset metadata (cells flattened to one line, pipes escaped)."""
    if not rows:
        return "_none_"
    cell = lambda value: str("" if value is None else value).replace("|", "\\|").replace("\n", " ").strip()  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
