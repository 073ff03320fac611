"""Where a training run reports: the console, MLflow and (when launched by Dagster) Dagster Pipes.

Only rank 0 reports. The MLflow tracking URI comes from ``MLFLOW_TRACKING_URI`` or defaults to
``sqlite:///$ROSIE_HOME/mlflow/mlflow.db`` with artifacts under ``$ROSIE_HOME/mlflow/artifacts`` (MLflow 3
refuses the plain ``./mlruns`` file store). The run logs params, per-step metrics, system metrics, the
token-shard manifests as dataset inputs (digest and source, for lineage), and the phase's final weights
(with config and tokenizer) as an MLflow 3 LoggedModel, its final losses linked to it and to their datasets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rosie_model.core.config import ModelConfig
from rosie_model.core.layout import ModelFolder
from rosie_model.core.checkpoint import sha256_file
from rosie_model.core.reporting import PHASE_TAG, STEP_TAG, WEIGHTS_TAG, dataset_source, ensure_experiment, pipes_session
from rosie_model.training.config import Stop, TrainConfig, TrainResult
from rosie_model.training.distributed import Dist, teardown

if TYPE_CHECKING:
    from rosie_model.training.data import ShardDataset


#: The checkpoint folder a training run writes (how a later trainer finds runs a kill left RUNNING).
CHECKPOINTS_TAG = "rosie.checkpoints"


def _mark_dead_runs_killed(experiment_id: str, folder: str, keep: str | None) -> list[str]:
    """Runs of this checkpoint folder still RUNNING are dead: this trainer holds the folder's writer lock,
    so none of them can be alive (SIGKILL leaves no time to end a run). They become KILLED."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    stale = [run.info.run_id for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'", max_results=1000)
             if run.data.tags.get(CHECKPOINTS_TAG) == folder and run.info.run_id != keep]
    for run_id in stale:
        client.set_terminated(run_id, "KILLED")
    return stale


class Tracker:
    def __init__(self, main: bool) -> None:
        self.main = main
        self.run_id: str | None = None
        self.reconciled: list[str] = []
        self._pipes: Any = None
        self._stack = ExitStack()
        #: The MLflow datasets logged as this run's inputs, by context (training, validation, replay).
        self.datasets: dict[str, Any] = {}
        self.phase = ""

    @classmethod
    def start(cls, config: TrainConfig, model_config: ModelConfig, main: bool, run_id: str | None,
              datasets: list[ShardDataset | None], tokenizer_hash: str) -> Tracker:
        tracker = cls(main)
        if not main:
            return tracker
        tracker._pipes = tracker._stack.enter_context(pipes_session())
        import mlflow

        experiment_id = ensure_experiment(config.experiment or f"rosie-{config.phase}")
        folder = str(ModelFolder(Path(config.out_dir)).checkpoints(config.phase).resolve())
        tracker.reconciled = _mark_dead_runs_killed(experiment_id, folder, keep=run_id)
        run = mlflow.start_run(run_id=run_id or None, experiment_id=None if run_id else experiment_id,
                               run_name=config.run_name or f"{config.phase}-{model_config.preset}",
                               log_system_metrics=True)
        tracker.run_id = run.info.run_id
        tracker.phase = config.phase
        mlflow.set_tag(CHECKPOINTS_TAG, folder)
        if not run_id:
            params = {f"train.{k}": v for k, v in dataclasses.asdict(config).items()}
            params |= {f"model.{k}": v for k, v in model_config.to_dict().items()}
            params["tokenizer_sha256"] = tokenizer_hash
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        for dataset, context in zip(datasets, ("training", "validation", "replay")):
            if dataset is not None:
                tracker.datasets[context] = tracker._log_dataset(dataset, context, log=not run_id)
        return tracker

    def _log_dataset(self, dataset: ShardDataset, context: str, log: bool) -> Any:
        """The shard split as an MLflow dataset, logged as the run's input unless the (resumed) run has it."""
        import mlflow
        from mlflow.data.meta_dataset import MetaDataset

        manifest = dataset.manifest
        name = f"{manifest.get('dataset', 'tokens')}-{manifest.get('split', context)}"
        meta = MetaDataset(source=dataset_source(dataset.folder), name=name, digest=dataset.digest)
        if log:
            mlflow.log_input(meta, context=context, tags={"rows": str(dataset.rows), "tokens": str(manifest.get("tokens"))})
        return meta

    def log(self, message: str) -> None:
        """One line to the console, or (under Dagster Pipes) to the run's log: not both, or every line shows twice."""
        if not self.main:
            return
        if self._pipes is not None:
            self._pipes.log.info(message)
        else:
            print(message, flush=True)

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

    @contextmanager
    def finishing(self, bar: Any, world: Dist) -> Iterator[None]:
        """Around the training loop: a stopped run is marked KILLED (its checkpoint is saved), a failed one
        FAILED; either way the progress bar closes and the process group is torn down."""
        try:
            yield
        except BaseException as exc:
            if isinstance(exc, Stop):
                self.log(f"{exc}: checkpoint saved; re-run to resume")
            self.finish("KILLED" if isinstance(exc, Stop) else "FAILED")
            bar.close()
            teardown(world)
            raise
        bar.close()

    def finish_success(self, result: TrainResult, folder: ModelFolder, weights: Path) -> None:
        import mlflow

        model_id = self._log_phase_model(result, folder, weights)
        mlflow.log_metrics({"final_loss": result.final_loss, "tokens_seen": result.tokens_seen}, step=result.steps,
                           model_id=model_id, dataset=self.datasets.get("training"))
        if result.val_loss is not None:
            mlflow.log_metrics({"final_val_loss": result.val_loss}, step=result.steps, model_id=model_id,
                               dataset=self.datasets.get("validation"))
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

    def _log_phase_model(self, result: TrainResult, folder: ModelFolder, weights: Path) -> str:
        """The phase's final weights as an MLflow 3 LoggedModel of this run (config, tokenizer, weights), tagged
        with the step and the weights' digest, by which the evaluation links its metrics to it."""
        import mlflow
        from mlflow import MlflowClient

        model = mlflow.initialize_logged_model(
            name=f"rosie-{self.phase}", source_run_id=self.run_id, model_type="rosie-weights",
            tags={PHASE_TAG: self.phase, STEP_TAG: str(result.steps), WEIGHTS_TAG: sha256_file(weights)})
        client = MlflowClient()
        client.log_model_artifact(model.model_id, str(folder.config))
        client.log_model_artifacts(model.model_id, str(folder.tokenizer), "tokenizer")
        client.log_model_artifact(model.model_id, str(weights), "weights")
        mlflow.finalize_logged_model(model.model_id, "READY")
        return model.model_id
