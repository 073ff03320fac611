"""The landing sensor: a new or replaced file in ``landing/`` becomes a partition and a run."""

import dagster as dg

from dagster_project.jobs import INGEST_JOBS
from dagster_project.lake import Lake
from dagster_project.partitions import INGEST_PARTITIONS
from dagster_project.resources import RosieHomeResource
from rosie_pipeline.ingest.landing import scan_landing
from rosie_pipeline.step import is_current


@dg.sensor(
    name="landing_sensor",
    jobs=list(INGEST_JOBS.values()),
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches ROSIE_HOME/landing: adds a partition per new file (per month for Reddit) and "
    "ingests it; a replaced file is ingested again. Inputs whose output is current (ingested by `rosie demo` "
    "or `rosie run`, say) are left alone, so opening the UI rebuilds nothing.",
)
def landing_sensor(context: dg.SensorEvaluationContext, rosie: RosieHomeResource) -> dg.SensorResult:
    partition_requests: list[dg.AddDynamicPartitionsRequest] = []
    run_requests: list[dg.RunRequest] = []
    for source, (partitions, asset_name) in INGEST_PARTITIONS.items():
        landed = scan_landing(rosie.home, source)
        known = set(context.instance.get_dynamic_partitions(partitions.name))
        new_keys = [i.key for i in landed if i.key not in known]
        if new_keys:
            partition_requests.append(partitions.build_add_request(new_keys))
        # The run key carries the files' fingerprint: an unchanged file never runs twice, a replaced one does;
        # a file whose output is current (however it was made) is not run at all.
        lake = Lake(rosie.home)
        run_requests += [
            dg.RunRequest(
                run_key=f"{asset_name}:{i.key}:{i.version()}",
                job_name=INGEST_JOBS[source].name,
                partition_key=i.key,
            )
            for i in landed if not is_current(lake[asset_name] / i.folder_name, i.paths)
        ]
    return dg.SensorResult(run_requests=run_requests, dynamic_partitions_requests=partition_requests)
