"""The curation report: from the manifests the stages leave behind, what happened to each source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosie_pipeline.atomic import read_json, write_json_atomic, write_text_atomic
from rosie_pipeline.stats import StepStats


@dataclass
class CurationReport:
    rows: dict[str, dict[str, int]]
    reasons: dict[str, dict[str, int]]
    totals: dict[str, int]
    markdown: str
    json_path: Path


def _stats(manifests: list[Path]) -> StepStats:
    total = StepStats()
    for path in manifests:
        manifest = read_json(path)
        if manifest:
            total.merge(StepStats.from_dict(manifest["stats"]))
    return total


def build_report(ingested_dirs: dict[str, Path], filtered_dir: Path, dedup_dir: Path, out: Path) -> CurationReport:
    """What happened to each source (``ingested_dirs``: source name -> its ingest folder; the filtered folder
    holds one sub-folder per source name), written to ``out/report.{json,md}``."""
    dedup = (read_json(dedup_dir / "manifest.json") or {}).get("partitions", {})
    rows: dict[str, dict[str, int]] = {}
    reasons: dict[str, dict[str, int]] = {}
    for asset, folder in ingested_dirs.items():
        ingested = _stats(sorted(folder.glob("*/manifest.json")))
        filtered = _stats(sorted((filtered_dir / asset).glob("*/manifest.json")))
        dedup_stats = [p["stats"] for key, p in dedup.items() if key.startswith(f"{asset}/")]
        rows[asset] = {
            "ingested": ingested.records_out,
            "kept_by_rules": filtered.records_out,
            "exact_duplicates": sum(s["exact"] for s in dedup_stats),
            "near_duplicates": sum(s["near"] for s in dedup_stats),
            "final": sum(s["kept"] for s in dedup_stats),
        }
        reasons[asset] = dict(filtered.skipped.most_common())
    totals = {key: sum(row[key] for row in rows.values()) for key in next(iter(rows.values()), {})}
    markdown = _markdown(rows, reasons, totals)
    write_json_atomic(out / "report.json", {"sources": rows, "drop_reasons": reasons, "totals": totals})
    write_text_atomic(out / "report.md", markdown + "\n")
    return CurationReport(rows, reasons, totals, markdown, out / "report.json")


def _markdown(rows: dict[str, dict[str, int]], reasons: dict[str, dict[str, int]], totals: dict[str, Any]) -> str:
    lines = ["| source | ingested | kept by rules | exact dups | near dups | final |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, row in [*rows.items(), ("**total**", totals)]:
        if row:
            lines.append(f"| {name} | {row['ingested']:,} | {row['kept_by_rules']:,} | {row['exact_duplicates']:,} "
                         f"| {row['near_duplicates']:,} | {row['final']:,} |")
    lines += ["", "| source | drop reason | documents |", "| --- | --- | ---: |"]
    for name, counts in reasons.items():
        lines += [f"| {name} | {reason} | {n:,} |" for reason, n in list(counts.items())[:10]]
    return "\n".join(lines)
