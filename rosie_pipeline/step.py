"""Runs one step over one input (a landed file, an upstream partition) and writes its tables,
quarantine and manifest atomically.

The manifest is written last and names the input fingerprint and options: a re-run over an unchanged
input with the same options is a no-op, and a run killed before the manifest leaves nothing that a
later run would trust. :class:`Record` is that rule on its own ("is this output current?" / "commit it"),
and every stage uses it: ingest, curation and dialogue through ``run_step``, the tokenizer
(``training.json``), the shard builders (``build.json``); dedup, whose one manifest records every
partition, checks each partition's entry with :func:`matches`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from rosie_pipeline.atomic import atomic_path, read_json, remove_stale_temps, write_json_atomic
from rosie_pipeline.ingest.records import Rejected, Row
from rosie_pipeline.parquet import ParquetSink
from rosie_pipeline.stats import StepStats

#: Bump when a reader's output changes for the same input, so old outputs are rebuilt.
STEP_VERSION = 1
PROGRESS_EVERY = 10_000


@dataclass
class StepResult:
    stats: StepStats
    tables: dict[str, Path]
    quarantine: Path
    sample: list[dict[str, Any]] = field(default_factory=list)
    unchanged: bool = False


def fingerprint(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Name, size and mtime of each input: cheap, and changes whenever a file is replaced."""
    return [
        {"name": p.name, "size": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
        for p in sorted(paths)
    ]


def run_step(
    read: Callable[[], Iterable[Row | Rejected]],
    *,
    inputs: list[Path],
    out_dir: Path,
    schemas: dict[str, pa.Schema],
    quarantine_path: Path,
    options: dict[str, Any],
    force: bool = False,
    sample_size: int = 5,
    progress: Callable[[StepStats], None] | None = None,
) -> StepResult:
    """Consume ``read()`` into one Parquet file per table under ``out_dir``.

    ``options`` (JSON-able settings of the step) is part of what makes an output current.
    """
    record = Record(out_dir / "manifest.json")
    tables = {name: out_dir / f"{name}.parquet" for name in schemas}
    expected = {
        "version": STEP_VERSION,
        "inputs": fingerprint(inputs),
        "options": json.loads(json.dumps(options, default=str)),
    }
    previous = None if force else record.current(expected, tables.values())
    if previous is not None:
        return StepResult(
            StepStats.from_dict(previous["stats"]), tables, quarantine_path, previous.get("sample", []), True
        )

    remove_stale_temps(out_dir)
    remove_stale_temps(quarantine_path.parent)
    stats = StepStats(input_bytes=sum(p.stat().st_size for p in inputs if p.is_file()))
    sample: list[dict[str, Any]] = []
    source = ",".join(p.name for p in inputs)
    primary = next(iter(schemas))  # the table whose rows count as output (documents, dialogues)
    sinks = {name: ParquetSink(path, schemas[name]) for name, path in tables.items()}
    with contextlib.ExitStack() as stack:
        quarantine = stack.enter_context(open(stack.enter_context(atomic_path(quarantine_path)), "w", encoding="utf-8"))
        for sink in sinks.values():
            stack.enter_context(sink)
        for items_seen, item in enumerate(read(), start=1):
            if isinstance(item, Rejected):
                stats.records_in += 1
                stats.lost_bytes += item.lost_bytes
                (stats.bad if item.bad else stats.skipped)[item.reason] += 1
                if item.bad:
                    quarantine.write(json.dumps(item.quarantine_entry(source), ensure_ascii=False) + "\n")
            else:
                sinks[item.table].write(item.values)
                stats.records_in += item.consumed
                if item.table == primary:
                    stats.records_out += 1
                    if len(sample) < sample_size:
                        sample.append(_preview(item.values))
            if progress is not None and items_seen % PROGRESS_EVERY == 0:
                progress(stats)
        record.retract()  # the tables are renamed into place next: until the new record, none is vouched for
    record.commit({
        **expected,
        "stats": stats.to_dict(),
        "rows": {name: sink.rows_written for name, sink in sinks.items()},
        "sample": sample,
        "written_at": datetime.now(timezone.utc).isoformat(),
    })
    return StepResult(stats, tables, quarantine_path, sample)


def matches(record: dict[str, Any] | None, wanted: dict[str, Any], outputs: Iterable[Path] = ()) -> bool:
    """Whether ``record`` says ``wanted`` (each of its keys equal) and every output it vouches for exists."""
    return (
        record is not None
        and all(record.get(key) == value for key, value in wanted.items())
        and all(path.exists() for path in outputs)
    )


@dataclass(frozen=True)
class Record:
    """"Is this output current?" and "commit it", for every stage: a JSON file beside an output that names
    what it was made from (inputs, options, tokenizer…). It is written last and atomically, so an output
    without a record, or with one naming other inputs, is never trusted."""

    path: Path

    def read(self) -> dict[str, Any] | None:
        return read_json(self.path)

    def current(self, wanted: dict[str, Any], outputs: Iterable[Path] = ()) -> dict[str, Any] | None:
        """The record, when the output was made from ``wanted`` and ``outputs`` all exist; else None."""
        found = self.read()
        return found if matches(found, wanted, outputs) else None

    def commit(self, payload: dict[str, Any]) -> None:
        write_json_atomic(self.path, payload)

    def retract(self) -> None:
        """Withdraw the record before replacing the outputs it vouches for, so that a kill between the
        renames leaves no record (a re-run) rather than an old record over a mix of old and new tables."""
        self.path.unlink(missing_ok=True)


def is_current(out_dir: Path, inputs: Iterable[Path]) -> bool:
    """True when ``out_dir`` holds a complete output for exactly these input files (any options)."""
    record = Record(out_dir / "manifest.json")
    outputs = [out_dir / f"{name}.parquet" for name in (record.read() or {}).get("rows", {})]
    return record.current({"version": STEP_VERSION, "inputs": fingerprint(inputs)}, outputs) is not None


def _preview(row: dict[str, Any]) -> dict[str, Any]:
    if "turns" in row:  # a dialogue
        text = " / ".join(f"{t['speaker']}: {t['text'] or t['event']}" for t in row["turns"] if t["speaker"] != "system")
        return {"id": row["id"], "title": row["source"], "url": None, "chars": len(text), "text": text[:300]}
    text = row["text"]
    return {
        "id": row["id"],
        "title": row.get("title"),
        "url": row.get("url"),
        "chars": len(text),
        "text": text[:300] + ("…" if len(text) > 300 else ""),
    }


def committed_outputs(asset_dir: Path, table: str = "documents") -> dict[str, Path]:
    """Every partition folder under ``asset_dir`` whose manifest says it is complete: key -> table path."""
    found = {}
    for manifest in sorted(asset_dir.glob("*/manifest.json")):
        path = manifest.parent / f"{table}.parquet"
        if path.exists():
            found[manifest.parent.name] = path
    return found
