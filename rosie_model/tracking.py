"""Where a training run reports: the console, MLflow and (when launched by Dagster) Dagster Pipes.

Only rank 0 reports. The MLflow tracking URI comes from ``MLFLOW_TRACKING_URI`` or defaults to
``sqlite:///$ROSIE_HOME/mlflow/mlflow.db`` with artifacts under ``$ROSIE_HOME/mlflow/artifacts`` (MLflow 3
refuses the plain ``./mlruns`` file store). The run logs params, per-step metrics, system metrics, the
token-shard manifests as dataset inputs (digest and source, for lineage), and the config, tokenizer
and weights as artifacts.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosie_model.config import ModelConfig

if TYPE_CHECKING:
    from rosie_model.data import ShardDataset
    from rosie_model.train import TrainConfig, TrainResult


def rosie_home() -> Path:
    return Path(os.environ.get("ROSIE_HOME") or ".rosie").expanduser().resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{rosie_home() / 'mlflow' / 'mlflow.db'}"


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


@contextmanager
def pipes_session() -> Iterator[Any]:
    """The Dagster Pipes context when launched by Dagster (for log lines), else None."""
    if "DAGSTER_PIPES_CONTEXT" not in os.environ:
        yield None
        return
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        yield pipes


class Tracker:
    def __init__(self, main: bool) -> None:
        self.main = main
        self.run_id: str | None = None
        self._pipes: Any = None
        self._stack = ExitStack()

    @classmethod
    def start(cls, config: TrainConfig, model_config: ModelConfig, main: bool, run_id: str | None,
              datasets: list[ShardDataset | None], tokenizer_hash: str) -> Tracker:
        tracker = cls(main)
        if not main:
            return tracker
        if "DAGSTER_PIPES_CONTEXT" in os.environ:
            from dagster_pipes import open_dagster_pipes

            tracker._pipes = tracker._stack.enter_context(open_dagster_pipes())
        import mlflow

        experiment_id = ensure_experiment(config.experiment or f"rosie-{config.phase}")
        run = mlflow.start_run(run_id=run_id or None, experiment_id=None if run_id else experiment_id,
                               run_name=config.run_name or f"{config.phase}-{model_config.preset}",
                               log_system_metrics=True)
        tracker.run_id = run.info.run_id
        if not run_id:
            params = {f"train.{k}": v for k, v in dataclasses.asdict(config).items()}
            params |= {f"model.{k}": v for k, v in model_config.to_dict().items()}
            params["tokenizer_sha256"] = tokenizer_hash
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            for dataset, context in zip(datasets, ("training", "validation", "replay")):
                if dataset is not None:
                    tracker._log_dataset(dataset, context)
        return tracker

    def _log_dataset(self, dataset: ShardDataset, context: str) -> None:
        import mlflow
        from mlflow.data.dataset_source_registry import resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        manifest = dataset.manifest
        name = f"{manifest.get('dataset', 'tokens')}-{manifest.get('split', context)}"
        meta = MetaDataset(source=resolve_dataset_source(str(dataset.folder.resolve())), name=name, digest=dataset.digest)
        mlflow.log_input(meta, context=context, tags={"rows": str(dataset.rows), "tokens": str(manifest.get("tokens"))})

    def log(self, message: str) -> None:
        if not self.main:
            return
        print(message, flush=True)
        if self._pipes is not None:
            self._pipes.log.info(message)

    def metrics(self, values: dict[str, float], step: int) -> None:
        if self.main:
            import mlflow

            mlflow.log_metrics(values, step=step)

    def finish(self, status: str) -> None:
        if not self.main:
            return
        import mlflow

        mlflow.end_run(status=status)
        self._stack.close()

    def finish_success(self, result: TrainResult, out_dir: Path, weights: Path) -> None:
        import mlflow

        mlflow.log_metrics({"final_loss": result.final_loss, "tokens_seen": result.tokens_seen}
                           | ({"final_val_loss": result.val_loss} if result.val_loss is not None else {}))
        mlflow.log_artifact(str(out_dir / "config.json"))
        mlflow.log_artifacts(str(out_dir / "tokenizer"), artifact_path="tokenizer")
        mlflow.log_artifact(str(weights), artifact_path="weights")
        if self._pipes is not None:
            self._pipes.report_asset_materialization(metadata={
                "final_loss": result.final_loss,
                "val_loss": result.val_loss,
                "tokens_seen": result.tokens_seen,
                "tokens_per_second": round(result.tokens_per_second, 1),
                "steps": result.steps,
                "mlflow_run_id": result.run_id,
                "weights": str(weights),
            })
        self.finish("FINISHED")
