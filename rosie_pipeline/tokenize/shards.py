"""Packed, fixed-length token shards (DESIGN's token-shard contract).

Documents are tokenized in batches, joined with ``<|endoftext|>`` between them and cut into rows of
``seq_len + 1`` ids (inputs and shifted targets in one row). The split is decided per document by
the hash of its id, so a document never straddles train and val and the split is the same on every
run. Each split is a folder of Parquet shards plus ``manifest.json`` with rows, tokens and sha256
per shard and the tokenizer's hash; a reader verifies both before training on it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from rosie_pipeline.atomic import write_json_atomic
from rosie_pipeline.chat_format import EOS
from rosie_pipeline.tokenize.tokenizer import text_only

SPLITS = ("train", "val")
ENCODE_BATCH = 1024


@dataclass(frozen=True)
class ShardOptions:
    seq_len: int = 2048
    val_permille: int = 10
    target_shard_bytes: int = 128 * 1024 * 1024
    dataset: str = "pretrain"


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits, else int32."""
    return np.dtype(np.uint16) if vocab_size <= 65_536 else np.dtype(np.int32)


def split_of(doc_id: str, val_permille: int) -> str:
    return "val" if int(hashlib.sha1(doc_id.encode()).hexdigest()[:8], 16) % 1000 < val_permille else "train"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class _SplitWriter:
    """Accumulates a split's token stream and writes full rows into size-bounded shards."""

    folder: Path
    seq_len: int
    dtype: np.dtype
    rows_per_shard: int
    buffer: list[np.ndarray] = field(default_factory=list)
    buffered: int = 0
    shards: list[dict[str, Any]] = field(default_factory=list)
    pending_rows: list[np.ndarray] = field(default_factory=list)
    documents: int = 0

    def add(self, ids: list[int], documents: int) -> None:
        """Append the token ids of ``documents`` whole documents (EOS included) to the stream."""
        self.buffer.append(np.array(ids, dtype=np.int64))
        self.buffered += len(ids)
        self.documents += documents
        row = self.seq_len + 1
        if self.buffered >= row:
            stream = np.concatenate(self.buffer)
            full = len(stream) // row
            self.pending_rows.extend(stream[: full * row].reshape(full, row))
            rest = stream[full * row :]
            self.buffer, self.buffered = [rest], len(rest)
            while len(self.pending_rows) >= self.rows_per_shard:
                self._write(self.pending_rows[: self.rows_per_shard])
                self.pending_rows = self.pending_rows[self.rows_per_shard :]

    def finish(self) -> int:
        """Write the last shard; returns the tokens left over (less than one row, not written)."""
        if self.pending_rows:
            self._write(self.pending_rows)
            self.pending_rows = []
        return self.buffered

    def _write(self, rows: list[np.ndarray]) -> None:
        matrix = np.stack(rows).astype(self.dtype, copy=False)
        flat = pa.array(matrix.reshape(-1))
        column = pa.FixedSizeListArray.from_arrays(flat, self.seq_len + 1)
        name = f"shard-{len(self.shards):05d}.parquet"
        path = self.folder / name
        pq.write_table(pa.table({"tokens": column}), path, compression="zstd")
        self.shards.append({"file": name, "rows": len(rows), "tokens": int(matrix.size), "sha256": file_sha256(path)})


def write_shards(
    documents: Iterable[tuple[str, str]],
    tokenizer: Tokenizer,
    tokenizer_hash: str,
    out_dir: Path,
    options: ShardOptions,
) -> dict[str, dict[str, Any]]:
    """Tokenize and pack (id, text) documents into ``out_dir/{train,val}``; returns the manifests.

    Built in a temporary folder that replaces ``out_dir`` only when both splits are complete.
    """
    vocab_size = tokenizer.get_vocab_size()
    dtype = token_dtype(vocab_size)
    eos = tokenizer.token_to_id(EOS)
    if eos is None:
        raise ValueError("the tokenizer has no <|endoftext|> token")
    rows_per_shard = max(1, options.target_shard_bytes // ((options.seq_len + 1) * dtype.itemsize))
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    writers = {}
    for split in SPLITS:
        (tmp / split).mkdir(parents=True)
        writers[split] = _SplitWriter(tmp / split, options.seq_len, dtype, rows_per_shard)
    text_tokenizer = text_only(tokenizer)  # a page that spells <|endoftext|> is text, not the end of it
    try:
        for batch in _batches(documents, ENCODE_BATCH):
            encodings = text_tokenizer.encode_batch_fast([text for _, text in batch], add_special_tokens=False)
            streams: dict[str, list[int]] = {split: [] for split in SPLITS}
            counts = dict.fromkeys(SPLITS, 0)
            for (doc_id, _), encoding in zip(batch, encodings):
                split = split_of(doc_id, options.val_permille)
                streams[split] += encoding.ids
                streams[split].append(eos)
                counts[split] += 1
            for split in SPLITS:
                if counts[split]:
                    writers[split].add(streams[split], counts[split])
        manifests = {}
        for split, writer in writers.items():
            leftover = writer.finish()
            manifests[split] = {
                "dataset": options.dataset,
                "split": split,
                "seq_len": options.seq_len,
                "row_length": options.seq_len + 1,
                "dtype": dtype.name,
                "vocab_size": vocab_size,
                "eos_id": eos,
                "tokenizer_sha256": tokenizer_hash,
                "documents": writer.documents,
                "rows": sum(s["rows"] for s in writer.shards),
                "tokens": sum(s["tokens"] for s in writer.shards),
                "tokens_dropped": leftover,
                "shards": writer.shards,
            }
            write_json_atomic(tmp / split / "manifest.json", manifests[split])
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, out_dir)
    return manifests


def _swap_in(new: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def _batches(items: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    batch: list[tuple[str, str]] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def verify_split(folder: Path, tokenizer_hash: str | None = None) -> dict[str, Any]:
    """Check every shard's sha256 (and the tokenizer hash); returns the manifest."""
    import json

    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    if tokenizer_hash is not None and manifest["tokenizer_sha256"] != tokenizer_hash:
        raise ValueError(f"{folder}: shards were made with another tokenizer")
    for shard in manifest["shards"]:
        if file_sha256(folder / shard["file"]) != shard["sha256"]:
            raise ValueError(f"{folder / shard['file']}: sha256 does not match the manifest")
    return manifest
