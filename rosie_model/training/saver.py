"""Checkpoints written off the training thread.

A checkpoint of rosie-125m with its optimizer is ~1.4 GB: written synchronously, every save stalls the step for
seconds. The trainer copies the step's state to the host (that copy is the state, so exact resume is unchanged)
and hands it to :class:`CheckpointWriter`, whose one thread writes it (atomically, as
:func:`rosie_model.core.checkpoint.save_checkpoint` always does) while training goes on. One write is in flight
at a time; a write that fails raises in the training thread at the next save or at :meth:`wait`.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import torch
from torch.utils._pytree import tree_map

from rosie_model.core.checkpoint import save_checkpoint


def _copied(tree: Any) -> Any:
    return tree_map(lambda value: value.clone() if isinstance(value, torch.Tensor) else value, tree)


class CheckpointWriter:
    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, folder: Path, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any], keep: int,
               copy: bool) -> None:
        """Write this checkpoint in the background. ``copy``: the tensors are the live ones (a CPU model's state
        dict holds its parameters, not copies), so they are cloned before training changes them."""
        self.wait()
        if copy:
            weights, state = _copied(weights), _copied(state)

        def write() -> None:
            try:
                save_checkpoint(folder, step, weights, state, keep)
            except BaseException as exc:  # noqa: BLE001 — handed to the training thread, raised there
                self._error = exc

        self._thread = threading.Thread(target=write, name=f"checkpoint-step-{step}")
        self._thread.start()

    def wait(self) -> None:
        """Until the write in flight is on disk; raises its error if it failed."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
