"""Curate group: filtered_documents -> deduplicated_documents -> curation_report.

The ingest assets are partitioned per landed file; these assets are not, but they work partition by
partition: each run curates (and dedups) only the upstream partitions that are new or changed since
their last run, so a refresh that lands one file costs one file.
"""

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import dagster as dg

import pyarrow.parquet as pq

from dagster_project.assets.ingest import INGEST_SOURCES
from dagster_project.config import dataclass_from_config, md_table, options_config
from dagster_project.resources import RosieHomeResource
from rosie_pipeline.curate.dedup import DedupOptions, run_dedup
from rosie_pipeline.curate.pipeline import DROPPED_SCHEMA, Curator, RuleSet, default_rules
from rosie_pipeline.curate.report import build_report
from rosie_pipeline.documents import DOCUMENT_SCHEMA, schema_mismatches
from rosie_pipeline.parquet import iter_rows
from rosie_pipeline.stats import StepStats
from rosie_pipeline.step import committed_outputs, run_step

INGEST_ASSET_NAMES = [spec.asset_name for spec in INGEST_SOURCES]


SourceRules = options_config(RuleSet, "SourceRules")


def _rules_config(source: str) -> SourceRules:
    """The library's default rule set of ``source`` as a config default (shown in the Launchpad)."""
    rules = default_rules()[source]
    return SourceRules(**{k: list(v) if isinstance(v, tuple) else v for k, v in vars(rules).items()})


class CurationConfig(dg.Config):
    web: SourceRules = _rules_config("web")
    books: SourceRules = _rules_config("books")
    reddit: SourceRules = _rules_config("reddit")
    dialogue: SourceRules = _rules_config("dialogue")
    force: bool = False
    """Re-curate every partition even when its input and the rules are unchanged."""

    def rule_sets(self) -> dict[str, RuleSet]:
        return {source: dataclass_from_config(getattr(self, source), RuleSet)
                for source in ("web", "books", "reddit", "dialogue")}


@dg.asset(
    group_name="curate",
    deps=INGEST_ASSET_NAMES,
    kinds={"parquet"},
    check_specs=[
        dg.AssetCheckSpec("schema", asset="filtered_documents", description="Kept documents follow the contract."),
        dg.AssetCheckSpec("non_empty", asset="filtered_documents", description="Some documents survive curation."),
    ],
    description="Normalised, language-identified documents that pass their source's quality rules, with PII "
    "redacted; dropped documents are kept beside them with dropped_by for audit.",
)
def filtered_documents(
    context: dg.AssetExecutionContext, config: CurationConfig, rosie: RosieHomeResource
) -> dg.MaterializeResult:
    home, lake = rosie.home, rosie.lake
    curator = Curator(config.rule_sets())
    total = StepStats()
    by_source: dict[str, StepStats] = {}
    kept_paths = []
    for asset_name in INGEST_ASSET_NAMES:
        for key, path in lake.partitions(asset_name).items():
            out_dir = lake["filtered_documents"] / asset_name / key
            result = run_step(
                lambda path=path: curator.curate(iter_rows(path)),
                inputs=[path],
                out_dir=out_dir,
                schemas={"documents": DOCUMENT_SCHEMA, "dropped": DROPPED_SCHEMA},
                quarantine_path=home.quarantine / "filtered_documents" / asset_name / f"{key}.jsonl",
                options=curator.settings(),
                force=config.force,
            )
            state = "unchanged" if result.unchanged else "curated"
            context.log.info(f"{state} {asset_name}[{key}]: kept {result.stats.records_out:,} "
                             f"of {result.stats.records_in:,}")
            total.merge(result.stats)
            by_source.setdefault(asset_name, StepStats()).merge(result.stats)
            kept_paths.append(result.tables["documents"])
    if not kept_paths:
        context.log.warning("no ingested partitions yet: materialize the ingest group first")
    mismatched = [f"{p}: {m}" for p in kept_paths for m in schema_mismatches(pq.read_schema(p), DOCUMENT_SCHEMA)]
    per_source = [[name, s.records_in, s.records_out, f"{s.records_out / s.records_in:.1%}" if s.records_in else "-"]
                  for name, s in by_source.items()]
    per_filter = [[name, f.seen, f.dropped, f"{f.dropped / f.seen:.1%}" if f.seen else "-", f"{f.docs_per_second:,.0f}"]
                  for name, f in curator.filter_stats.items()]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total.records_out,
            "documents_in": total.records_in,
            "documents_kept": total.records_out,
            "kept_share": round(total.records_out / total.records_in, 4) if total.records_in else 0.0,
            "drop_reasons": dg.MetadataValue.md(total.reasons_markdown()),
            "by_source": dg.MetadataValue.md(md_table(["input", "documents", "kept", "kept share"], per_source)),
            "filters": dg.MetadataValue.md(md_table(["filter (partitions curated this run)", "documents", "dropped",
                                                     "drop share", "docs/s"], per_filter)),
            "sample_kept": dg.MetadataValue.md(_sample_documents(lake["filtered_documents"], "documents")),
            "sample_dropped": dg.MetadataValue.md(_sample_documents(lake["filtered_documents"], "dropped")),
            "path": dg.MetadataValue.path(str(lake["filtered_documents"])),
        },
        check_results=[
            dg.AssetCheckResult(check_name="schema", passed=not mismatched,
                                metadata={"mismatched": "; ".join(mismatched) or "none"}),
            dg.AssetCheckResult(check_name="non_empty", passed=total.records_out > 0,
                                metadata={"documents_kept": total.records_out}),
        ],
    )


def _sample(paths: Iterable[Path], header: list[str], cells: Callable[[dict[str, Any]], list[Any]], n: int = 5) -> str:
    """A markdown table of the first ``n`` rows found in ``paths``."""
    rows: list[list[Any]] = []
    for path in paths:
        for row in iter_rows(path, batch_rows=n):
            rows.append(cells(row))
            if len(rows) >= n:
                return md_table(header, rows)
    return md_table(header, rows)


def _sample_documents(root: Path, table: str) -> str:
    return _sample(sorted(root.glob(f"*/*/{table}.parquet")), ["source", "dropped_by", "url / title", "text"],
                   lambda row: [row["source"], row.get("dropped_by", ""), row.get("url") or row.get("title"),
                                row["text"][:200]])


class DedupChecks(dg.Config):
    max_duplicate_rate: float = 0.5
    """The duplicate_rate check fails when a run drops a larger share of its new documents."""
    force: bool = False


DedupConfig = options_config(DedupOptions, "DedupConfig", DedupChecks)


@dg.asset(
    group_name="curate",
    deps=[filtered_documents],
    kinds={"parquet"},
    check_specs=[
        dg.AssetCheckSpec("duplicate_rate", asset="deduplicated_documents",
                          description="The share of duplicates among new documents is within bounds."),
        dg.AssetCheckSpec("non_empty", asset="deduplicated_documents", description="Some documents are kept."),
    ],
    description="Exact and MinHash-LSH near duplicates removed across all sources and refreshes; kept documents "
    "carry their duplicate-cluster id, removed ones are listed in duplicates.parquet.",
)
def deduplicated_documents(
    context: dg.AssetExecutionContext, config: DedupConfig, rosie: RosieHomeResource
) -> dg.MaterializeResult:
    lake = rosie.lake
    options = dataclass_from_config(config, DedupOptions)
    inputs = {f"{asset}/{key}": path for asset in INGEST_ASSET_NAMES
              for key, path in committed_outputs(lake["filtered_documents"] / asset).items()}
    results = run_dedup(inputs, lake["deduplicated_documents"], options, force=config.force)
    fresh = [r for r in results if not r.unchanged]
    new_in = sum(r.documents_in for r in fresh)
    new_dups = sum(r.exact + r.near for r in fresh)
    rate = new_dups / new_in if new_in else 0.0
    kept_total = sum(r.kept for r in results)
    context.log.info(f"deduplicated {len(fresh)} changed partitions: {new_dups:,} duplicates of {new_in:,} "
                     f"({rate:.1%}); {kept_total:,} documents kept in all")
    rows = [[r.key, r.documents_in, r.kept, r.exact, r.near, "unchanged" if r.unchanged else "deduplicated"]
            for r in results]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": kept_total,
            "documents_kept": kept_total,
            "new_documents": new_in,
            "exact_duplicates": sum(r.exact for r in fresh),
            "near_duplicates": sum(r.near for r in fresh),
            "duplicate_rate": round(rate, 4),
            "lsh": f"{options.bands} bands x {options.rows} rows, threshold ~{options.threshold:.2f}, "
                   f"{options.shingle_words}-word shingles" + (", Redis" if options.redis_url else ", local"),
            "partitions": dg.MetadataValue.md(md_table(["partition", "in", "kept", "exact", "near", "this run"], rows)),
            "sample_duplicates": dg.MetadataValue.md(_sample_duplicates(lake["deduplicated_documents"])),
        },
        check_results=[
            dg.AssetCheckResult(check_name="duplicate_rate", passed=rate <= config.max_duplicate_rate,
                                metadata={"duplicate_rate": round(rate, 4), "max": config.max_duplicate_rate}),
            dg.AssetCheckResult(check_name="non_empty", passed=kept_total > 0, metadata={"kept": kept_total}),
        ],
    )


def _sample_duplicates(root: Path) -> str:
    return _sample(sorted(root.glob("*/*/duplicates.parquet")), ["kind", "cluster", "url / title", "text"],
                   lambda row: [row["kind"], row["cluster_id"], row.get("url") or row.get("title"), row["text"][:150]])


@dg.asset(
    group_name="curate",
    deps=[filtered_documents, deduplicated_documents],
    kinds={"json"},
    description="What curation did, per source: documents in, kept by the rules, drop reasons, duplicates removed.",
)
def curation_report(context: dg.AssetExecutionContext, rosie: RosieHomeResource) -> dg.MaterializeResult:
    lake = rosie.lake
    report = build_report(lake.folders(INGEST_ASSET_NAMES), lake["filtered_documents"], lake["deduplicated_documents"],
                          lake["curation_report"])
    context.log.info(f"report written to {report.json_path}")
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(report.markdown),
            "documents_final": report.totals["final"],
            "path": dg.MetadataValue.path(str(report.json_path)),
        }
    )


CURATE_ASSETS = [filtered_documents, deduplicated_documents, curation_report]
