"""Devices, precision and torch.distributed for the trainer: one process, DDP or FSDP2 under torchrun."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils._pytree import tree_leaves, tree_map


@dataclass
class Dist:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def pick_device(name: str, local_rank: int) -> torch.device:
    if name != "auto":
        named = torch.device(name)  # plain "cuda" means this rank's GPU, as torch.cuda.set_device needs an index
        return torch.device("cuda", local_rank) if named.type == "cuda" and named.index is None else named
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


def setup_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """The process group under torchrun (nccl on CUDA, else gloo) and this rank's device."""
    probe = pick_device(device_name, int(os.environ.get("LOCAL_RANK", "0")))
    world = Dist()
    if "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        dist.init_process_group("nccl" if probe.type == "cuda" else "gloo")
        world = Dist(dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size())
    device = pick_device(device_name, world.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return world, device


#: Parameter groups a batch may leave out of the graph (no emotion labels, no facts, no persona column), so DDP
#: must look for unused parameters when one of them trains; the trunk takes part in every step.
MAY_SIT_OUT = frozenset({"emotion_head", "memory", "persona"})


def wrap(model: torch.nn.Module, strategy: str, world: Dist, device: torch.device,
         groups: tuple[str, ...] = ("trunk",)) -> torch.nn.Module:
    """DDP, or FSDP2 (``strategy`` "fsdp": each block sharded, then the whole), or the model itself alone;
    ``groups``: what trains (DDP's search for unused parameters, an extra pass each step, only when needed)."""
    if world.world_size == 1:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in getattr(model, "blocks", []):
            fully_shard(block)
        return fully_shard(model)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=bool(MAY_SIT_OUT & set(groups)))


def full_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, keep: set[str],
               sharded: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Full (unsharded, host) model and optimizer state dicts, keyed by parameter name, on every rank; only the
    ``keep`` tensors (the bootstrap path never re-saves its pretrained weights), as copies the next step cannot
    change. A sharded (FSDP) model is gathered to new host tensors one by one; a whole one is copied in one go
    (:func:`host_snapshot`), which is what a training step waits for when it checkpoints (rosie-125m with AdamW:
    1.4 GB)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=sharded)
    weights = {k: v for k, v in get_model_state_dict(model, options=options).items() if k in keep}
    optim = get_optimizer_state_dict(model, optimizer, options=options) if optimizer is not None else None
    return (weights, optim) if sharded else host_snapshot((weights, optim))


def host_snapshot(tree: Any) -> Any:
    """``tree`` with every tensor copied to the host, sharing no storage with the live model or optimizer (which
    the next step changes in place while a background thread writes the copy): GPU tensors asynchronously into
    pinned memory, then one wait; host tensors (a CPU model's parameters, an optimizer's step counts) cloned."""
    on_gpu = [t for t in tree_leaves(tree) if isinstance(t, torch.Tensor) and t.device.type == "cuda"]

    def copy(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        if value.device.type != "cuda":
            return value.detach().clone()
        host = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
        return host.copy_(value.detach(), non_blocking=True)

    copied = tree_map(copy, tree)
    if on_gpu:
        torch.cuda.synchronize(on_gpu[0].device)
    return copied


def restore_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, weights: dict[str, Any],
                  optim: dict[str, Any]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict, set_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, optimizer, optim, options=options)


def mean_across(value: torch.Tensor, world: Dist) -> torch.Tensor:
    """The mean over ranks of a tensor on this rank's training device (where NCCL wants it; gloo's is the CPU),
    reduced there: the caller decides when to read it back."""
    if world.world_size == 1:
        return value
    total = value.detach().clone()
    dist.all_reduce(total)
    return total / world.world_size


def barrier(world: Dist) -> None:
    if world.world_size > 1:
        dist.barrier()


def teardown(world: Dist) -> None:
    if world.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()
