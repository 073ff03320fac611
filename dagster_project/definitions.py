"""The Dagster code location (``dagster dev -w workspace.yaml`` loads ``defs``)."""

from __future__ import annotations

import dagster as dg

from dagster_project.assets.curate import CURATE_ASSETS
from dagster_project.assets.dialogue import DIALOGUE_ASSETS
from dagster_project.assets.ingest import INGEST_ASSETS
from dagster_project.assets.tokenize import TOKENIZE_ASSETS
from dagster_project.resources import RosieHomeResource
from dagster_project.jobs import INGEST_JOBS
from dagster_project.schedules import DATA_REFRESH_SCHEDULES
from dagster_project.sensors import landing_sensor


def build_definitions(home: str = "") -> dg.Definitions:
    """All of Rosie's assets, checks, sensors and schedules, rooted at ``home`` (default ``$ROSIE_HOME``)."""
    return dg.Definitions(
        assets=[*INGEST_ASSETS, *CURATE_ASSETS, *DIALOGUE_ASSETS, *TOKENIZE_ASSETS],
        jobs=list(INGEST_JOBS.values()),
        sensors=[landing_sensor],
        schedules=DATA_REFRESH_SCHEDULES,
        resources={"rosie": RosieHomeResource(path=home)},
    )


defs = build_definitions()
