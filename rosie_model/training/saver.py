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

from rosie_model.core.checkpoint import save_checkpoint


class CheckpointWriter:
    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, folder: Path, step: int, weights: dict[str, torch.Tensor], state: dict[str, Any], keep: int) -> None:
        """Write this checkpoint in the background. The tensors must be copies training does not change
        (:func:`rosie_model.training.distributed.full_state` makes them)."""
        self.wait()

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
