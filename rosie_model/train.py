"""The training engine: one code path for Rosie's three phases.

    python -m rosie_model.train --phase base|personality|emotion_memory --config train.json [--set key=value ...]
    torchrun --nproc-per-node 2 -m rosie_model.train ...            (DDP; FSDP2 with "distributed": "fsdp")

Each phase starts from the previous phase's weights and says what trains: ``base`` the language model;
``personality`` the language model, the persona vectors and the emotion head on dialogue; ``emotion_memory``
adds memory attention to what trains (with a frozen trunk recall stayed near chance on the demo: the
facts are read by the trunk, which has to learn to write them so a question can find them), replaying a
share of phase 2's dialogues in every batch (``replay_data``, ``replay_share``) so her style is kept. Weights land in
``<out_dir>/weights/{base,personality,final}.safetensors`` as the phases finish.

Checkpoints hold everything needed for an exact resume (weights, optimizer, step, data position, RNG);
a re-run picks up the latest one. SIGTERM/SIGINT save a checkpoint, mark the MLflow run KILLED and
exit non-zero. Launched by Dagster Pipes it reports logs and the materialization; alone it runs the same.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm

from rosie_model.checkpoint import list_checkpoints, load_checkpoint, load_weights, save_checkpoint, save_weights
from rosie_model.config import ModelConfig, preset
from rosie_model.data import Position, ShardDataset, mixed_batches, sha256_file
from rosie_model.bootstrap import BOOTSTRAP_FILE, BootstrapRosie, BootstrapSettings, export_bootstrap, resolve_pretrained
from rosie_model.model import Rosie
from rosie_model.tracking import Tracker

PHASES = ("base", "personality", "emotion_memory")
WEIGHT_FILES = {"base": "base.safetensors", "personality": "personality.safetensors", "emotion_memory": "final.safetensors"}
#: What trains in each phase, by parameter-name prefix ("trunk" = embeddings, blocks' attention/MLP, norms).
PHASE_TRAINS = {
    "base": ("trunk",),
    "personality": ("trunk", "persona", "emotion_head"),
    "emotion_memory": ("trunk", "memory", "persona", "emotion_head"),
}
#: On the bootstrap path "trunk" is the LoRA adapters and Rosie's token rows, and memory is read from the
#: context, so phase 3 trains the adapters too.
BOOTSTRAP_PHASE_TRAINS = {
    "personality": ("trunk", "persona", "emotion_head"),
    "emotion_memory": ("trunk", "persona", "emotion_head"),
}
#: Dense bf16 peak FLOP/s by GPU name, for MFU.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "L40": 181e12, "4090": 165e12}


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
    #: Rehearsal: a second shard split (phase 3: phase 2's personality dialogues) and the share of every batch
    #: drawn from it, so what the previous phase taught is not forgotten while the trunk keeps training.
    replay_data: str | None = None
    replay_share: float = 0.0
    dtype: str = "auto"
    compile: bool = False
    gradient_checkpointing: bool = False
    device: str = "auto"
    distributed: str = "ddp"
    seed: int = 1337
    log_every: int = 10
    eval_every: int = 50
    eval_batches: int = 8
    checkpoint_every: int = 50
    keep_checkpoints: int = 3
    experiment: str | None = None
    run_name: str | None = None
    #: ``scratch`` trains Rosie's own transformer; ``bootstrap`` adapts ``pretrained`` (a Hugging Face
    #: folder, a .gguf file, or "smollm2") with LoRA, phases personality and emotion_memory only
    #: (rosie_model.bootstrap).
    approach: str = "scratch"
    pretrained: str | None = None
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

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
            config.out_dir = str(Path(os.environ.get("ROSIE_HOME") or ".rosie") / "models" / "rosie_model")
        for name in ("train_data", "tokenizer"):
            if not getattr(config, name):
                raise ValueError(f"{name} is required")
        if config.approach not in ("scratch", "bootstrap"):
            raise ValueError(f"approach must be scratch or bootstrap, not {config.approach!r}")
        if config.approach == "bootstrap" and (config.phase == "base" or not config.pretrained):
            raise ValueError("the bootstrap approach adapts a pretrained model (set pretrained=FOLDER|FILE.gguf) "
                             "in the personality and emotion_memory phases; it has no base phase")
        return config


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
    """Raised in the loop after SIGTERM/SIGINT once the checkpoint is safe."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# -- setting up ---------------------------------------------------------------------------------------
def pick_device(name: str, local_rank: int) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(name: str, device: torch.device) -> tuple[torch.dtype, bool]:
    """(autocast dtype, whether a GradScaler is needed). CPU trains in float32."""
    if name == "float32" or (name == "auto" and device.type == "cpu"):
        return torch.float32, False
    if name in ("bfloat16", "auto") and (device.type != "cuda" or torch.cuda.is_bf16_supported()):
        return torch.bfloat16, False
    return torch.float16, True


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


def select_trainable(model: Rosie, groups: list[str] | tuple[str, ...]) -> list[str]:
    """Freeze everything outside ``groups``; returns the names that train."""
    names = []
    for name, param in model.named_parameters():
        param.requires_grad_(group_of(name) in groups)
        if param.requires_grad:
            names.append(name)
    return names


def build_core(config: TrainConfig, out_dir: Path, tokenizer_dir: Path) -> tuple[Rosie | BootstrapRosie, set[str] | None]:
    """The model to train, initialised as the phase says, and which tensors its checkpoints keep (None: all)."""
    init = Path(config.init_from) if config.init_from else _previous_weights(out_dir, config.phase)
    if config.approach == "bootstrap":
        init = init if config.init_from or config.phase == "emotion_memory" else None  # phase 2 starts pretrained
        settings = BootstrapSettings(pretrained=resolve_pretrained(str(config.pretrained)), lora_r=config.lora_r,
                                     lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                     target_modules=list(config.lora_target_modules))
        core = BootstrapRosie(settings, tokenizer_dir, config.model_overrides.get("max_seq_len"))
        if init is not None:
            core.load_trained_state(load_weights(init))
        elif config.phase != "personality":
            raise FileNotFoundError(f"phase {config.phase} starts from the personality phase's adapters; none in {out_dir}")
        return core, set(core.trained_state())
    scratch = Rosie(model_config_for(config, tokenizer_dir))
    if init is not None:
        scratch.load_state_dict(load_weights(init))
    elif config.phase != "base":
        raise FileNotFoundError(f"phase {config.phase} starts from the previous phase's weights; none in {out_dir}")
    return scratch, None


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def build_optimizer(model: torch.nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; matrices decay, vectors do not, and the memory gates (one number each, starting at zero)
    learn ``gate_lr_scale`` times faster so memory attention can open within a short phase."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    gates = [p for n, p in named if n.endswith("memory.gate")]
    decay = [p for n, p in named if p.dim() >= 2]
    no_decay = [p for n, p in named if p.dim() < 2 and not n.endswith("memory.gate")]
    groups = [{"params": decay, "weight_decay": config.weight_decay, "lr_scale": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
              {"params": gates, "weight_decay": 0.0, "lr_scale": config.gate_lr_scale}]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), fused=device.type == "cuda")


# -- the loss -----------------------------------------------------------------------------------------
def compute_loss(model: torch.nn.Module, core: Rosie, batch: dict[str, torch.Tensor], config: TrainConfig,
                 device: torch.device) -> tuple[torch.Tensor, dict[str, float]]:
    tokens = batch["tokens"].to(device)
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    mask = batch["loss_mask"].to(device)[:, 1:] if "loss_mask" in batch else torch.ones_like(targets, dtype=torch.bool)
    mask = mask & (targets != core.config.pad_id)
    persona = batch["persona"].to(device) if "persona" in batch else None
    memory = memory_mask = None
    if "memory" in batch and core.config.memory_layers:
        fact_ids = batch["memory"].to(device)
        fact_ids = torch.where(fact_ids < 0, torch.full_like(fact_ids, core.config.pad_id), fact_ids)
        memory, memory_mask = core.encode_memory(fact_ids)
    hidden = model(inputs, persona=persona, memory=memory, memory_mask=memory_mask)
    logits = core.lm_logits(hidden).float()
    per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    lm_loss = (per_token * mask.reshape(-1)).sum() / mask.sum().clamp(min=1)
    loss, parts = lm_loss, {"lm_loss": float(lm_loss.detach())}
    labels = batch.get("emotion")
    if labels is not None and config.phase != "base" and bool((labels >= 0).any()):
        labels = labels.to(device)
        emotion_logits = core.emotion_logits(hidden, mask).float()
        emotion_loss = F.cross_entropy(emotion_logits[labels >= 0], labels[labels >= 0])
        loss = loss + config.emotion_loss_weight * emotion_loss
        parts["emotion_loss"] = float(emotion_loss.detach())
    return loss, parts


# -- distributed helpers ------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_type: str) -> Dist:
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Dist()
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size())


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
               keep: set[str] | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Full (unsharded, CPU) model and optimizer state dicts, keyed by parameter name, on every rank;
    only the ``keep`` tensors when given (the bootstrap path never re-saves its pretrained weights)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    if keep is not None:
        weights = {k: v for k, v in weights.items() if k in keep}
    optim = get_optimizer_state_dict(model, optimizer, options=options) if optimizer is not None else None
    return weights, optim


def restore_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, Any],
                  optim: dict[str, Any]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, optimizer, optim, options=options)


def wrap(model: Rosie, config: TrainConfig, world: Dist, device: torch.device) -> torch.nn.Module:
    if world.world_size == 1:
        return model
    if config.distributed == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=True)


def _mean_across(value: float, world: Dist) -> float:
    if world.world_size == 1:
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor)
    return float(tensor.item()) / world.world_size


# -- the run --------------------------------------------------------------------------------------------
def train(config: TrainConfig) -> TrainResult:
    out_dir, tokenizer_dir = Path(config.out_dir), Path(config.tokenizer)
    probe = pick_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    world = setup_distributed(probe.type)
    device = pick_device(config.device, world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    autocast_dtype, needs_scaler = pick_dtype(config.dtype, device)
    torch.manual_seed(config.seed)

    core, keep = build_core(config, out_dir, tokenizer_dir)
    model_config = core.config
    phase_trains = BOOTSTRAP_PHASE_TRAINS if config.approach == "bootstrap" else PHASE_TRAINS
    trainable = select_trainable(core, config.trainable or phase_trains[config.phase])
    core.gradient_checkpointing = config.gradient_checkpointing
    core.to(device)
    model = wrap(core, config, world, device)
    if config.compile:
        model = torch.compile(model)
    optimizer = build_optimizer(model, config, device)
    scaler = torch.amp.GradScaler(device.type, enabled=needs_scaler)

    tokenizer_hash = sha256_file(tokenizer_dir / "tokenizer.json")
    train_set = ShardDataset(Path(config.train_data), tokenizer_hash)
    val_set = ShardDataset(Path(config.val_data), tokenizer_hash) if config.val_data else None
    replay_set = ShardDataset(Path(config.replay_data), tokenizer_hash) if config.replay_data else None
    replay_rows = round(config.batch_size * config.replay_share) if replay_set is not None else 0
    if train_set.row_length - 1 > model_config.max_seq_len:
        raise ValueError(f"shards hold {train_set.row_length - 1}-token rows; the model's max_seq_len is "
                         f"{model_config.max_seq_len}")
    if replay_set is not None and replay_set.row_length != train_set.row_length:
        raise ValueError(f"replay rows hold {replay_set.row_length} tokens, training rows {train_set.row_length}")
    if not 0 <= replay_rows < config.batch_size:
        raise ValueError(f"replay_share {config.replay_share} must leave rows of the phase's own data in a batch")

    checkpoints = out_dir / "checkpoints" / config.phase
    step, position, replay_position, run_id, curve = 0, Position(), Position(), None, []
    latest = list_checkpoints(checkpoints)
    if latest:
        weights, state = load_checkpoint(latest[-1])
        restore_state(model, optimizer, weights, state["optimizer"])
        step, position, run_id = state["step"], Position(**state["position"]), state.get("run_id")
        replay_position = Position(**state.get("replay_position", {}))
        curve = [tuple(p) for p in state.get("loss_curve", [])]
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"])

    tracker = Tracker.start(config, model_config, world.main, run_id, [train_set, val_set, replay_set], tokenizer_hash)
    tokens_per_step = config.batch_size * config.grad_accum * world.world_size * (train_set.row_length - 1)
    tracker.log(f"phase {config.phase}: {core.num_parameters() / 1e6:.1f}M parameters ({len(trainable)} tensors "
                f"train), {train_set.rows:,} rows, {tokens_per_step:,} tokens/step, device {device}, "
                f"world {world.world_size}, {'resuming at step ' + str(step) if step else 'from step 0'}"
                + (f"; {replay_rows} of {config.batch_size} rows a batch replayed from {replay_set.folder}"
                   if replay_rows else ""))

    stop: list[int] = []
    previous = {s: signal.signal(s, lambda signum, _frame: stop.append(signum)) for s in (signal.SIGTERM, signal.SIGINT)}
    sources = [(train_set, config.batch_size - replay_rows, position)]
    if replay_rows:
        sources.append((replay_set, replay_rows, replay_position))
    batches = mixed_batches(sources, world.rank, world.world_size, config.seed)
    flops_per_token = 6 * core.num_parameters() + 12 * model_config.n_layers * model_config.d_model * (train_set.row_length - 1)
    peak = next((v for k, v in PEAK_FLOPS.items() if device.type == "cuda" and k in torch.cuda.get_device_name(device)), None)
    # under Dagster Pipes the bar's redraws would become one log event each; the step log lines suffice there
    show_bar = world.main and "DAGSTER_PIPES_CONTEXT" not in os.environ
    bar = tqdm(total=config.steps, initial=step, disable=not show_bar, desc=f"{config.phase}", unit="step")
    # a run resumed at its last step trains no more: its final loss is the one it had reached
    started, start_step, loss_value, val_loss = time.perf_counter(), step, curve[-1][1] if curve else float("nan"), None

    def checkpoint_now() -> None:
        weights, optim = full_state(model, optimizer, keep)
        state = {"step": step, "position": position.to_dict(), "replay_position": replay_position.to_dict(),
                 "optimizer": optim, "run_id": tracker.run_id or "",
                 "loss_curve": [list(p) for p in curve], "rng_cpu": torch.get_rng_state()}
        if device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(device)
        if world.main:
            save_checkpoint(checkpoints, step, weights, state, config.keep_checkpoints)

    try:
        model.train()
        while step < config.steps:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step) * group.get("lr_scale", 1.0)
            parts: dict[str, float] = {}
            for micro in range(config.grad_accum):
                batch, positions = next(batches)
                position, replay_position = positions[0], positions[-1] if replay_rows else replay_position
                sync = micro == config.grad_accum - 1
                context = model.no_sync() if hasattr(model, "no_sync") and not sync else contextlib.nullcontext()
                with context, torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype != torch.float32):
                    loss, parts = compute_loss(model, core, batch, config, device)
                scaler.scale(loss / config.grad_accum).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_value = _mean_across(parts["lm_loss"], world)
            curve.append((step, loss_value))
            bar.update(1)
            if step % config.log_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - started
                tps = tokens_per_step * (step - start_step) / elapsed
                metrics = {"loss": loss_value, "lr": learning_rate(config, step - 1), "grad_norm": float(grad_norm),
                           "tokens_per_second": tps, **{k: v for k, v in parts.items() if k != "lm_loss"}}
                if peak:
                    metrics["mfu"] = flops_per_token * tps / (peak * world.world_size)
                tracker.metrics(metrics, step)
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tps:,.0f}")
                tracker.log(f"step {step}/{config.steps} loss {loss_value:.4f} tokens/s {tps:,.0f}"
                            + (f" mfu {metrics['mfu']:.1%}" if "mfu" in metrics else ""))
            if val_set is not None and (step % config.eval_every == 0 or step == config.steps):
                val_loss = evaluate(model, core, val_set, config, world, device, autocast_dtype)
                tracker.metrics({"val_loss": val_loss}, step)
            if step % config.checkpoint_every == 0 or step == config.steps or stop:
                checkpoint_now()
            if stop:
                raise Stop(stop[0])
    except Stop as interrupted:
        tracker.log(f"{interrupted}: checkpoint saved at step {step}; re-run to resume")
        tracker.finish("KILLED")
        bar.close()
        _teardown(world)
        raise
    except BaseException:
        tracker.finish("FAILED")
        bar.close()
        _teardown(world)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    bar.close()

    weights_path = out_dir / "weights" / WEIGHT_FILES[config.phase]
    weights, _ = full_state(model, None, keep)
    elapsed = time.perf_counter() - started
    result = TrainResult(step, step * tokens_per_step, loss_value, val_loss,
                         tokens_per_step * (step - start_step) / elapsed if step > start_step else 0.0,
                         str(weights_path), tracker.run_id, curve)
    if world.main:
        save_weights(weights, weights_path, metadata={"phase": config.phase, "preset": model_config.preset})
        model_config.save(out_dir / "config.json")
        if isinstance(core, BootstrapRosie):
            core.settings.save(out_dir / BOOTSTRAP_FILE)
            export_bootstrap(core, out_dir)
        if tokenizer_dir.resolve() != (out_dir / "tokenizer").resolve():
            shutil.copytree(tokenizer_dir, out_dir / "tokenizer", dirs_exist_ok=True)
        tracker.finish_success(result, out_dir, weights_path)
    _teardown(world)
    return result


def evaluate(model: torch.nn.Module, core: Rosie, data: ShardDataset, config: TrainConfig, world: Dist,
             device: torch.device, autocast_dtype: torch.dtype) -> float:
    """Mean LM loss over the first ``eval_batches`` batches of the validation split (same every time)."""
    model.eval()
    losses = []
    with torch.no_grad():
        for _, (batch, _) in zip(range(config.eval_batches),
                                 data.batches(config.batch_size, world.rank, world.world_size, seed=0)):
            with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype != torch.float32):
                _, parts = compute_loss(model, core, batch, config, device)
            losses.append(parts["lm_loss"])
    model.train()
    return _mean_across(sum(losses) / max(1, len(losses)), world)


def _previous_weights(out_dir: Path, phase: str) -> Path | None:
    index = PHASES.index(phase)
    if index == 0:
        return None
    path = out_dir / "weights" / WEIGHT_FILES[PHASES[index - 1]]
    return path if path.exists() else None


def _teardown(world: Dist) -> None:
    if world.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rosie_model.train", description=__doc__.split("\n")[0])
    parser.add_argument("--phase", choices=PHASES)
    parser.add_argument("--config", help="JSON file with TrainConfig fields")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    args = parser.parse_args(argv)
    try:
        config = TrainConfig.from_sources(args.config, args.set, args.phase)
    except (ValueError, OSError) as exc:
        print(f"rosie_model.train: {exc}", file=sys.stderr)
        return 2
    try:
        result = train(config)
    except Stop as interrupted:
        return 128 + interrupted.signum
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"steps": result.steps, "final_loss": result.final_loss, "val_loss": result.val_loss,
                          "tokens_seen": result.tokens_seen, "weights": result.weights, "run_id": result.run_id}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
