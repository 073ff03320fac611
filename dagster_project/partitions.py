"""Dynamic partitions: one per landed input, registered by the landing sensor (or ``rosie run``)."""

from __future__ import annotations

import dagster as dg

from rosie_pipeline.ingest.landing import LandedInput, scan_landing
from rosie_pipeline.paths import RosieHome

cc_files = dg.DynamicPartitionsDefinition(name="cc_files")
book_files = dg.DynamicPartitionsDefinition(name="book_files")
reddit_months = dg.DynamicPartitionsDefinition(name="reddit_months")

#: landing source -> (partitions, the asset that ingests it)
INGEST_PARTITIONS: dict[str, tuple[dg.DynamicPartitionsDefinition, str]] = {
    "common_crawl": (cc_files, "cc_documents"),
    "books": (book_files, "book_documents"),
    "reddit": (reddit_months, "reddit_threads"),
}


def register_landed_partitions(instance: dg.DagsterInstance, home: RosieHome) -> dict[str, list[LandedInput]]:
    """Add a partition for every landed input not yet known; returns what has landed, by source."""
    landed = {source: scan_landing(home, source) for source in INGEST_PARTITIONS}
    for source, inputs in landed.items():
        partitions = INGEST_PARTITIONS[source][0]
        known = set(instance.get_dynamic_partitions(partitions.name))
        new = [i.key for i in inputs if i.key not in known]
        if new:
            instance.add_dynamic_partitions(partitions.name, new)
    return landed
