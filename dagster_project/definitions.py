"""The Dagster code location (``dagster dev -w workspace.yaml`` loads ``defs``).

Automation: the landing sensor and the nightly refresh schedules ingest new files; from there,
declarative automation (the ``rosie_automation`` sensor) carries the change downstream in one go:
curation, dedup, tokenizer and shards (each redoes only what changed), then each approach's training
phases, evaluation and registration, with the settings the home was built with (settings.py). A stage runs
when one of its inputs was updated since it last ran and none
is in progress; stages whose inputs are all unpartitioned also wait until every input exists. Training
runs in the ``gpu`` pool (limit 1), so they queue. With the refresh at 03:00, retraining is nightly.
"""

import dagster as dg

from dagster_project.assets.curate import CURATE_ASSETS
from dagster_project.assets.dialogue import DIALOGUE_ASSETS
from dagster_project.assets.evaluate import EVALUATE_ASSETS
from dagster_project.assets.ingest import INGEST_ASSETS
from dagster_project.assets.tokenize import TOKENIZE_ASSETS
from dagster_project.assets.train import TRAIN_ASSETS
from dagster_project.conventions import with_conventions
from dagster_project.jobs import INGEST_JOBS, bootstrap_training_job
from dagster_project.resources import RosieHomeResource
from dagster_project.schedules import DATA_REFRESH_SCHEDULES
from dagster_project.sensors import landing_sensor
from dagster_project.settings import home_settings, settings_path, with_settings
from dagster_project.sizes import machine_sizes
from rosie_pipeline.paths import RosieHome

#: Every stage downstream of ingestion refreshes when its inputs change.
AUTOMATED_ASSETS = [*CURATE_ASSETS, *DIALOGUE_ASSETS, *TOKENIZE_ASSETS, *TRAIN_ASSETS, *EVALUATE_ASSETS]
#: Like ``eager()``, but an input that never landed (no Reddit dumps, say) does not hold the rest back,
#: and an empty deployment does not start stages that have nothing to read.
INPUTS_CHANGED = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("inputs changed")

automation = dg.AutomationConditionSensorDefinition(
    "rosie_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Carries new data downstream: curation, tokenization, training, evaluation, registration.",
)


def _refresh_condition(asset: dg.AssetsDefinition) -> dg.AutomationCondition:
    """Assets fed by per-file ingest partitions run on what has landed; the others also wait until
    every input exists (dialogue_shards needs all three dialogue datasets)."""
    ingest_keys = {a.key for a in INGEST_ASSETS}
    if any(dep.asset_key in ingest_keys for dep in asset.specs_by_key[asset.key].deps):
        return INPUTS_CHANGED
    return INPUTS_CHANGED & ~dg.AutomationCondition.any_deps_missing()


def build_definitions(home: str = "") -> dg.Definitions:
    """All of Rosie's assets, checks, sensors and schedules, rooted at ``home`` (default ``$ROSIE_HOME``), with
    the settings this machine and the home's settings.yaml give as each asset's config defaults."""
    automated = [asset.with_attributes(automation_condition=_refresh_condition(asset)) for asset in AUTOMATED_ASSETS]
    assets = with_settings([*INGEST_ASSETS, *automated], machine_sizes(), "the sizes for this machine")
    rosie_home = RosieHome.from_env(home)
    assets = with_settings(assets, home_settings(rosie_home), str(settings_path(rosie_home)))
    return dg.Definitions(
        assets=with_conventions(assets),
        jobs=[*INGEST_JOBS.values(), bootstrap_training_job],
        sensors=[landing_sensor, automation],
        schedules=DATA_REFRESH_SCHEDULES,
        resources={"rosie": RosieHomeResource(path=home), "pipes": dg.PipesSubprocessClient()},
    )


defs = build_definitions()
