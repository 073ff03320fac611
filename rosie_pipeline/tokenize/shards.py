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
#: Rows per Parquet row group (2 MB of uint16 rows of 2049): what writing a shard holds in memory.
ROW_GROUP_ROWS = 512


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
    """Packs a split's token stream into rows and streams them into the current shard one Parquet row group at a
    time (``ROW_GROUP_ROWS`` rows in the shard's dtype): memory is a row group, whatever the shard size (stacking
    a shard's int64 rows and writing them in one group took ~15x a shard, 1.9 GB for a 128 MB one)."""

    folder: Path
    seq_len: int
    dtype: np.dtype
    rows_per_shard: int
    shards: list[dict[str, Any]] = field(default_factory=list)
    documents: int = 0

    def __post_init__(self) -> None:
        self.group = np.empty((min(ROW_GROUP_ROWS, self.rows_per_shard), self.seq_len + 1), self.dtype)   # (rows, row)
        self.grouped = 0                      # rows in self.group
        self.carry = np.empty(0, self.dtype)  # the stream's tail: less than a row
        self.out: pq.ParquetWriter | None = None
        self.shard_rows = 0                   # rows already in the open shard's row groups

    def add(self, ids: list[int], documents: int) -> None:
        """Append the token ids of ``documents`` whole documents (EOS included) to the stream."""
        self.documents += documents
        stream, row, start = np.concatenate([self.carry, np.asarray(ids, dtype=self.dtype)]), self.seq_len + 1, 0
        while len(stream) - start >= row:
            room = min(len(self.group), self.rows_per_shard - self.shard_rows) - self.grouped
            take = min((len(stream) - start) // row, room)
            self.group[self.grouped : self.grouped + take] = stream[start : start + take * row].reshape(take, row)
            self.grouped, start = self.grouped + take, start + take * row
            if take == room:
                self._flush_group()
        self.carry = stream[start:].copy()

    def finish(self) -> int:
        """Write the last shard; returns the tokens left over (less than one row, not written)."""
        self._flush_group()
        self._close_shard()
        return len(self.carry)

    def _flush_group(self) -> None:
        if not self.grouped:
            return
        if self.out is None:
            schema = pa.schema([("tokens", pa.list_(pa.from_numpy_dtype(self.dtype), self.seq_len + 1))])
            self.out = pq.ParquetWriter(self.folder / f"shard-{len(self.shards):05d}.parquet", schema, compression="zstd")
        rows = self.group[: self.grouped]
        column = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), self.seq_len + 1)   # no copy
        self.out.write_table(pa.table({"tokens": column}))
        self.shard_rows, self.grouped = self.shard_rows + len(rows), 0
        if self.shard_rows == self.rows_per_shard:
            self._close_shard()

    def _close_shard(self) -> None:
        if self.out is None:
            return
        self.out.close()
        path = Path(self.out.where)
        self.shards.append({"file": path.name, "rows": self.shard_rows, "tokens": self.shard_rows * (self.seq_len + 1),
                            "sha256": file_sha256(path)})
        self.out, self.shard_rows = None, 0


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
