"""Ingest group: one partition per landed file (per month for Reddit), documents in Parquet.

Each asset resolves its landed input, runs the matching rosie_pipeline reader through
``run_step``, and reports what a person wants to read in the UI; its checks guard the bad-record
share, the schema and emptiness of every partition it writes.
"""


import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_project.lake import Lake
import pyarrow as pa
import pyarrow.parquet as pq

from dagster_project.config import dataclass_from_config, md_table, options_config
from dagster_project.partitions import book_files, cc_files, reddit_months
from dagster_project.resources import RosieHomeResource
from rosie_pipeline.documents import DOCUMENT_SCHEMA, schema_mismatches
from rosie_pipeline.ingest.books import BookOptions, GutenbergReader
from rosie_pipeline.ingest.common_crawl import CommonCrawlOptions, CommonCrawlReader
from rosie_pipeline.ingest.landing import LandedInput, find_input
from rosie_pipeline.ingest.records import Rejected, Row
from rosie_pipeline.ingest.reddit import DIALOGUE_SCHEMA, PushshiftReader, RedditOptions
from rosie_pipeline.step import StepResult, run_step
from rosie_pipeline.stats import StepStats


class IngestConfig(dg.Config):
    """Shared by every ingest asset."""

    max_bad_share: float = 0.05
    """The bad_record_share check fails when more than this share of records is malformed."""
    force: bool = False
    """Re-read the input even when it and the options are unchanged since the last run."""


CommonCrawlConfig = options_config(CommonCrawlOptions, "CommonCrawlConfig", IngestConfig)
BooksConfig = options_config(BookOptions, "BooksConfig", IngestConfig)
RedditConfig = options_config(RedditOptions, "RedditConfig", IngestConfig)


def _check_specs(asset_name: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("bad_record_share", asset=asset_name, description="Malformed records stay under max_bad_share."),
        dg.AssetCheckSpec("schema", asset=asset_name, description="documents.parquet has the documents contract's columns."),
        dg.AssetCheckSpec("non_empty", asset=asset_name, description="The partition produced at least one document."),
    ]


def _landed(context: dg.AssetExecutionContext, rosie: RosieHomeResource, source: str) -> LandedInput:
    landed = find_input(rosie.home, source, context.partition_key)
    if landed is None:
        raise dg.Failure(
            f"partition {context.partition_key!r} has no file in {rosie.home.landing_dir(source)} any more",
        )
    return landed


def _ingest(
    context: dg.AssetExecutionContext,
    rosie: RosieHomeResource,
    config: IngestConfig,
    landed: LandedInput,
    read: Callable[[], Iterable[Row | Rejected]],
    options: Any,
    schemas: dict[str, pa.Schema],
) -> dg.MaterializeResult:
    asset_name = context.asset_key.to_user_string()
    home = rosie.home
    context.log.info(f"ingesting {', '.join(p.name for p in landed.paths)} ({landed.source})")
    result = run_step(
        read,
        inputs=list(landed.paths),
        out_dir=Lake(home)[asset_name] / landed.folder_name,
        schemas=schemas,
        quarantine_path=home.quarantine / asset_name / f"{landed.folder_name}.jsonl",
        options=dataclasses.asdict(options),
        force=config.force,
        progress=lambda s: context.log.info(f"{s.records_in:,} records read, {s.records_out:,} documents"),
    )
    stats = result.stats
    if result.unchanged:
        context.log.info("input and options unchanged since the last run: kept the existing output")
    context.log.info(
        f"{stats.records_out:,} documents from {stats.records_in:,} records; "
        f"{stats.skipped_total:,} skipped by rules, {stats.bad_total:,} malformed"
    )
    if stats.bad_total:
        context.log.warning(f"{stats.bad_total:,} malformed records quarantined in {result.quarantine}")
    return dg.MaterializeResult(
        metadata=_metadata(result, landed),
        check_results=_checks(result, config.max_bad_share),
        data_version=dg.DataVersion(landed.version()),
    )


def _metadata(result: StepResult, landed: LandedInput) -> dict[str, Any]:
    stats = result.stats
    metadata: dict[str, Any] = {
        "dagster/row_count": stats.records_out,
        "documents": stats.records_out,
        "records_in": stats.records_in,
        "skipped_records": stats.skipped_total,
        "bad_records": stats.bad_total,
        "bad_share": round(stats.bad_share, 6),
        "lost_bytes": stats.lost_bytes,
        "skipped_by_reason": dg.MetadataValue.md(stats.reasons_markdown()),
        "sample": dg.MetadataValue.md(_sample_markdown(result.sample)),
        "path": dg.MetadataValue.path(str(result.tables["documents"])),
        "quarantine": dg.MetadataValue.path(str(result.quarantine)),
        "input_files": ", ".join(p.name for p in landed.paths),
        "unchanged": result.unchanged,
    }
    if "dialogue_candidates" in result.tables:
        metadata["dialogue_candidates"] = pq.read_metadata(result.tables["dialogue_candidates"]).num_rows
    if stats.bad_total:
        metadata["warning"] = f"{stats.bad_total:,} malformed records skipped; see quarantine"
    return metadata


def _sample_markdown(sample: list[dict[str, Any]]) -> str:
    rows = [[d.get("title"), d.get("url"), d["chars"], d["text"][:200]] for d in sample]
    return md_table(["title", "url", "chars", "text"], rows)


def _checks(result: StepResult, max_bad_share: float) -> list[dg.AssetCheckResult]:
    stats: StepStats = result.stats
    documents = result.tables["documents"]
    mismatched = schema_mismatches(pq.read_schema(documents), DOCUMENT_SCHEMA)
    return [
        dg.AssetCheckResult(
            check_name="bad_record_share",
            passed=stats.bad_share <= max_bad_share,
            metadata={"bad_share": round(stats.bad_share, 6), "max_bad_share": max_bad_share,
                      "bad_records": stats.bad_total, "lost_bytes": stats.lost_bytes,
                      "estimated_lost_records": stats.estimated_lost_records},
        ),
        dg.AssetCheckResult(check_name="schema", passed=not mismatched, metadata={"mismatched": ", ".join(mismatched) or "none"}),
        dg.AssetCheckResult(
            check_name="non_empty",
            passed=stats.records_out > 0,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"documents": stats.records_out},
        ),
    ]


@dataclass(frozen=True)
class IngestSource:
    """What differs between the ingest assets: their partitions, config, reader and output tables."""

    asset_name: str
    source: str
    partitions: dg.DynamicPartitionsDefinition
    config_type: type[IngestConfig]
    options_type: type[Any]
    read: Callable[[Any, LandedInput, Path], Iterable[Row | Rejected]]
    description: str
    schemas: dict[str, pa.Schema] = field(default_factory=lambda: {"documents": DOCUMENT_SCHEMA})


def _ingest_asset(spec: IngestSource) -> dg.AssetsDefinition:
    @dg.asset(
        name=spec.asset_name,
        group_name="ingest",
        partitions_def=spec.partitions,
        check_specs=_check_specs(spec.asset_name),
        kinds={"parquet"},
        description=spec.description,
    )
    def ingest_asset(
        context: dg.AssetExecutionContext, config: spec.config_type, rosie: RosieHomeResource  # type: ignore[valid-type]
    ) -> dg.MaterializeResult:
        landed = _landed(context, rosie, spec.source)
        options = dataclass_from_config(config, spec.options_type)
        workdir = rosie.lake[spec.asset_name] / landed.folder_name / ".work"
        return _ingest(context, rosie, config, landed, lambda: spec.read(options, landed, workdir), options,
                       spec.schemas)

    return ingest_asset


INGEST_SOURCES = [
    IngestSource(
        asset_name="cc_documents",
        source="common_crawl",
        partitions=cc_files,
        config_type=CommonCrawlConfig,
        options_type=CommonCrawlOptions,
        read=lambda options, landed, _: CommonCrawlReader(options).read(landed.paths[0]),
        description="Main text of Common Crawl WARC responses (HTML) and WET conversions, one partition per file.",
    ),
    IngestSource(
        asset_name="book_documents",
        source="books",
        partitions=book_files,
        config_type=BooksConfig,
        options_type=BookOptions,
        read=lambda options, landed, _: GutenbergReader(options).read(landed.paths[0]),
        description="Project Gutenberg books without licence boilerplate, paragraphs unwrapped; one partition per file.",
    ),
    IngestSource(
        asset_name="reddit_threads",
        source="reddit",
        partitions=reddit_months,
        config_type=RedditConfig,
        options_type=RedditOptions,
        read=lambda options, landed, workdir: PushshiftReader(options).read_month(landed.paths, workdir),
        description="Reddit threads rebuilt from a month's Pushshift RS_/RC_ dumps, plus anonymised comment chains "
        "(dialogue_candidates.parquet) for the personality phase.",
        schemas={"documents": DOCUMENT_SCHEMA, "dialogue_candidates": DIALOGUE_SCHEMA},
    ),
]
INGEST_ASSETS = [_ingest_asset(spec) for spec in INGEST_SOURCES]
