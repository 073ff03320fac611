"""One partitioned job per ingest source: what the sensor, the schedules and UI backfills launch."""

import dagster as dg

from dagster_project.partitions import INGEST_PARTITIONS


def ingest_job_name(source: str) -> str:
    return f"ingest_{source}"


INGEST_JOBS = {
    source: dg.define_asset_job(
        ingest_job_name(source),
        selection=[asset_name],
        partitions_def=partitions,
        description=f"Ingest one landed {source} input (a partition) into {asset_name}.",
    )
    for source, (partitions, asset_name) in INGEST_PARTITIONS.items()
}
