"""What one training run is told: :class:`TrainConfig` (one flat dataclass: every field is one line of a
JSON file or one ``--set key=value``), and what it reports back, :class:`TrainResult`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosie_model.core.layout import PHASES, rosie_home
from rosie_model.core.checkpoint import sha256_file

#: Settings that say how a run is watched, not what it computes: changing them resumes, never restarts.
RUN_CONTROL = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "experiment", "run_name",
               "fresh", "device")


@dataclass
class TrainConfig:
    phase: str = "base"
    train_data: str = ""
    val_data: str | None = None
    tokenizer: str = ""
    out_dir: str = ""  # default: $ROSIE_HOME/models/rosie_model
    preset: str = "tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None
    trainable: list[str] | None = None
    steps: int = 100
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    emotion_loss_weight: float = 0.5
    gate_lr_scale: float = 30.0
    #: The emotion head is one linear layer on features that are there from the start (the pretrained model's
    #: on the bootstrap path): it can learn faster than the trunk under it.
    emotion_head_lr_scale: float = 5.0
    #: After the last step, fit the emotion head on its own on this many labelled rows of the phase's data (and
    #: its replay, in proportion): one forward pass a row, so worth it where a phase is too short for the head
    #: to learn much (rosie_model.training.emotion_fit). 0: off.
    emotion_head_fit_rows: int = 0
    #: Rehearsal: a second shard split (phase 3: phase 2's personality dialogues) and the share of every batch
    #: drawn from it, so what the previous phase taught is not forgotten while the trunk keeps training.
    replay_data: str | None = None
    replay_share: float = 0.0
    #: Rows sorted by length in runs of this many steps' rows (0: shuffled only), so a batch's rows have
    #: similar lengths and its padding columns are not computed: dialogue steps cost about half.
    group_by_length: int = 16
    dtype: str = "auto"
    #: torch.compile the model: None means on for the scratch model on CUDA (a CPU step gains little for the
    #: compile's minute; the bootstrap path's peft model is left eager there, not verified under compile).
    compile: bool | None = None
    #: The language-model loss is taken this many positions at a time beyond that many, each chunk's float32
    #: logits recomputed in the backward pass instead of kept (memory: one chunk x vocabulary).
    loss_chunk_rows: int = 4096
    gradient_checkpointing: bool = False
    device: str = "auto"
    distributed: str = "ddp"
    seed: int = 1337
    log_every: int = 10
    eval_every: int = 50
    eval_batches: int = 8
    #: Steps between checkpoints (and after the last, and on SIGTERM); written by a background thread, so a
    #: step waits only for the weights' copy to the host.
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    experiment: str | None = None
    run_name: str | None = None
    #: Discard this phase's checkpoints and train from its starting weights (otherwise a re-run resumes when
    #: its inputs are unchanged and starts afresh when they changed; see ``inputs_digest``).
    fresh: bool = False
    #: ``scratch`` trains Rosie's own transformer; ``bootstrap`` adapts ``pretrained`` (a Hugging Face
    #: folder, a .gguf file, or "smollm2") with LoRA, phases personality and emotion_memory only
    #: (rosie_model.core.bootstrap).
    approach: str = "scratch"
    pretrained: str | None = None
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    #: Adapt the top N layers only (0: all) and keep Rosie's token rows at their start (the word each names),
    #: so no gradient flows below them: half the cost of a step, which is what makes the CPU demo affordable.
    lora_layers: int = 8
    lora_train_token_rows: bool = False

    @classmethod
    def from_sources(cls, path: str | None, overrides: list[str], phase: str | None) -> TrainConfig:
        payload: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8")) if path else {}
        for item in overrides:
            key, _, value = item.partition("=")
            try:
                payload[key] = json.loads(value)  # numbers, booleans, lists, objects
            except json.JSONDecodeError:
                payload[key] = value  # a plain string: a path, a preset name
        if phase:
            payload["phase"] = phase
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(payload) - known
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}")
        config = cls(**payload)
        if config.phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, not {config.phase!r}")
        if not config.out_dir:
            config.out_dir = str(rosie_home() / "models" / "rosie_model")
        for name in ("train_data", "tokenizer"):
            if not getattr(config, name):
                raise ValueError(f"{name} is required")
        if config.approach not in ("scratch", "bootstrap"):
            raise ValueError(f"approach must be scratch or bootstrap, not {config.approach!r}")
        if config.approach == "bootstrap" and (config.phase == "base" or not config.pretrained):
            raise ValueError("the bootstrap approach adapts a pretrained model (set pretrained=FOLDER|FILE.gguf) "
                             "in the personality and emotion_memory phases; it has no base phase")
        return config

    def inputs_digest(self, tokenizer_sha256: str, starting_weights: Path | None) -> str:
        """What this run's result depends on: its settings (less run control), the data manifests, the
        tokenizer and the weights it starts from. A checkpoint made under another digest is not resumed."""
        settings = {k: v for k, v in dataclasses.asdict(self).items() if k not in RUN_CONTROL}
        parts = [json.dumps(settings, sort_keys=True, default=str), tokenizer_sha256]
        for folder in (self.train_data, self.val_data, self.replay_data):
            manifest = Path(folder) / "manifest.json" if folder else None
            parts.append(manifest.read_text(encoding="utf-8") if manifest and manifest.exists() else "")
        # the starting weights by content: rewriting the same weights must not throw the next phase's progress away
        parts.append(sha256_file(starting_weights) if starting_weights else "")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass
class TrainResult:
    steps: int
    tokens_seen: int
    final_loss: float
    val_loss: float | None
    tokens_per_second: float
    weights: str
    run_id: str | None
    loss_curve: list[tuple[int, float]]


class Stop(Exception):
    """Raised in the loop after SIGTERM/SIGINT once the checkpoint is safe; the process exits 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
