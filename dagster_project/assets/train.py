"""Train group: base_model -> personality_model -> rosie_model, each a run of rosie_model's trainer.

The trainer runs as a separate process through Dagster Pipes (``torchrun`` when the machine has more
than one GPU), in the ``gpu`` pool so training runs queue. Its log lines stream into the Dagster run and a
failed or killed trainer fails the asset. Re-materializing with unchanged inputs resumes from the last
checkpoint; changed inputs (data, tokenizer, settings, previous phase) start the phase afresh.
"""

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_project.assets.tokenize import dialogue_shards, pretrain_shards
from dagster_project.resources import RosieHomeResource
from dagster_project.training_report import loss_curve_markdown, mlflow_env, mlflow_run_url
from rosie_pipeline.atomic import read_json, write_json_atomic
from rosie_pipeline.paths import RosieHome
from rosie_pipeline.tokenize.tokenizer import tokenizer_sha256


class TrainPhaseConfig(dg.Config):
    """One training phase; the defaults are demo-sized for the ``tiny`` preset on a CPU."""

    preset: str = "tiny"
    steps: int = 300
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 2e-3
    warmup_steps: int = 20
    max_seq_len: int = 256
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    approach: str = "scratch"
    """scratch: Rosie's own transformer (the bootstrap path arrives with its issue)."""
    gpus: int | None = None
    """GPUs to use with torchrun; None: every GPU this machine has."""
    fresh: bool = False
    """Discard this phase's checkpoints and train from its starting weights."""


@dataclass(frozen=True)
class Phase:
    asset_name: str
    phase: str
    train_split: str  # relative to the lake
    val_split: str | None
    weights: str


PHASES = {
    "base_model": Phase("base_model", "base", "pretrain_shards/train", "pretrain_shards/val", "base.safetensors"),
    "personality_model": Phase("personality_model", "personality", "dialogue_shards/personality/train",
                               "dialogue_shards/personality/val", "personality.safetensors"),
    "rosie_model": Phase("rosie_model", "emotion_memory", "dialogue_shards/emotion_memory/train",
                         "dialogue_shards/emotion_memory/val", "final.safetensors"),
}


def model_dir(home: RosieHome) -> Path:
    return home.models / "rosie_model"


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def _split_or_none(home: RosieHome, relative: str | None) -> str | None:
    if relative is None:
        return None
    folder = home.lake / relative
    manifest = read_json(folder / "manifest.json")
    return str(folder) if manifest and manifest.get("rows") else None


def _inputs_digest(home: RosieHome, settings: dict[str, Any], phase: Phase) -> str:
    """What the phase's result depends on: settings, data manifests, tokenizer, the starting weights."""
    parts = [json.dumps(settings, sort_keys=True)]
    for relative in (phase.train_split, phase.val_split):
        if relative:
            parts.append((home.lake / relative / "manifest.json").read_text(encoding="utf-8")
                         if (home.lake / relative / "manifest.json").exists() else "")
    parts.append(tokenizer_sha256(home.tokenizer))
    previous = list(PHASES.values()).index(phase) - 1
    if previous >= 0:
        weights = model_dir(home) / "weights" / list(PHASES.values())[previous].weights
        parts.append(str(weights.stat().st_mtime_ns) if weights.exists() else "")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def run_phase(context: dg.AssetExecutionContext, config: TrainPhaseConfig, rosie: RosieHomeResource,
              pipes: dg.PipesSubprocessClient, phase: Phase) -> dg.MaterializeResult:
    home = rosie.home
    if config.approach != "scratch":
        raise dg.Failure(f"approach {config.approach!r} is not available yet; use 'scratch'")
    out_dir = model_dir(home)
    train_split = _split_or_none(home, phase.train_split)
    if train_split is None:
        raise dg.Failure(f"no training rows in {home.lake / phase.train_split}: materialize the data assets first")
    settings = {
        "phase": phase.phase, "train_data": train_split, "val_data": _split_or_none(home, phase.val_split),
        "tokenizer": str(home.tokenizer), "out_dir": str(out_dir), "preset": config.preset,
        "model_overrides": {"max_seq_len": config.max_seq_len}, "steps": config.steps,
        "batch_size": config.batch_size, "grad_accum": config.grad_accum, "lr": config.lr,
        "warmup_steps": config.warmup_steps, "dtype": config.dtype,
        "gradient_checkpointing": config.gradient_checkpointing, "log_every": max(1, config.steps // 20),
        "eval_every": max(1, config.steps // 4), "checkpoint_every": max(1, config.steps // 4),
        "experiment": f"rosie-{phase.phase}",
    }
    checkpoints = out_dir / "checkpoints" / phase.phase
    digest = _inputs_digest(home, settings, phase)
    recorded = read_json(checkpoints / "inputs.json")
    if config.fresh or (recorded and recorded.get("digest") != digest):
        context.log.info(f"inputs changed since the last {phase.phase} run: starting the phase afresh")
        shutil.rmtree(checkpoints, ignore_errors=True)
    elif recorded:
        context.log.info(f"inputs unchanged: resuming {phase.phase} from its last checkpoint")
    write_json_atomic(checkpoints / "inputs.json", {"digest": digest})
    config_path = out_dir / f"train-{phase.phase}.json"
    write_json_atomic(config_path, settings)

    gpus = config.gpus if config.gpus is not None else _gpu_count()
    launcher = ([str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", str(gpus), "-m"]
                if gpus > 1 else [sys.executable, "-m"])
    command = [*launcher, "rosie_model.train", "--config", str(config_path)]
    context.log.info(f"launching: {' '.join(command)}")
    env = {**os.environ, "ROSIE_HOME": str(home.root), **mlflow_env(home)}
    reported = pipes.run(context=context, command=command, env=env).get_materialize_result()
    metadata = {key: value for key, value in (reported.metadata or {}).items()}
    run_id = metadata.get("mlflow_run_id")
    run_id = getattr(run_id, "value", run_id)
    if run_id:
        metadata["mlflow_run"] = dg.MetadataValue.url(mlflow_run_url(home, str(run_id)))
        metadata["loss_curve"] = dg.MetadataValue.md(loss_curve_markdown(home, str(run_id), out_dir / f"loss-{phase.phase}.png"))
    return dg.MaterializeResult(metadata=metadata)


def _train_asset(phase: Phase, deps: list[Any]) -> dg.AssetsDefinition:
    @dg.asset(
        name=phase.asset_name,
        group_name="train",
        deps=deps,
        pool="gpu",
        kinds={"pytorch", "mlflow"},
        description=f"Training phase '{phase.phase}' of rosie_model (weights/{phase.weights}), launched through "
        "Dagster Pipes.",
    )
    def train_phase(context: dg.AssetExecutionContext, config: TrainPhaseConfig, rosie: RosieHomeResource,
                    pipes: dg.PipesSubprocessClient) -> dg.MaterializeResult:
        return run_phase(context, config, rosie, pipes, phase)

    return train_phase


base_model = _train_asset(PHASES["base_model"], [pretrain_shards])
personality_model = _train_asset(PHASES["personality_model"], [base_model, dialogue_shards])
rosie_model = _train_asset(PHASES["rosie_model"], [personality_model, dialogue_shards])

TRAIN_ASSETS = [base_model, personality_model, rosie_model]
