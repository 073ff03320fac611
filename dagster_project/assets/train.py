"""Train group: base_model -> personality_model -> rosie_model, each a run of rosie_model's trainer.

The trainer runs as a separate process through Dagster Pipes (``torchrun`` when the machine has more
than one GPU), in the ``gpu`` pool so training runs queue. Its log lines stream into the Dagster run and a
failed or killed trainer fails the asset. Re-materializing resumes from the last checkpoint when the inputs
are unchanged and starts the phase afresh when they changed: the trainer decides, from the digest of its
settings, data, tokenizer and starting weights that it keeps with each checkpoint.

The bootstrap approach has its own assets: bootstrap_personality_model -> bootstrap_rosie_model adapt a
pretrained model with LoRA (models/rosie_bootstrap) on bootstrap_dialogue_shards, the same dialogues in the
ids of bootstrap_tokenizer (the pretrained tokenizer with Rosie's tokens), facts rendered as ``<|memory|>``
lines, through the same engine. There is no base phase on that path: the pretrained model is its base.
"""

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_project.assets.tokenize import bootstrap_dialogue_shards, dialogue_shards, pretrain_shards
from dagster_project.lake import Lake
from dagster_project.launch import run_rosie_model
from dagster_project.resources import RosieHomeResource
from dagster_project.training_report import loss_curve_markdown, mlflow_run_url
from rosie_pipeline.atomic import read_json, write_json_atomic


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
    replay_share: float = 0.25
    """rosie_model: share of each batch drawn from the personality dialogues, so phase 3 keeps her style."""
    emotion_head_fit_rows: int = 0
    """After the last step, fit the emotion head on its own on this many labelled rows (one forward pass
    each; rosie_model.training.emotion_fit): for phases too short for the head to learn much. 0: off."""
    gpus: int | None = None
    """GPUs to use with torchrun; None: every GPU this machine has."""
    fresh: bool = False
    """Discard this phase's checkpoints and train from its starting weights (the trainer otherwise resumes
    when the inputs are unchanged and starts afresh when they changed)."""


class BootstrapPhaseConfig(TrainPhaseConfig):
    """A bootstrap phase: LoRA on the top layers of the pretrained model bootstrap_tokenizer was made from
    (the defaults are sized for this machine: dagster_project/sizes.py)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1


@dataclass(frozen=True)
class Phase:
    asset_name: str
    approach: str  # scratch or bootstrap: which tokenizer, shards and model folder
    phase: str  # base reads pretrain_shards; the dialogue phases read the approach's dialogue shards
    train_split: str  # relative to the shard asset's folder
    val_split: str | None
    replay_split: str | None = None  # rehearsed in every batch (replay_share) so the previous phase is kept

    def shard_root(self, lake: Lake) -> Path:
        return lake["pretrain_shards"] if self.phase == "base" else lake.dialogue_shards(self.approach)


def _dialogue_phases(prefix: str, approach: str) -> dict[str, Phase]:
    return {
        f"{prefix}personality_model": Phase(f"{prefix}personality_model", approach, "personality",
                                            "personality/train", "personality/val"),
        f"{prefix}rosie_model": Phase(f"{prefix}rosie_model", approach, "emotion_memory", "emotion_memory/train",
                                      "emotion_memory/val", "personality/train"),
    }


PHASES = {
    "base_model": Phase("base_model", "scratch", "base", "train", "val"),
    **_dialogue_phases("", "scratch"),
    **_dialogue_phases("bootstrap_", "bootstrap"),
}


def bootstrap_settings(lake: Lake, config: BootstrapPhaseConfig) -> dict[str, Any]:
    """The trainer's bootstrap settings; the pretrained model is the one bootstrap_tokenizer was made from."""
    tokenizer_config = read_json(lake.tokenizer("bootstrap") / "tokenizer_config.json")
    if not tokenizer_config or not tokenizer_config.get("rosie_pretrained"):
        raise dg.Failure(f"no bootstrap tokenizer in {lake.tokenizer('bootstrap')}: materialize bootstrap_tokenizer "
                         "(and bootstrap_dialogue_shards) first, with the pretrained model to adapt")
    return {"approach": "bootstrap", "pretrained": tokenizer_config["rosie_pretrained"], "lora_r": config.lora_r,
            "lora_alpha": config.lora_alpha, "lora_dropout": config.lora_dropout}


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


def run_phase(context: dg.AssetExecutionContext, config: TrainPhaseConfig, rosie: RosieHomeResource,
              pipes: dg.PipesSubprocessClient, phase: Phase) -> dg.MaterializeResult:
    home, lake = rosie.home, rosie.lake
    out_dir, root = lake.model_dir(phase.approach), phase.shard_root(lake)
    approach_settings = bootstrap_settings(lake, config) if isinstance(config, BootstrapPhaseConfig) else {}
    train_split = _split_or_none(root, phase.train_split)
    if train_split is None:
        raise dg.Failure(f"no training rows in {root / phase.train_split}: materialize the data assets first")
    settings = {
        "phase": phase.phase, "train_data": train_split, "val_data": _split_or_none(root, phase.val_split),
        "tokenizer": str(lake.tokenizer(phase.approach)), "out_dir": str(out_dir), "preset": config.preset,
        **approach_settings, "model_overrides": {"max_seq_len": config.max_seq_len}, "steps": config.steps,
        "batch_size": config.batch_size, "grad_accum": config.grad_accum, "lr": config.lr,
        "warmup_steps": config.warmup_steps, "dtype": config.dtype,
        "gradient_checkpointing": config.gradient_checkpointing, "log_every": max(1, config.steps // 20),
        "eval_every": max(1, config.steps // 2), "checkpoint_every": max(1, config.steps // 4),
        "experiment": f"rosie-{phase.phase}", "fresh": config.fresh,
        "emotion_head_fit_rows": config.emotion_head_fit_rows,
    }
    replay = _split_or_none(root, phase.replay_split)
    if replay and config.replay_share > 0:
        settings |= {"replay_data": replay, "replay_share": config.replay_share}
    config_path = out_dir / f"train-{phase.phase}.json"
    write_json_atomic(config_path, settings)

    gpus = config.gpus if config.gpus is not None else _gpu_count()
    launcher = [str(Path(sys.executable).with_name("torchrun")), "--nproc-per-node", str(gpus), "-m"] if gpus > 1 else None
    reported = run_rosie_model(context, pipes, home, ["train", "--config", str(config_path)], launcher).get_materialize_result()
    metadata = {key: value for key, value in (reported.metadata or {}).items()}
    run_id = metadata.get("mlflow_run_id")
    run_id = getattr(run_id, "value", run_id)
    if run_id:
        metadata["mlflow_run"] = dg.MetadataValue.url(mlflow_run_url(home, str(run_id)))
        metadata["loss_curve"] = dg.MetadataValue.md(loss_curve_markdown(home, str(run_id), out_dir / f"loss-{phase.phase}.png"))
    return dg.MaterializeResult(metadata={"approach": phase.approach, **metadata})


def _train_asset(phase: Phase, deps: list[Any]) -> dg.AssetsDefinition:
    config_type = BootstrapPhaseConfig if phase.approach == "bootstrap" else TrainPhaseConfig

    @dg.asset(
        name=phase.asset_name,
        group_name="train",
        deps=deps,
        pool="gpu",
        kinds={"pytorch", "mlflow"},
        description=f"Training phase '{phase.phase}' of the {phase.approach} model, in rosie_model's engine launched "
        "through Dagster Pipes; re-materializing resumes when its inputs are unchanged.",
    )
    def train_phase(context: dg.AssetExecutionContext, config: config_type, rosie: RosieHomeResource,  # type: ignore[valid-type]
                    pipes: dg.PipesSubprocessClient) -> dg.MaterializeResult:
        return run_phase(context, config, rosie, pipes, phase)

    return train_phase


base_model = _train_asset(PHASES["base_model"], [pretrain_shards])
personality_model = _train_asset(PHASES["personality_model"], [base_model, dialogue_shards])
rosie_model = _train_asset(PHASES["rosie_model"], [personality_model, dialogue_shards])
bootstrap_personality_model = _train_asset(PHASES["bootstrap_personality_model"], [bootstrap_dialogue_shards])
bootstrap_rosie_model = _train_asset(PHASES["bootstrap_rosie_model"], [bootstrap_personality_model,
                                                                      bootstrap_dialogue_shards])

TRAIN_ASSETS = [base_model, personality_model, rosie_model, bootstrap_personality_model, bootstrap_rosie_model]
#: The last phase of each approach: what its evaluation reads.
FINAL_PHASE = {"scratch": rosie_model, "bootstrap": bootstrap_rosie_model}
