"""Where a model-package process reports besides its console: an MLflow experiment and, when Dagster
launched it, the Dagster Pipes session (log lines, the materialization)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rosie_model.core.checkpoint import sha256_file
from rosie_model.core.layout import tracking_uri


def ensure_experiment(name: str) -> str:
    """The experiment's id, creating it with its artifacts under ``$ROSIE_HOME/mlflow/artifacts``."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    artifacts = None
    uri = tracking_uri()
    if uri.startswith("sqlite:"):  # a local store: artifacts beside it, never MLflow's default ./mlruns
        root = Path(uri.removeprefix("sqlite:///")).parent
        (root / "artifacts").mkdir(parents=True, exist_ok=True)
        artifacts = (root / "artifacts" / name).as_uri()
    return mlflow.create_experiment(name, artifact_location=artifacts)


#: Tags of the LoggedModel each training phase logs with its final weights; evaluation finds that model by
#: the weights' digest and links its metrics to it, so MLflow shows data → weights → metrics → version.
PHASE_TAG, STEP_TAG, WEIGHTS_TAG = "rosie.phase", "rosie.step", "rosie.weights_sha256"


def phase_model_id(weights: Path) -> str | None:
    """The newest LoggedModel a training phase logged with exactly these weights (None: trained elsewhere)."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri())
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return None
    found = mlflow.search_logged_models(
        experiment_ids=experiments, filter_string=f"tags.`{WEIGHTS_TAG}` = '{sha256_file(weights)}'",
        order_by=[{"field_name": "creation_time", "ascending": False}], max_results=1, output_format="list")
    return found[0].model_id if found else None


def dataset_source(folder: Path) -> Any:
    """A local folder as an MLflow dataset source, of the one local kind by name: MLflow registers its local
    file source twice, and resolving a bare path warns that it "can be interpreted in multiple ways"."""
    from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source

    local = next(s for s in get_registered_sources() if s.__name__ == "LocalArtifactDatasetSource")
    return resolve_dataset_source(str(Path(folder).resolve()), candidate_sources=[local])


def launched_by_dagster() -> bool:
    """Whether a Dagster step launched this process through Pipes (its log lines and results go there)."""
    return "DAGSTER_PIPES_CONTEXT" in os.environ


@contextmanager
def pipes_session() -> Iterator[Any]:
    """The Dagster Pipes context when launched by Dagster (for log lines), else None."""
    if not launched_by_dagster():
        yield None
        return
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        yield pipes


def time_left(done: int, total: int, elapsed_s: float) -> str:
    """``~3m05s left`` at the pace so far (one estimate for every long loop's log lines); empty before the
    first unit is done, when there is no pace to go by."""
    if done <= 0 or total <= done:
        return ""
    left = round(elapsed_s / done * (total - done))
    return f"~{left // 60}m{left % 60:02d}s left"
