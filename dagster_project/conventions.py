"""The Dagster conventions the UI rewards, applied to every asset in one place (``build_definitions``).

* ``code_version``: a digest of the source each asset runs (its group's asset module and the library code
  that does the work), so the UI marks an asset whose code changed since it was materialized. Automation
  does not act on it (it runs on new inputs), so a code change never rebuilds anything by itself.
* ``dagster/column_schema``: the columns of each Parquet asset with a fixed schema, from the very schema its
  writer uses (the token shards, whose types follow the tokenizer and length, report theirs when written).
* ``freshness_policy``: the ingest assets and the registered models are refreshed by the nightly run (03:00)
  when something new landed; a day without a refresh warns, a week fails.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Iterable
from datetime import timedelta
from functools import cache
from pathlib import Path

import dagster as dg
import pyarrow as pa

from rosie_pipeline.curate.dedup import DEDUP_SCHEMA
from rosie_pipeline.dialogue.schema import DIALOGUE_SCHEMA
from rosie_pipeline.documents import DOCUMENT_SCHEMA

#: The source each group's assets run: package folders or files, as ``package/path`` (``rosie_model`` is
#: located, never imported: dagster_project runs it only as a process).
GROUP_SOURCES = {
    "ingest": ("dagster_project/assets/ingest.py", "rosie_pipeline/ingest", "rosie_pipeline/step.py",
               "rosie_pipeline/documents.py", "rosie_pipeline/parquet.py"),
    "curate": ("dagster_project/assets/curate.py", "rosie_pipeline/curate", "rosie_pipeline/step.py",
               "rosie_pipeline/documents.py", "rosie_pipeline/parquet.py"),
    "dialogue": ("dagster_project/assets/dialogue.py", "rosie_pipeline/dialogue", "rosie_pipeline/chat_format.py",
                 "rosie_pipeline/step.py", "rosie_pipeline/parquet.py"),
    "tokenize": ("dagster_project/assets/tokenize.py", "rosie_pipeline/tokenize", "rosie_pipeline/chat_format.py",
                 "rosie_model/core/bootstrap.py"),
    "train": ("dagster_project/assets/train.py", "dagster_project/launch.py", "rosie_model/training",
              "rosie_model/core"),
    "evaluate": ("dagster_project/assets/evaluate.py", "dagster_project/launch.py", "rosie_model/evaluation",
                 "rosie_model/serving", "rosie_model/core", "rosie_pipeline/evalsets.py", "rosie_pipeline/scorecard.py"),
}
#: Parquet assets whose schema is fixed, and the schema their writer uses.
COLUMN_SCHEMAS = {
    "cc_documents": DOCUMENT_SCHEMA, "book_documents": DOCUMENT_SCHEMA, "reddit_threads": DOCUMENT_SCHEMA,
    "filtered_documents": DOCUMENT_SCHEMA, "deduplicated_documents": DEDUP_SCHEMA,
    "personality_dialogues": DIALOGUE_SCHEMA, "emotion_dialogues": DIALOGUE_SCHEMA, "memory_dialogues": DIALOGUE_SCHEMA,
}
#: Refreshed nightly when new data landed: a day without a refresh warns, a week fails.
NIGHTLY = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=7), warn_window=timedelta(hours=27))
FRESH_GROUPS = {"ingest"}
FRESH_ASSETS = {"registered_model", "bootstrap_registered_model"}


def _package_root(package: str) -> Path:
    """The folder holding ``package`` (found without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"cannot locate the {package} package")
    return Path(next(iter(spec.submodule_search_locations))).parent


def source_digest(paths: Iterable[Path]) -> str:
    """12 hex digits over the names and bytes of every source file under ``paths`` (each a file or a folder;
    names relative to it, so the digest does not depend on where the packages are installed)."""
    digest = hashlib.sha256()
    for path in paths:
        files = [path] if path.is_file() else sorted(
            f for f in path.rglob("*") if f.is_file() and f.suffix in (".py", ".yaml", ".html")
            and "__pycache__" not in f.parts)
        for file in files:
            name = file.name if file == path else file.relative_to(path).as_posix()
            digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@cache
def group_code_version(group: str) -> str:
    """The code version of the assets of ``group``."""
    return source_digest(_package_root(source.split("/", 1)[0]) / source for source in GROUP_SOURCES[group])


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(field.name, str(field.type)) for field in schema])


def parquet_column_schema(path: Path) -> dict[str, dg.TableSchema]:
    """Materialization metadata: the columns of a Parquet file as written."""
    import pyarrow.parquet as pq

    return {"dagster/column_schema": column_schema(pq.read_schema(path))}


def _conventional(spec: dg.AssetSpec) -> dg.AssetSpec:
    name = spec.key.to_user_string()
    metadata = dict(spec.metadata)
    if name in COLUMN_SCHEMAS:
        metadata["dagster/column_schema"] = column_schema(COLUMN_SCHEMAS[name])
    fresh = spec.group_name in FRESH_GROUPS or name in FRESH_ASSETS
    return spec.replace_attributes(code_version=group_code_version(spec.group_name or ""), metadata=metadata,
                                   freshness_policy=NIGHTLY if fresh else spec.freshness_policy)


def with_conventions(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """``assets`` with their code versions, column schemas and freshness policies."""
    return list(dg.map_asset_specs(_conventional, assets))
