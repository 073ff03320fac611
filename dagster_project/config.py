"""Run config made from the library's options: one definition per option.

Each asset's Dagster ``Config`` is generated from the rosie_pipeline options dataclass it feeds
(:func:`options_config`), on top of a base class that holds only what the asset itself reads (check floors,
``force``). A new library option therefore shows up in the Launchpad with its default and its ``#:`` comment
as the description, and :func:`dataclass_from_config` refuses a config that lacks one, so nothing is lost
between the two.
"""

import dataclasses
import inspect
import re
import typing
from typing import Any

import dagster as dg
import pydantic

_DOC_LINE = re.compile(r"^\s*#:\s?(.*)$")
_FIELD_LINE = re.compile(r"^\s*(\w+)\s*:")


def field_docs(options_type: type[Any]) -> dict[str, str]:
    """The ``#:`` comments above each field of a dataclass (its documentation in the library's source)."""
    docs, pending = {}, []
    for line in inspect.getsource(options_type).splitlines():
        if (doc := _DOC_LINE.match(line)) is not None:
            pending.append(doc.group(1))
        elif (name := _FIELD_LINE.match(line)) is not None and pending:
            docs[name.group(1)] = " ".join(pending)
            pending = []
        else:
            pending = []
    return docs


def _config_type(hint: Any) -> Any:
    """Dagster config has lists where the library has immutable tuples."""
    if typing.get_origin(hint) is tuple:
        return list[typing.get_args(hint)[0]]
    return hint


def _config_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def options_config(options_type: type[Any], name: str, base: type[dg.Config] = dg.Config,
                   defaults: dict[str, Any] | None = None) -> type[dg.Config]:
    """A ``Config`` class named ``name`` with ``base``'s fields plus one per field of ``options_type``, with the
    library's defaults (or ``defaults``, where an asset wants another one) and field comments."""
    hints, docs, defaults = typing.get_type_hints(options_type), field_docs(options_type), defaults or {}
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(options_type):
        if field.name in defaults:
            default = defaults[field.name]
        elif field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = ...
        fields[field.name] = (_config_type(hints[field.name]),
                              pydantic.Field(default=_config_value(default), description=docs.get(field.name)))
    doc = f"{base.__doc__ or ''}\n\nThe options of {options_type.__module__}.{options_type.__name__}.".strip()
    return pydantic.create_model(name, __base__=base, __doc__=doc, __module__=base.__module__, **fields)


def dataclass_from_config(config: dg.Config, options_type: type[Any]) -> Any:
    """Build ``options_type`` from the config fields of the same names (lists become tuples where the library
    wants tuples). A field the config lacks is an error, never silently the library's default."""
    hints = typing.get_type_hints(options_type)
    missing = [f.name for f in dataclasses.fields(options_type) if not hasattr(config, f.name)]
    if missing:
        raise TypeError(f"{type(config).__name__} lacks {missing} of {options_type.__name__}: make it with "
                        "options_config so every option is reachable")
    values = {}
    for field in dataclasses.fields(options_type):
        value = getattr(config, field.name)
        values[field.name] = tuple(value) if typing.get_origin(hints[field.name]) is tuple and value is not None else value
    return options_type(**values)


def md_table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table for asset metadata (cells flattened to one line, pipes escaped)."""
    if not rows:
        return "_none_"
    cell = lambda value: str("" if value is None else value).replace("|", "\\|").replace("\n", " ").strip()  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
