"""Dialogue token shards for phases 2 and 3 (the token-shard contract plus per-row columns).

Written per phase: ``personality/`` from the personality dialogues (phase 2) and ``emotion_memory/``
from the emotion and memory dialogues (phase 3), each with its ``train``/``val`` (and ``gold``) splits.

Each Rosie turn becomes one row: the conversation up to and including that turn, rendered in Rosie's
chat format, padded to ``seq_len + 1``. The loss mask covers that turn (her emotion token, words and
closing newline) and the token that follows it (the next speaker's token or ``<|endoftext|>``), so the
model learns to reply and to stop. Columns: ``tokens``, ``loss_mask``, ``emotion`` (index in Rosie's
emotion list; -1 for a turn without a label, which renders as neutral but teaches the emotion head
nothing), ``persona``, ``memory`` (token ids of each fact) and ``dialogue_id``. A conversation too
long for a row loses its earliest turns (the system block stays), then the system block (facts rendered
in the context, on the bootstrap path, stay longest); rows still too long are cut and counted as
truncated when any of Rosie's own tokens are cut.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tokenizers import Tokenizer

from rosie_pipeline.atomic import write_json_atomic
from rosie_pipeline.chat_format import (EMOTIONS, EOS, PAD, ROSIE_FORMAT, ChatFormat, Piece, Turn, memory_pieces,
                                        render_segments)
from rosie_pipeline.dialogue.schema import turns_of
from rosie_pipeline.tokenize.shards import _swap_in, file_sha256, token_dtype
from rosie_pipeline.tokenize.tokenizer import text_only


@dataclass(frozen=True)
class DialogueShardOptions:
    seq_len: int = 2048
    rows_per_shard: int = 20_000
    #: Render each dialogue's facts as ``<|memory|>`` lines after the system block (the bootstrap path, whose
    #: pretrained model has no memory attention) instead of leaving them to the ``memory`` column alone.
    memory_in_context: bool = False


@dataclass
class EncodedRow:
    tokens: list[int]
    loss_mask: list[bool]
    emotion: int
    persona: int
    memory: list[list[int]]
    dialogue_id: str
    truncated: bool


class DialogueEncoder:
    """Tokenizes each turn once per dialogue, then cuts one row per Rosie turn from the cached pieces."""

    def __init__(self, tokenizer: Tokenizer, seq_len: int, memory_in_context: bool = False,
                 fmt: ChatFormat = ROSIE_FORMAT) -> None:
        self.tokenizer, self.fmt = tokenizer, fmt
        self.text_tokenizer = text_only(tokenizer)
        self.length = seq_len + 1
        self.memory_in_context = memory_in_context
        self.pad = tokenizer.token_to_id(PAD)
        self.eos = tokenizer.token_to_id(EOS)

    def _encoded(self, pieces: list[Piece]) -> list[tuple[list[int], bool]]:
        """(ids, covered by the loss) per piece; people's words through the text-only tokenizer."""
        return [((self.text_tokenizer if p.written else self.tokenizer).encode(p.text, add_special_tokens=False).ids,
                 p.rosie) for p in pieces]

    def _pieces(self, turn: Turn) -> list[tuple[list[int], bool]]:
        return self._encoded(render_segments([turn], fmt=self.fmt)[:-1])

    def encode(self, row: dict[str, Any]) -> list[EncodedRow]:
        turns = turns_of(row)
        system = [t for t in turns[:1] if t.role == "system"]
        body = turns[len(system):]
        facts = list(row.get("memory") or [])
        system_ids = [i for t in system for ids, _ in self._pieces(t) for i in ids]
        memory_ids = [i for ids, _ in self._encoded(memory_pieces(facts, self.fmt)) for i in ids] \
            if self.memory_in_context and facts else []
        # what precedes the turns, longest first: the system block (then the facts, as the chat template
        # renders them), the facts alone (they are what the answer needs), nothing
        prefixes = [system_ids + memory_ids, memory_ids] if memory_ids else [system_ids]
        pieces = [self._pieces(t) for t in body]
        sizes = [sum(len(ids) for ids, _ in p) for p in pieces]
        memory = [self.text_tokenizer.encode(fact, add_special_tokens=False).ids for fact in facts]
        rows = []
        for k, turn in enumerate(body):
            if turn.role != "rosie":
                continue
            following = [i for ids, _ in pieces[k + 1] for i in ids] if k + 1 < len(body) else []
            terminator = following[0] if following else self.eos
            # the earliest start whose context fits after the longest prefix that fits at all
            start, prefix = k, []
            for option in prefixes:
                fitting = next((c for c in range(k + 1) if len(option) + sum(sizes[c : k + 1]) + 1 <= self.length), None)
                if fitting is not None:
                    start, prefix = fitting, option
                    break
            ids, mask = list(prefix), [False] * len(prefix)
            for j in range(start, k + 1):
                for piece_ids, is_rosie in pieces[j]:
                    ids += piece_ids
                    mask += [is_rosie and j == k] * len(piece_ids)
            ids.append(terminator)
            mask.append(True)
            truncated = False
            if len(ids) > self.length:  # the turn itself does not fit: keep its end
                truncated = sum(mask) > sum(mask[-self.length :])
                ids, mask = ids[-self.length :], mask[-self.length :]
            padding = self.length - len(ids)
            rows.append(EncodedRow(ids + [self.pad] * padding, mask + [False] * padding,
                                   EMOTIONS.index(turn.emotion) if turn.emotion else -1, int(row["persona"]), memory,
                                   row["id"], truncated))
        return rows


def _schema(length: int, dtype: np.dtype) -> pa.Schema:
    value_type = pa.uint16() if dtype == np.uint16 else pa.int32()
    return pa.schema([("tokens", pa.list_(value_type, length)), ("loss_mask", pa.list_(pa.bool_())),
                      ("emotion", pa.int16()), ("persona", pa.int16()), ("memory", pa.list_(pa.list_(pa.int32()))),
                      ("dialogue_id", pa.string())])


def write_dialogue_shards(groups: dict[str, Iterable[dict[str, Any]]], tokenizer: Tokenizer, tokenizer_hash: str,
                          out_dir: Path, options: DialogueShardOptions,
                          fmt: ChatFormat = ROSIE_FORMAT) -> dict[str, dict[str, dict[str, Any]]]:
    """Encode each group's dialogues (each carries its ``split``) into ``out_dir/<group>/<split>/``.

    Returns manifests by group and split. Built in a temporary folder swapped in when complete.
    """
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        manifests = {group: _write_group(dialogues, tokenizer, tokenizer_hash, tmp / group, options, fmt)
                     for group, dialogues in groups.items()}
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, out_dir)
    return manifests


def _write_group(dialogues: Iterable[dict[str, Any]], tokenizer: Tokenizer, tokenizer_hash: str, folder_root: Path,
                 options: DialogueShardOptions, fmt: ChatFormat) -> dict[str, dict[str, Any]]:
    encoder = DialogueEncoder(tokenizer, options.seq_len, options.memory_in_context, fmt)
    dtype = token_dtype(tokenizer.get_vocab_size())
    schema = _schema(options.seq_len + 1, dtype)
    pending: dict[str, list[EncodedRow]] = {}
    shards: dict[str, list[dict[str, Any]]] = {}
    stats: dict[str, Counter[str]] = {}

    def flush(split: str) -> None:
        rows = pending.pop(split, [])
        if not rows:
            return
        folder = folder_root / split
        folder.mkdir(parents=True, exist_ok=True)
        name = f"shard-{len(shards.setdefault(split, [])):05d}.parquet"
        table = pa.table({
            "tokens": pa.array([np.asarray(r.tokens, dtype=dtype) for r in rows], schema.field("tokens").type),
            "loss_mask": [r.loss_mask for r in rows], "emotion": pa.array([r.emotion for r in rows], pa.int16()),
            "persona": pa.array([r.persona for r in rows], pa.int16()),
            "memory": pa.array([r.memory for r in rows], pa.list_(pa.list_(pa.int32()))),
            "dialogue_id": [r.dialogue_id for r in rows],
        }, schema=schema)
        pq.write_table(table, folder / name, compression="zstd")
        tokens = sum(sum(1 for t in r.tokens if t != encoder.pad) for r in rows)
        shards[split].append({"file": name, "rows": len(rows), "tokens": tokens, "sha256": file_sha256(folder / name)})

    for dialogue in dialogues:
        split = dialogue["split"]
        counts = stats.setdefault(split, Counter())
        counts["dialogues"] += 1
        for row in encoder.encode(dialogue):
            pending.setdefault(split, []).append(row)
            counts["rows"] += 1
            counts["truncated"] += row.truncated
            counts[f"emotion:{EMOTIONS[row.emotion]}" if row.emotion >= 0 else "unlabelled"] += 1
            if len(pending[split]) >= options.rows_per_shard:
                flush(split)
    for split in list(pending):
        flush(split)
    manifests = {}
    for split, files in shards.items():
        counts = stats[split]
        manifests[split] = {
            "dataset": f"dialogue-{folder_root.name}", "split": split, "seq_len": options.seq_len,
            "row_length": options.seq_len + 1, "dtype": np.dtype(dtype).name, "vocab_size": tokenizer.get_vocab_size(),
            "pad_id": encoder.pad, "eos_id": tokenizer.token_to_id(EOS), "tokenizer_sha256": tokenizer_hash,
            "chat_format": fmt.name,
            "dialogues": counts["dialogues"], "rows": counts["rows"], "tokens": sum(s["tokens"] for s in files),
            "truncated_rows": counts["truncated"],
            "emotions": {k.split(":", 1)[1]: v for k, v in counts.items() if k.startswith("emotion:")},
            "shards": files,
        }
        write_json_atomic(folder_root / split / "manifest.json", manifests[split])
    return manifests
