"""``rosie run``: materialize an asset selection over everything in ``landing/``, without a daemon.

It uses the same Definitions, instance (``$ROSIE_HOME/dagster``) and asset code as the web UI, so the
runs appear there afterwards. Assets are taken in dependency order; consecutive assets that share a
partitions definition run together, once per partition.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from dagster_project.partitions import register_landed_partitions
from rosie_pipeline.atomic import process_alive
from rosie_pipeline.paths import RosieHome

DAGSTER_YAML = """\
# Written by rosie: Dagster's own storage for this Rosie home (sqlite, under this folder).
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
# A hung run (a trainer stuck on a dead GPU, say) is failed after a day instead of holding its pool forever;
# the UI's daemon enforces it. Raise it for runs that legitimately take longer.
run_monitoring:
  enabled: true
  max_runtime_seconds: 86400
"""


def prepare_home(home: RosieHome) -> None:
    """Create the home's layout and Dagster config; point ``ROSIE_HOME``/``DAGSTER_HOME`` at them."""
    home.create_layout()
    config = home.dagster / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    os.environ["ROSIE_HOME"] = str(home.root)
    os.environ["DAGSTER_HOME"] = str(home.dagster)


def prepare_instance(home: RosieHome) -> dg.DagsterInstance:
    """The home's Dagster instance (sqlite storage under ``$ROSIE_HOME/dagster``)."""
    prepare_home(home)
    return dg.DagsterInstance.get()


#: Dagster's console logger at INFO: the asset log lines without every engine event.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass
class RunOutcome:
    assets: list[str]
    partition: str | None
    success: bool
    run_id: str
    failed_checks: list[str] = field(default_factory=list)


@dataclass
class HeadlessReport:
    outcomes: list[RunOutcome] = field(default_factory=list)

    @property
    def failed(self) -> list[RunOutcome]:
        return [o for o in self.outcomes if not o.success]


RUN_PID_TAG = "rosie/pid"


def release_abandoned_runs(instance: dg.DagsterInstance, pools: tuple[str, ...] = ("gpu",)) -> list[str]:
    """Fail the headless runs whose process is gone (killed, crashed) and free the pool slots held by
    runs that are gone, finished or unknown, so a new run never waits forever for a ``gpu`` slot.
    Returns the run ids released."""
    released = []
    # NOT_STARTED too: a kill between creating a run and launching it leaves one that nothing will start
    active = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING,
                                     dg.DagsterRunStatus.NOT_STARTED])
    for run in instance.get_runs(filters=active):
        pid = run.tags.get(RUN_PID_TAG)
        if pid is None or process_alive(int(pid)):
            continue
        instance.report_run_failed(run, message=f"process {pid} is gone; released by rosie run")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    storage = instance.event_log_storage
    for pool in pools:
        if pool not in storage.get_concurrency_keys():
            continue
        for slot in storage.get_concurrency_info(pool).claimed_slots:
            run = instance.get_run_by_id(slot.run_id)
            if run is None or run.is_finished:
                storage.free_concurrency_slots_for_run(slot.run_id)
                released.append(slot.run_id)
    return released



def run_selection(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    home: RosieHome,
    selection: str | dg.AssetSelection | None = None,
    on_run: Callable[[RunOutcome], None] | None = None,
    op_config: dict[str, dict[str, Any]] | None = None,
    on_start: Callable[[int, int, list[str], str | None], None] | None = None,
) -> HeadlessReport:
    """Materialize ``selection`` (Dagster selection syntax; everything when None) in-process.

    ``op_config`` maps asset names to their run config; each run gets the entries of its own assets.
    """
    register_landed_partitions(instance, home)
    release_abandoned_runs(instance)
    graph = defs.resolve_asset_graph()
    asset_selection = (selection if isinstance(selection, dg.AssetSelection)
                       else dg.AssetSelection.from_string(selection) if selection else dg.AssetSelection.all())
    selected = asset_selection.resolve(graph)
    if not selected:
        raise ValueError(f"selection {selection!r} matches no asset")
    ordered = [key for key in graph.toposorted_asset_keys if key in selected]
    assets = list(defs.assets or [])
    report = HeadlessReport()
    plan = [(keys, partition_key) for keys, partitions_def in _batches(graph, ordered)
            for partition_key in (list(partitions_def.get_partition_keys(dynamic_partitions_store=instance))
                                  if partitions_def else [None])]
    for number, (keys, partition_key) in enumerate(plan, start=1):
        if on_start is not None:  # "which stage of how many": the runs are known before the first starts
            on_start(number, len(plan), [k.to_user_string() for k in keys], partition_key)
        result = dg.materialize(
            assets,
            instance=instance,
            selection=keys,
            resources=dict(defs.resources or {}),
            partition_key=partition_key,
            raise_on_error=False,
            run_config=_run_config(keys, op_config or {}),
            tags={RUN_PID_TAG: str(os.getpid())},
        )
        failed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in result.get_asset_check_evaluations()
                  if not e.passed]
        outcome = RunOutcome([k.to_user_string() for k in keys], partition_key, result.success, result.run_id,
                             failed)
        report.outcomes.append(outcome)
        if on_run is not None:
            on_run(outcome)
    return report


def _run_config(keys: list[dg.AssetKey], op_config: dict[str, dict[str, Any]]) -> dict[str, Any]:
    names = {key.to_user_string() for key in keys}
    ops = {name: {"config": config} for name, config in op_config.items() if name in names}
    return {**QUIET_RUN_CONFIG, **({"ops": ops} if ops else {})}


def _batches(graph: Any, ordered: list[dg.AssetKey]) -> list[tuple[list[dg.AssetKey], dg.PartitionsDefinition | None]]:
    """Consecutive runs of keys (in topological order) that share one partitions definition."""
    batches: list[tuple[list[dg.AssetKey], dg.PartitionsDefinition | None]] = []
    for key in ordered:
        partitions_def = graph.get(key).partitions_def
        if batches and batches[-1][1] == partitions_def:
            batches[-1][0].append(key)
        else:
            batches.append(([key], partitions_def))
    return batches
