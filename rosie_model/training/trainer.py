"""The training engine: one code path for Rosie's three phases and both approaches.

    python -m rosie_model train --phase base|personality|emotion_memory --config train.json [--set key=value ...]
    torchrun --nproc-per-node 2 -m rosie_model train ...            (DDP; FSDP2 with "distributed": "fsdp")

Each phase starts from the weights its model says (:meth:`RosieCore.starting_weights`: the previous phase's,
or the pretrained model for the bootstrap approach's first phase) and trains the groups the model names for
it (:meth:`RosieCore.phase_trains`). Phase 3 replays a share of phase 2's dialogues in every batch
(``replay_data``, ``replay_share``) so her style is kept. Weights land in the model folder's ``weights/`` as
the phases finish (:mod:`rosie_model.core.layout`).

The trainer owns resume: checkpoints hold everything needed for an exact resume (weights, optimizer, step,
data positions, RNG) and the digest of the run's inputs (settings, data, tokenizer, starting weights). A
re-run picks up the latest checkpoint when the digest is unchanged and starts the phase afresh when it
changed (or with ``fresh``). SIGTERM/SIGINT save a checkpoint, mark the MLflow run KILLED and exit
non-zero. Launched by Dagster Pipes it reports logs and the materialization; alone it runs the same.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm

from rosie_model.core.checkpoint import list_checkpoints, load_checkpoint, load_weights, save_weights, sha256_file
from rosie_model.core.config import ModelConfig, preset
from rosie_model.core.layout import ModelFolder
from rosie_model.core.protocol import RosieCore
from rosie_model.core.reporting import launched_by_dagster, time_left
from rosie_model.training.config import Stop, TrainConfig, TrainResult
from rosie_model.training.data import Position, Prefetch, ShardDataset, conditioning, mixed_batches, used_width
from rosie_model.training.guard import WriterLock
from rosie_model.training.saver import CheckpointWriter
from rosie_model.training.emotion_fit import HeadFit, fit_emotion_head
from rosie_model.training.distributed import (barrier, full_state, mean_across, pick_dtype, restore_state,
                                              setup_distributed, teardown, wrap)
from rosie_model.training.tracking import Tracker

#: Dense bf16 peak FLOP/s by GPU name, for MFU.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "L40": 181e12, "4090": 165e12}


# -- the model ----------------------------------------------------------------------------------------
def model_config_for(config: TrainConfig, tokenizer_dir: Path) -> ModelConfig:
    """The preset, sized to the tokenizer, with its emotion list and special ids."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    settings = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    overrides = {
        "vocab_size": tokenizer.get_vocab_size(),
        "eos_id": tokenizer.token_to_id(settings["eos_token"]),
        "pad_id": tokenizer.token_to_id(settings["pad_token"]),
        "emotions": tuple(settings.get("rosie_emotions") or ModelConfig().emotions),
        **config.model_overrides,
    }
    return preset(config.preset, **overrides)


def build_core(config: TrainConfig, folder: ModelFolder, tokenizer_dir: Path) -> tuple[RosieCore, Path | None]:
    """The model to train, initialised as its phase says, and the weights file it started from."""
    core: RosieCore
    if config.approach == "bootstrap":
        from rosie_model.core.bootstrap import BootstrapRosie, BootstrapSettings, resolve_pretrained

        settings = BootstrapSettings(pretrained=resolve_pretrained(str(config.pretrained)), lora_r=config.lora_r,
                                     lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                     target_modules=list(config.lora_target_modules), lora_layers=config.lora_layers,
                                     train_token_rows=config.lora_train_token_rows)
        core = BootstrapRosie(settings, tokenizer_dir, config.model_overrides.get("max_seq_len"))
    else:
        from rosie_model.core.model import RosieTransformer

        core = RosieTransformer(model_config_for(config, tokenizer_dir))
    start = Path(config.init_from) if config.init_from else core.starting_weights(folder, config.phase)
    if start is not None:
        core.load_trained_state(load_weights(start))
    return core, start


def group_of(name: str) -> str:
    """The training group of a parameter: trunk, memory, persona, emotion_head (or pretrained: never trains)."""
    if "lora_" in name or "trainable_tokens" in name:
        return "trunk"  # on the bootstrap path the adapters are what trains of the trunk
    if name.startswith("lm."):
        return "pretrained"  # the bootstrap path's pretrained weights: frozen in every phase
    if name.startswith("persona"):
        return "persona"
    if name.startswith("emotion_head"):
        return "emotion_head"
    if ".memory." in name or name.startswith("memory_proj"):
        return "memory"
    return "trunk"


def select_trainable(model: torch.nn.Module, groups: list[str] | tuple[str, ...]) -> list[str]:
    """Freeze everything outside ``groups``; returns the names that train."""
    names = []
    for name, param in model.named_parameters():
        param.requires_grad_(group_of(name) in groups)
        if param.requires_grad:
            names.append(name)
    return names


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def build_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; matrices decay, vectors do not, the memory gates (one number each, starting at zero) learn
    ``gate_lr_scale`` times faster so memory attention can open within a short phase, and the emotion head
    ``emotion_head_lr_scale`` times faster."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    gates = [p for n, p in named if n.endswith("memory.gate")]
    head = [p for n, p in named if group_of(n.removeprefix("module.")) == "emotion_head"]
    rest = [(n, p) for n, p in named if not n.endswith("memory.gate") and all(p is not h for h in head)]
    groups = [{"params": [p for _, p in rest if p.dim() >= 2], "weight_decay": config.weight_decay, "lr_scale": 1.0},
              {"params": [p for _, p in rest if p.dim() < 2], "weight_decay": 0.0, "lr_scale": 1.0},
              {"params": gates, "weight_decay": 0.0, "lr_scale": config.gate_lr_scale},
              {"params": head, "weight_decay": 0.0, "lr_scale": config.emotion_head_lr_scale}]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), fused=device.type == "cuda")


# -- the loss -----------------------------------------------------------------------------------------
def fed_tokens(tokenizer_dir: Path) -> int:
    """How many tokens open each of her turns that the decoder feeds rather than samples: her emotion token (the
    emotion head's choice) and what the chat markup puts after it (``<|im_start|>assistant\\n`` in ChatML)."""
    from tokenizers import Tokenizer

    settings = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    return 1 + len(tokenizer.encode(settings.get("rosie_reply_start", ""), add_special_tokens=False).ids)


def cross_entropy_sum(head: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor, targets: torch.Tensor,
                      chunk: int) -> torch.Tensor:
    """Summed cross-entropy of ``head(hidden)`` (N, V) against ``targets`` (N,), ``chunk`` rows at a time beyond
    that many: each chunk's float32 logits are dropped after its loss and recomputed in the backward pass, so a
    step holds one chunk's logits (chunk x V), not all of them (16 x 2048 x 32k in float32 is 3.9 GiB)."""
    def piece(h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(head(h).float(), t, reduction="sum")

    if hidden.shape[0] <= chunk:
        return piece(hidden, targets)
    parts = [checkpoint(piece, h, t, use_reentrant=False) for h, t in zip(hidden.split(chunk), targets.split(chunk))]
    return torch.stack(parts).sum()


def compute_loss(model: torch.nn.Module, core: RosieCore, batch: dict[str, torch.Tensor], config: TrainConfig,
                 device: torch.device, fed: int = 1) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Language-model loss on what she says, plus the emotion head's loss where her turn starts; the parts are
    detached device tensors, read only when logged. The first ``fed`` tokens of her turn (see :func:`fed_tokens`)
    are not the language model's to predict: left in, the new emotion tokens' loss (~25 nats at the start)
    dominates and training bends the trunk towards them.

    Every mask and count is made on the host from the batch as read, so no step waits for the device: the loss
    rows are picked by an index sent along with the tokens, not by a boolean gather whose size the host must
    read back."""
    pad = core.config.pad_id
    tokens = batch["tokens"]                                   # (B, T+1), on the host
    width = used_width(tokens, pad)                            # W + 1: columns of padding only are cut off
    targets = tokens[:, 1:width]                               # (B, W)
    mask = batch["loss_mask"][:, 1:width] if "loss_mask" in batch else torch.ones_like(targets, dtype=torch.bool)
    mask = mask & (targets != pad)
    spoken = mask & (mask.cumsum(dim=1) > fed) if "loss_mask" in batch else mask   # (B, W): her words and stop
    where = spoken.reshape(-1).nonzero().squeeze(1)            # (N,): the rows the loss is taken on
    inputs = batch["tokens"].to(device, non_blocking=True)[:, :width - 1]  # (B, W)
    hidden = model(inputs, **conditioning(core, batch, device))            # (B, W, D)
    picked = hidden.reshape(-1, hidden.shape[-1]).index_select(0, where.to(device, non_blocking=True))   # (N, D)
    lm_loss = cross_entropy_sum(core.lm_logits, picked, targets.reshape(-1)[where].to(device, non_blocking=True),
                                config.loss_chunk_rows) / max(1, len(where))
    loss, parts = lm_loss, {"lm_loss": lm_loss.detach()}
    labels = batch.get("emotion")
    if labels is not None and config.phase != "base" and bool((labels >= 0).any()):
        emotion_logits = core.emotion_logits(hidden, mask.to(device, non_blocking=True)).float()   # (B, emotions)
        emotion_loss = F.cross_entropy(emotion_logits, labels.to(device, non_blocking=True), ignore_index=-1)
        loss = loss + config.emotion_loss_weight * emotion_loss
        parts["emotion_loss"] = emotion_loss.detach()
    return loss, parts


# -- one run --------------------------------------------------------------------------------------------
class Trainer:
    """One phase's run: the model, optimizer, data and position. ``state_dict`` / ``load_state_dict`` are
    exactly what a checkpoint holds, so a resumed run continues bit for bit where the saved one stopped."""

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.world, self.device = setup_distributed(config.device)
        self.autocast_dtype, needs_scaler = pick_dtype(config.dtype, self.device)
        torch.manual_seed(config.seed)
        self.folder, tokenizer_dir = ModelFolder(Path(config.out_dir)), Path(config.tokenizer)
        # one writer per phase folder, held until this process ends (a second trainer stops here)
        self.lock = WriterLock(self.folder.root / f".train-{config.phase}.lock") if self.world.main else None
        self.core, start = build_core(config, self.folder, tokenizer_dir)
        self.keep = set(self.core.trained_state())
        self.groups = tuple(config.trainable or self.core.phase_trains(config.phase))
        self.trainable = select_trainable(self.core, self.groups)
        self.core.gradient_checkpointing = config.gradient_checkpointing
        self.core.to(self.device)
        self.model = wrap(self.core, config.distributed, self.world, self.device, self.groups)
        self.sharded = config.distributed == "fsdp" and self.world.world_size > 1
        if config.compile or (config.compile is None and self.device.type == "cuda" and config.approach == "scratch"):
            self.model = torch.compile(self.model)
        self.optimizer = build_optimizer(self.model, config, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=needs_scaler)
        self.tokenizer_hash = sha256_file(tokenizer_dir / "tokenizer.json")
        self.fed = fed_tokens(tokenizer_dir)
        self.train_set, self.val_set, self.replay_set, self.replay_rows = self._open_data()
        self.tokens_per_step = (config.batch_size * config.grad_accum * self.world.world_size
                                * (self.train_set.row_length - 1))
        self.step, self.positions, self.run_id, self.curve = 0, [Position(), Position()], None, []
        #: losses of the steps since the curve was last read, still on the device (see :meth:`read_losses`)
        self.unread: list[torch.Tensor] = []
        #: seconds the training thread spent saving checkpoints (the copy to the host; the write is background)
        self.checkpoint_s = 0.0
        #: tokens (not padding) this process has trained on, times the world size: what tokens/s counts
        self.tokens_fed = 0
        self.checkpoints = self.folder.checkpoints(config.phase)
        self.writer = CheckpointWriter()
        self.digest = config.inputs_digest(self.tokenizer_hash, start)
        self.resume()

    def _open_data(self) -> tuple[ShardDataset, ShardDataset | None, ShardDataset | None, int]:
        config = self.config
        # the shards' sha256 is checked once, by rank 0, while the other ranks wait: N ranks on a node would
        # otherwise each read every shard before the first step
        open_split = lambda path: (ShardDataset(Path(path), self.tokenizer_hash, verify=self.world.main)  # noqa: E731
                                   if path else None)
        train_set, val_set, replay_set = open_split(config.train_data), open_split(config.val_data), open_split(config.replay_data)
        barrier(self.world)
        replay_rows = round(config.batch_size * config.replay_share) if replay_set is not None else 0
        if train_set.row_length - 1 > self.core.config.max_seq_len:
            raise ValueError(f"shards hold {train_set.row_length - 1}-token rows; the model's max_seq_len is "
                             f"{self.core.config.max_seq_len}")
        if replay_set is not None and replay_set.row_length != train_set.row_length:
            raise ValueError(f"replay rows hold {replay_set.row_length} tokens, training rows {train_set.row_length}")
        if not 0 <= replay_rows < config.batch_size:
            raise ValueError(f"replay_share {config.replay_share} must leave rows of the phase's own data in a batch")
        return train_set, val_set, replay_set, replay_rows

    # -- checkpoints ------------------------------------------------------------------------------------
    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(weights that train, everything else a resume needs)."""
        weights, optim = full_state(self.model, self.optimizer, self.keep, self.sharded)
        state = {"step": self.step, "position": self.positions[0].to_dict(),
                 "replay_position": self.positions[1].to_dict(), "optimizer": optim, "run_id": self.run_id or "",
                 "loss_curve": [list(p) for p in self.curve], "rng_cpu": torch.get_rng_state(),
                 "inputs_digest": self.digest}
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return weights, state

    def load_state_dict(self, weights: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        restore_state(self.model, self.optimizer, weights, state["optimizer"])
        self.step, self.run_id = state["step"], state.get("run_id") or None
        self.positions = [Position(**state["position"]), Position(**state.get("replay_position", {}))]
        self.curve = [tuple(p) for p in state.get("loss_curve", [])]
        torch.set_rng_state(state["rng_cpu"])
        if self.device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"])

    def _latest_readable(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The newest checkpoint that loads; a damaged one (a kill mid-write on a filesystem that does not
        keep renames atomic, a full disk) is set aside as ``damaged-step-…`` and the one before it used."""
        self.damaged: list[str] = []
        for path in reversed(list_checkpoints(self.checkpoints)):
            try:
                return load_checkpoint(path)
            except Exception as exc:  # noqa: BLE001 — safetensors, torch and zip each raise their own kinds
                self.damaged.append(f"{path.name} ({type(exc).__name__}: {str(exc)[:120]})")
                barrier(self.world)
                if self.world.main:
                    path.rename(path.with_name(f"damaged-{path.name}"))
                barrier(self.world)
        return None

    def resume(self) -> None:
        """Continue from the latest checkpoint made with the same inputs; otherwise start the phase afresh."""
        saved = self._latest_readable()
        if saved is not None and (self.config.fresh or saved[1].get("inputs_digest") != self.digest):
            self.reason = "starting afresh: " + ("fresh: true" if self.config.fresh else "inputs changed since the last run")
            barrier(self.world)  # every rank has read the checkpoint before rank 0 removes it
            if self.world.main:
                shutil.rmtree(self.checkpoints, ignore_errors=True)
            barrier(self.world)
        elif saved is not None:
            self.load_state_dict(*saved)
            self.reason = f"resuming at step {self.step}"
        else:
            self.reason = "from step 0"
        if self.damaged:
            self.reason += f" (damaged checkpoint{'s' if len(self.damaged) > 1 else ''} set aside: {'; '.join(self.damaged)})"

    def save_checkpoint(self, across: bool = True) -> None:
        """This step's state, copied to the host now and written to disk by a background thread. ``across``: as
        in :meth:`read_losses` (false for a save only this rank may make, on a stop it alone received)."""
        started = time.perf_counter()
        self.read_losses(across)  # the curve travels in the checkpoint
        weights, state = self.state_dict()
        if self.world.main:
            self.writer.submit(self.checkpoints, self.step, weights, state, self.config.keep_checkpoints)
        self.checkpoint_s += time.perf_counter() - started

    def read_losses(self, across: bool) -> float:
        """The unread steps' losses onto the curve, read from the device in one go (the only wait for it between
        log lines); ``across``: as the mean over ranks, which every rank must call together. Returns the latest."""
        if self.unread:
            losses = torch.stack(self.unread)
            losses = mean_across(losses, self.world) if across else losses
            first = self.step - len(self.unread) + 1
            self.curve += zip(range(first, self.step + 1), losses.tolist())
            self.unread = []
        return self.curve[-1][1] if self.curve else float("nan")

    # -- steps ------------------------------------------------------------------------------------------
    def batches(self) -> Prefetch:
        """The batches from the current positions on, read and collated ahead by a background thread."""
        sources = [(self.train_set, self.config.batch_size - self.replay_rows, self.positions[0])]
        if self.replay_rows:
            sources.append((self.replay_set, self.replay_rows, self.positions[1]))
        return Prefetch(mixed_batches(sources, self.world.rank, self.world.world_size, self.config.seed,
                                      self.config.group_by_length), pin=self.device.type == "cuda")

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, batches: Iterator[tuple[dict[str, torch.Tensor], list[Position]]]
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """One optimizer step over ``grad_accum`` micro-batches: (loss parts of the last, gradient norm), as device
        tensors: nothing here waits for the device, so the host queues the next step while this one runs."""
        config, model = self.config, self.model
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(config, self.step) * group.get("lr_scale", 1.0)
        parts: dict[str, torch.Tensor] = {}
        for micro in range(config.grad_accum):
            batch, positions = next(batches)
            self.tokens_fed += int((batch["tokens"][:, :-1] != self.core.config.pad_id).sum()) * self.world.world_size
            self.positions = [positions[0], positions[-1] if self.replay_rows else self.positions[1]]
            last = micro == config.grad_accum - 1
            no_sync = model.no_sync() if hasattr(model, "no_sync") and not last else contextlib.nullcontext()
            with no_sync, self.autocast():
                loss, parts = compute_loss(model, self.core, batch, config, self.device, self.fed)
            self.scaler.scale(loss / config.grad_accum).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.unread.append(parts["lm_loss"])
        return parts, grad_norm

    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean LM loss over the first ``eval_batches`` batches of the validation split (same every time)."""
        assert self.val_set is not None
        self.model.eval()
        losses = []
        batches = self.val_set.batches(self.config.batch_size, self.world.rank, self.world.world_size, seed=0)
        for _, (batch, _) in zip(range(self.config.eval_batches), batches):
            with self.autocast():
                losses.append(compute_loss(self.model, self.core, batch, self.config, self.device, self.fed)[1]["lm_loss"])
        self.model.train()
        return float(mean_across(torch.stack(losses).mean(), self.world)) if losses else float("nan")

    def fit_emotion_head(self) -> HeadFit | None:
        """The emotion head fitted on the trained trunk's features (``emotion_head_fit_rows`` labelled rows, the
        replay's share of them from the replay split); None when off, when the phase does not train the head,
        under multi-process FSDP (the head is sharded there), or with too few labelled rows."""
        rows = self.config.emotion_head_fit_rows
        if not rows or "emotion_head" not in self.groups or (self.config.distributed == "fsdp" and self.world.world_size > 1):
            return None
        replayed = round(rows * self.config.replay_share) if self.replay_rows else 0
        sources = [(self.train_set, rows - replayed)] + ([(self.replay_set, replayed)] if replayed else [])
        return fit_emotion_head(self.model, self.core, sources, self.device, self.config.seed)

    def save_model(self) -> Path:
        """The phase's weights, config, tokenizer and whatever else the model kind needs, into the folder."""
        path = self.folder.weights(self.config.phase)
        weights, _ = full_state(self.model, None, self.keep, self.sharded)
        if self.world.main:  # identical weights (a re-run with no new steps) leave the file as it is
            save_weights(weights, path, metadata={"phase": self.config.phase, "preset": self.core.config.preset},
                         unless_identical=True)
            self.core.config.save(self.folder.config)
            self.core.save_extras(self.folder)
            if Path(self.config.tokenizer).resolve() != self.folder.tokenizer.resolve():
                shutil.copytree(self.config.tokenizer, self.folder.tokenizer, dirs_exist_ok=True)
        return path

    def describe(self) -> str:
        replay = (f"; {self.replay_rows} of {self.config.batch_size} rows a batch replayed from "
                  f"{self.replay_set.folder}" if self.replay_rows and self.replay_set else "")
        return (f"phase {self.config.phase}: {self.core.num_parameters() / 1e6:.1f}M parameters ({len(self.trainable)} "
                f"tensors train), {self.train_set.rows:,} rows, up to {self.tokens_per_step:,} tokens/step, device "
                f"{self.device}, world {self.world.world_size}, {self.reason}{replay}")

    def mfu(self, tokens_per_second: float) -> float | None:
        """Model FLOPs utilisation against the GPU's dense bf16 peak (None off CUDA or on an unknown GPU)."""
        if self.device.type != "cuda":
            return None
        peak = next((v for k, v in PEAK_FLOPS.items() if k in torch.cuda.get_device_name(self.device)), None)
        config, length = self.core.config, self.train_set.row_length - 1
        # the parameters a step runs: memory attention has no bank to read in the base phase
        running = sum(p.numel() for name, p in self.core.named_parameters()
                      if not (self.config.phase == "base" and group_of(name) == "memory"))
        flops_per_token = 6 * running + 12 * config.n_layers * config.d_model * length
        return flops_per_token * tokens_per_second / (peak * self.world.world_size) if peak else None


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """SIGTERM / SIGINT noted (not raised) while training, so the loop can checkpoint before it stops."""
    stop: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: stop.append(signum)) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- the loop -------------------------------------------------------------------------------------------
def train(config: TrainConfig) -> TrainResult:
    # signals are noted from the first moment: a Terminate while a pretrained model loads stops as cleanly as
    # one mid-training, and one after the last step lets the finished run finish
    with stop_requests() as stop:
        return _train(config, stop)


def _train(config: TrainConfig, stop: list[int]) -> TrainResult:
    trainer = Trainer(config)
    if stop:
        raise Stop(stop[0])
    tracker = Tracker.start(config, trainer.core.config, trainer.world.main, trainer.run_id,
                            [trainer.train_set, trainer.val_set, trainer.replay_set], trainer.tokenizer_hash)
    trainer.run_id = tracker.run_id
    tracker.log(trainer.describe())
    if tracker.reconciled:
        tracker.log(f"marked {len(tracker.reconciled)} MLflow run(s) KILLED that a killed trainer of this folder left RUNNING")
    # under Dagster Pipes each redraw of a bar would become a log event; the step lines suffice there
    show_bar = trainer.world.main and not launched_by_dagster()
    bar = tqdm(total=config.steps, initial=trainer.step, disable=not show_bar, desc=config.phase, unit="step")
    # a run resumed at its last step trains no more: its final loss is the one it had reached
    loss, val_loss = trainer.curve[-1][1] if trainer.curve else float("nan"), None
    started, start_step, batches = time.perf_counter(), trainer.step, trainer.batches()
    with tracker.finishing(bar, trainer.world), contextlib.closing(batches):
        if stop:  # stopped while the run was being set up: nothing new to save
            raise Stop(stop[0])
        trainer.model.train()
        while trainer.step < config.steps:
            parts, grad_norm = trainer.train_step(batches)
            step = trainer.step
            bar.update(1)
            if step % config.log_every == 0 or step == config.steps:
                loss = trainer.read_losses(across=True)
                seconds = time.perf_counter() - started
                tps = trainer.tokens_fed / seconds
                metrics = {"loss": loss, "lr": learning_rate(config, step - 1), "grad_norm": float(grad_norm),
                           "tokens_per_second": tps, "data_wait_share": batches.waited_s / seconds,
                           "checkpoint_share": trainer.checkpoint_s / seconds,
                           **{k: float(v) for k, v in parts.items() if k != "lm_loss"}}
                if (mfu := trainer.mfu(tps)) is not None:
                    metrics["mfu"] = mfu
                tracker.metrics(metrics, step)
                bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tps:,.0f}")
                left = time_left(step - start_step, config.steps - start_step, time.perf_counter() - started)
                tracker.log(f"step {step}/{config.steps} loss {loss:.4f} tokens/s {tps:,.0f}"
                            + (f" mfu {mfu:.1%}" if mfu is not None else "") + (f" {left}" if left else ""))
            if trainer.val_set is not None and (step % config.eval_every == 0 or step == config.steps):
                val_loss = trainer.evaluate()
                tracker.metrics({"val_loss": val_loss}, step)
            scheduled = step % config.checkpoint_every == 0 or step == config.steps
            if scheduled or stop:
                trainer.save_checkpoint(across=scheduled)
            if stop:
                trainer.writer.wait()
                raise Stop(stop[0])
        trainer.writer.wait()
    loss = trainer.read_losses(across=False)  # already read at the last step; here for a run that trained none
    elapsed, step = time.perf_counter() - started, trainer.step
    if (fit := trainer.fit_emotion_head()) is not None:
        tracker.log(fit.summary())
        tracker.metrics(fit.metrics(), step)
    weights = trainer.save_model()
    result = TrainResult(step, step * trainer.tokens_per_step, loss, val_loss,
                         trainer.tokens_fed / elapsed if step > start_step else 0.0,
                         str(weights), tracker.run_id, trainer.curve)
    if trainer.world.main:
        tracker.finish_success(result, trainer.folder, weights)
    teardown(trainer.world)
    return result
