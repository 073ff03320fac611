"""Checkpoints: weights as safetensors, training state as a ``weights_only``-loadable file.

Nothing here is ever unpickled: ``state.pt`` holds only tensors, numbers, strings, lists and dicts and is
read with ``torch.load(weights_only=True)``. A checkpoint folder is written under a temporary name
and renamed when complete; only the last ``keep`` are kept.
"""

from __future__ import annotations

import filecmp
import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_STEP_DIR = re.compile(r"^step-(\d{8})$")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """A file written under a temporary name and renamed, so a killed write leaves the old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def replace_folder(new: Path, target: Path) -> None:
    """``target`` becomes the complete folder ``new``; an old ``target`` is moved aside first and removed after,
    so a reader sees the old folder or the new one, never half of either."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_weights(state_dict: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None,
                 unless_identical: bool = False) -> None:
    """A state dict to ``path`` as safetensors, atomically. ``unless_identical`` leaves an existing file
    with the same bytes untouched (its mtime too, which file watchers and digests may read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(tmp), metadata=metadata)
    if unless_identical and path.is_file() and filecmp.cmp(tmp, path, shallow=False):
        tmp.unlink()
        return
    os.replace(tmp, path)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def save_checkpoint(folder: Path, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any], keep: int) -> Path:
    target = folder / f"step-{step:08d}"
    tmp = folder / f".step-{step:08d}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(weights, tmp / "model.safetensors")
    torch.save(state, tmp / "state.pt")
    replace_folder(tmp, target)
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if _STEP_DIR.match(p.name) and (p / "state.pt").exists())


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    return load_weights(path / "model.safetensors"), torch.load(path / "state.pt", weights_only=True)
