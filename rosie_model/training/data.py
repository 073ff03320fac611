"""Reading token shards (DESIGN's contract) for training: verified, sharded by rank, resumable.

A split is a folder with ``manifest.json`` and Parquet shards of fixed-length rows (``tokens``:
``seq_len + 1`` ids; dialogue shards add ``loss_mask``, ``emotion``, ``persona`` and ``memory``).
Before training the reader checks every shard's sha256 and that the shards were made with the
model's tokenizer. Each epoch visits shards and rows in an order fixed by (seed, epoch); global row
``g`` of that order belongs to rank ``g % world_size``, so N ranks with batch B see exactly the rows a
single process with batch N*B sees. A position (epoch, shard, row) lets training resume mid-epoch.

Dialogue rows are right-padded to the split's length and most are far shorter (half the columns of the demo's
bootstrap rows are padding). With ``window`` rows given, each shard's shuffled order is sorted by length in runs
of that many rows, alternately ascending and descending (:func:`zigzag_by_length`), so the rows of any batch
have similar lengths and the trainer cuts the padding columns off (``used_width``). The order stays a
function of (seed, epoch, shard), so positions and exact resume are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch.utils._pytree import tree_map

from rosie_model.core.checkpoint import sha256_file
from rosie_model.core.protocol import RosieCore

OPTIONAL_COLUMNS = ("loss_mask", "emotion", "persona", "memory")


class DataError(ValueError):
    """The shards are missing, damaged or made with another tokenizer."""


@dataclass(frozen=True)
class Position:
    """Where the next batch starts: epoch, index in the epoch's shard order, row within that shard."""

    epoch: int = 0
    shard: int = 0
    row: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "shard": self.shard, "row": self.row}


class ShardDataset:
    def __init__(self, folder: Path, tokenizer_sha256: str | None = None, verify: bool = True) -> None:
        self.folder = Path(folder)
        manifest_path = self.folder / "manifest.json"
        if not manifest_path.exists():
            raise DataError(f"{self.folder}: no manifest.json (is this a token-shard split?)")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        if tokenizer_sha256 is not None and self.manifest["tokenizer_sha256"] != tokenizer_sha256:
            raise DataError(f"{self.folder}: shards were made with tokenizer {self.manifest['tokenizer_sha256'][:12]}, "
                            f"the model uses {tokenizer_sha256[:12]}")
        self.shards = [s for s in self.manifest["shards"] if s["rows"] > 0]
        if verify:
            for shard in self.shards:
                if sha256_file(self.folder / shard["file"]) != shard["sha256"]:
                    raise DataError(f"{self.folder / shard['file']}: sha256 does not match the manifest")
        self.row_length = int(self.manifest["row_length"])
        self.rows = sum(s["rows"] for s in self.shards)

    @property
    def digest(self) -> str:
        """A short identity of the split (for MLflow dataset lineage)."""
        return hashlib.sha256("".join(s["sha256"] for s in self.shards).encode()).hexdigest()[:16]

    def _shard_order(self, seed: int, epoch: int) -> list[int]:
        return np.random.default_rng([seed, epoch]).permutation(len(self.shards)).tolist()

    def _load(self, index: int, seed: int, epoch: int, window: int = 0) -> dict[str, Any]:
        table = pq.read_table(self.folder / self.shards[index]["file"])
        tokens = np.stack(table["tokens"].to_numpy(zero_copy_only=False))          # (rows, row_length)
        order = np.random.default_rng([seed, epoch, index]).permutation(table.num_rows)
        if window > 1 and "pad_id" in self.manifest:
            order = zigzag_by_length(order, (tokens != self.manifest["pad_id"]).sum(1), window)
        columns: dict[str, Any] = {"tokens": tokens[order]}
        for name in OPTIONAL_COLUMNS:
            if name in table.column_names:
                values = table[name].to_pylist()
                columns[name] = [values[i] for i in order]
        return columns

    def rows_from(self, start: Position, seed: int, window: int = 0) -> Iterator[tuple[dict[str, Any], Position]]:
        """Every row from ``start`` on, forever (epoch after epoch), with the position after it; ``window``:
        rows sorted by length in runs of that many (0: shuffled only)."""
        if not self.shards:
            raise DataError(f"{self.folder}: no rows")
        epoch, shard, row = start.epoch, start.shard, start.row
        while True:
            order = self._shard_order(seed, epoch)
            while shard < len(order):
                columns = self._load(order[shard], seed, epoch, window)
                count = len(columns["tokens"])
                for r in range(row, count):
                    item = {name: values[r] for name, values in columns.items()}
                    after = Position(epoch, shard, r + 1) if r + 1 < count else Position(epoch, shard + 1, 0)
                    yield item, after
                shard, row = shard + 1, 0
            epoch, shard = epoch + 1, 0

    def row_batches(self, batch_size: int, rank: int, world_size: int, seed: int, start: Position = Position(),
                    group_by_length: int = 0) -> Iterator[tuple[list[dict[str, Any]], Position]]:
        """Rows for ``rank``: dealt round-robin, ``batch_size`` per rank per step, with the position after them;
        ``group_by_length`` > 0 sorts by length in runs of that many steps' rows."""
        picked: list[dict[str, Any]] = []
        window = group_by_length * batch_size * world_size
        for index, (item, after) in enumerate(self.rows_from(start, seed, window)):
            if index % world_size == rank:
                picked.append(item)
            if index % world_size == world_size - 1 and len(picked) == batch_size:
                yield picked, after
                picked = []

    def batches(self, batch_size: int, rank: int, world_size: int, seed: int, start: Position = Position(),
                group_by_length: int = 0) -> Iterator[tuple[dict[str, torch.Tensor], Position]]:
        for rows, after in self.row_batches(batch_size, rank, world_size, seed, start, group_by_length):
            yield collate(rows), after


def mixed_batches(sources: list[tuple[ShardDataset, int, Position]], rank: int, world_size: int, seed: int,
                  group_by_length: int = 0) -> Iterator[tuple[dict[str, torch.Tensor], list[Position]]]:
    """Batches that take a fixed number of rows from each (split, rows per batch, start) source, e.g. phase 3's
    data plus some of phase 2's replayed; yields the batch and each source's position after it."""
    streams = [data.row_batches(rows, rank, world_size, seed, start, group_by_length)
               for data, rows, start in sources if rows > 0]
    while True:
        parts = [next(stream) for stream in streams]
        yield collate([row for rows, _ in parts for row in rows]), [after for _, after in parts]


class Prefetch:
    """An iterator of batches read ``depth`` ahead by a background thread (in page-locked memory when they go to a
    GPU, so the copy is asynchronous): a shard's read and a batch's collate overlap the step instead of stalling
    it. The order is the wrapped iterator's, so positions and exact resume are unchanged. :attr:`waited_s` is how
    long the training loop has waited for a batch: the data's share of step time."""

    def __init__(self, batches: Iterator[Any], depth: int = 2, pin: bool = False) -> None:
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(depth)
        self._closed = threading.Event()
        self.waited_s = 0.0
        self._thread = threading.Thread(target=self._fill, args=(batches, pin), name="prefetch", daemon=True)
        self._thread.start()

    def _fill(self, batches: Iterator[Any], pin: bool) -> None:
        try:
            for item in batches:
                if pin:
                    item = (tree_map(lambda t: t.pin_memory() if isinstance(t, torch.Tensor) else t, item[0]), *item[1:])
                while not self._put((True, item)):
                    if self._closed.is_set():
                        return
        except BaseException as exc:  # noqa: BLE001 — raised in the training loop, at the batch it concerns
            self._put((False, exc))

    def _put(self, entry: tuple[bool, Any]) -> bool:
        try:
            self._queue.put(entry, timeout=0.5)
            return True
        except queue.Full:
            return False

    def __iter__(self) -> Prefetch:
        return self

    def __next__(self) -> Any:
        started = time.perf_counter()
        ok, item = self._queue.get()
        self.waited_s += time.perf_counter() - started
        if not ok:
            raise item
        return item

    def close(self) -> None:
        """Stop reading ahead (the thread ends at its next batch)."""
        self._closed.set()


def zigzag_by_length(order: np.ndarray, lengths: np.ndarray, window: int) -> np.ndarray:
    """``order`` with each run of ``window`` rows sorted by ``lengths``, ascending in even runs and descending
    in odd ones: two runs meet long-to-long or short-to-short, so any consecutive rows (wherever a batch
    starts) have similar lengths, without sorting the whole shard into a short-to-long curriculum."""
    runs = [order[start:start + window] for start in range(0, len(order), window)]
    runs = [run[np.argsort(lengths[run], kind="stable")] for run in runs]
    return np.concatenate([run[::-1] if k % 2 else run for k, run in enumerate(runs)]) if runs else order


def collate(rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    batch: dict[str, torch.Tensor] = {"tokens": torch.from_numpy(np.stack([r["tokens"] for r in rows]).astype(np.int64))}
    if "loss_mask" in rows[0]:
        batch["loss_mask"] = torch.tensor(np.array([r["loss_mask"] for r in rows], dtype=bool))
    if "emotion" in rows[0]:
        batch["emotion"] = torch.tensor([-1 if r["emotion"] is None else r["emotion"] for r in rows])
    if "persona" in rows[0]:
        batch["persona"] = torch.tensor([0 if r["persona"] is None else r["persona"] for r in rows])
    if "memory" in rows[0]:
        facts = [r["memory"] or [] for r in rows]
        slots = max(1, max(len(f) for f in facts))
        width = max(1, max((len(t) for f in facts for t in f), default=1))
        memory = torch.full((len(rows), slots, width), -1, dtype=torch.long)
        for i, fact_list in enumerate(facts):
            for j, fact in enumerate(fact_list):
                memory[i, j, : len(fact)] = torch.tensor(fact[:width])
        batch["memory"] = memory  # -1 marks padding; the trainer maps it to the model's pad id
    return batch


def conditioning(core: RosieCore, batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor | None]:
    """The persona and memory-bank arguments of ``core.forward`` for a collated batch. A model without memory
    layers gets no bank (its facts travel in the context); padding slots (-1) become the pad id."""
    persona = batch["persona"].to(device, non_blocking=True) if "persona" in batch else None
    memory = memory_mask = None
    if "memory" in batch and core.config.memory_layers:
        fact_ids = batch["memory"].to(device, non_blocking=True)                 # (B, facts, tokens), -1 = padding
        fact_ids = torch.where(fact_ids < 0, torch.full_like(fact_ids, core.config.pad_id), fact_ids)
        memory, memory_mask = core.encode_memory(fact_ids)
    return {"persona": persona, "memory": memory, "memory_mask": memory_mask}


def used_width(tokens: torch.Tensor, pad_id: int, multiple: int = 32) -> int:
    """How many columns of a right-padded batch hold any token, rounded up to ``multiple`` (few distinct shapes,
    so torch.compile does not recompile for every batch). Causal attention makes cutting the rest exact: no
    position reads the padding after it."""
    used = (tokens != pad_id).any(0).nonzero()
    if len(used) == 0:
        return tokens.shape[1]
    return min(tokens.shape[1], -(-(int(used.max()) + 1) // multiple) * multiple)
