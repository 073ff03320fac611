"""The daily data refresh: re-ingests every landed input whose output is missing or out of date.

The sensor reacts to new files within seconds; this schedule is the nightly reconciliation that also
retries inputs whose last run failed and picks up anything the sensor missed while it was off.
"""


import dagster as dg

from dagster_project.assets.ingest import INGEST_ASSETS
from dagster_project.partitions import INGEST_PARTITIONS, register_landed_partitions
from dagster_project.resources import RosieHomeResource
from rosie_pipeline.ingest.runner import is_current


@dg.schedule(
    name="data_refresh",
    cron_schedule="0 3 * * *",
    target=dg.AssetSelection.assets(*INGEST_ASSETS),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly: ingest every landed file that has no current output.",
)
def data_refresh(context: dg.ScheduleEvaluationContext, rosie: RosieHomeResource) -> list[dg.RunRequest]:
    home = rosie.home
    landed = register_landed_partitions(context.instance, home)
    requests = []
    for source, inputs in landed.items():
        asset_name = INGEST_PARTITIONS[source][1]
        for item in inputs:
            if not is_current(home.asset_dir(asset_name) / item.folder_name, item.paths):
                requests.append(dg.RunRequest(partition_key=item.key, asset_selection=[dg.AssetKey(asset_name)]))
    context.log.info(f"{len(requests)} landed inputs to (re)ingest")
    return requests
