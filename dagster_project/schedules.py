"""The nightly data refresh: re-ingests every landed input whose output is missing or out of date.

The sensor reacts to new files within seconds; these schedules (one per source, as each source has its
own partitions) are the nightly reconciliation that also retries inputs whose last run failed and picks
up anything the sensor missed while it was off.
"""

import dagster as dg

from dagster_project.lake import Lake

from dagster_project.jobs import INGEST_JOBS
from dagster_project.partitions import INGEST_PARTITIONS, register_landed_partitions
from dagster_project.resources import RosieHomeResource
from rosie_pipeline.step import is_current

REFRESH_CRON = "0 3 * * *"


def _refresh_schedule(source: str) -> dg.ScheduleDefinition:
    asset_name = INGEST_PARTITIONS[source][1]

    @dg.schedule(
        name=f"data_refresh_{source}",
        cron_schedule=REFRESH_CRON,
        job=INGEST_JOBS[source],
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Nightly: ingest every landed {source} input that has no current {asset_name} output.",
    )
    def refresh(context: dg.ScheduleEvaluationContext, rosie: RosieHomeResource) -> list[dg.RunRequest]:
        home = rosie.home
        inputs = register_landed_partitions(context.instance, home)[source]
        stale = [i for i in inputs if not is_current(Lake(home)[asset_name] / i.folder_name, i.paths)]
        context.log.info(f"{len(stale)} of {len(inputs)} landed {source} inputs to (re)ingest")
        return [dg.RunRequest(partition_key=i.key) for i in stale]

    return refresh


DATA_REFRESH_SCHEDULES = [_refresh_schedule(source) for source in INGEST_PARTITIONS]
