"""The settings a Rosie home is built with, so that every way of running it builds the same thing.

Four layers, the later one winning: each asset's ``Config`` defaults; the sizes that suit this machine
(:mod:`dagster_project.sizes`); the home's own ``settings.yaml`` (``rosie demo`` writes it, people edit it);
and a run's own config (the Launchpad, ``rosie run --config``). :func:`with_settings` bakes the first three
into each asset's config schema when the definitions load, so the Launchpad shows them as the defaults,
automation launches its runs with them and ``rosie run`` uses them: opening the UI after ``rosie demo``
rebuilds nothing with other settings.

Both files have one form, ``ASSET: {FIELD: VALUE}``; run config files may also use the Launchpad's
``ops: {ASSET: {config: {FIELD: VALUE}}}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from dagster._config import Shape, validate_config

from rosie_pipeline.atomic import write_text_atomic
from rosie_pipeline.paths import RosieHome

Settings = dict[str, dict[str, Any]]

SETTINGS_FILE = "settings.yaml"
SETTINGS_HEADER = """\
# What this Rosie home is built with: ASSET: {FIELD: VALUE}, over each asset's defaults.
# `rosie run`, automation and the Launchpad's defaults all read it; a run's own config still wins.
# Reload the code location (or restart `make ui`) after editing.
"""


class SettingsError(ValueError):
    """Settings that name no asset or field, or a value of the wrong type; the message says which."""


def settings_path(home: RosieHome) -> Path:
    return home.root / SETTINGS_FILE


def load_run_config(path: Path) -> Settings:
    """Asset settings from a YAML or JSON file, in the short form or the Launchpad's."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read the run config {path}: {exc}") from exc
    ops = loaded.get("ops", loaded) if isinstance(loaded, dict) else None
    if not isinstance(ops, dict) or not all(isinstance(v, dict) for v in ops.values()):
        raise SettingsError(f"{path} is not run config: expected `ASSET: {{FIELD: VALUE}}` or "
                            "`ops: {ASSET: {config: {FIELD: VALUE}}}`")
    return {name: dict(entry.get("config", entry) if "ops" in loaded else entry) for name, entry in ops.items()}


def home_settings(home: RosieHome) -> Settings:
    """The home's ``settings.yaml``; none yet: no settings."""
    path = settings_path(home)
    return load_run_config(path) if path.exists() else {}


def remember_settings(home: RosieHome, settings: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``settings`` into the home's ``settings.yaml``, over what it already says, atomically."""
    merged = layered(home_settings(home), settings)
    path = settings_path(home)
    write_text_atomic(path, SETTINGS_HEADER + yaml.safe_dump(merged, sort_keys=True))
    return path


def layered(*layers: Mapping[str, Mapping[str, Any]]) -> Settings:
    """The layers merged per asset and field, the later one winning."""
    merged: Settings = {}
    for layer in layers:
        for name, values in layer.items():
            merged.setdefault(name, {}).update(values)
    return merged


def _config_shape(asset: dg.AssetsDefinition) -> Shape | None:
    field = asset.op.config_field
    return field.config_type if field is not None and isinstance(field.config_type, Shape) else None


def with_settings(assets: Sequence[dg.AssetsDefinition], settings: Mapping[str, Mapping[str, Any]],
                  source: str) -> list[dg.AssetsDefinition]:
    """``assets`` with ``settings`` as their config defaults; ``source`` names the settings in errors."""
    by_name = {asset.op.name: asset for asset in assets}
    configurable = sorted(name for name, asset in by_name.items() if _config_shape(asset) is not None)
    unknown = sorted(set(settings) - set(configurable))
    if unknown:
        raise SettingsError(f"{source} sets {', '.join(unknown)}, which no asset with settings is called; "
                            f"assets with settings: {', '.join(configurable)}")
    replaced = {name: _with_defaults(by_name[name], dict(values), source) for name, values in settings.items() if values}
    return [replaced.get(asset.op.name, asset) for asset in assets]


def _with_defaults(asset: dg.AssetsDefinition, values: dict[str, Any], source: str) -> dg.AssetsDefinition:
    name = asset.op.name
    shape = _config_shape(asset)
    assert shape is not None
    unknown = sorted(set(values) - set(shape.fields))
    if unknown:
        raise SettingsError(f"{source}: {name} has no setting {', '.join(unknown)}; its settings: "
                            f"{', '.join(sorted(shape.fields))}")
    fields = dict(shape.fields)
    for key, value in values.items():
        old = fields[key]
        checked = validate_config(old.config_type, value)
        if not checked.success:
            raise SettingsError(f"{source}: {name}.{key} = {value!r} is not a valid value: "
                                f"{'; '.join(error.message for error in checked.errors or ())}")
        fields[key] = dg.Field(old.config_type, default_value=value, is_required=False, description=old.description)
    op = asset.op.with_replaced_properties(name=name, config_schema=dg.Field(Shape(fields)))
    return dg.AssetsDefinition.dagster_internal_init(**{**asset.get_attributes_dict(), "node_def": op})
