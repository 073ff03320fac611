"""Building the tokenizer and the pretraining shards from the curated lake, only when needed.

Retraining a tokenizer changes every token id downstream, so it happens only when there is none yet,
when its options change, or when asked; shards are rebuilt when the documents, the tokenizer or the
options changed since the last build (recorded in ``build.json``).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosie_pipeline.atomic import read_json
from rosie_pipeline.chat_format import chat_template
from rosie_pipeline.parquet import iter_rows
from rosie_pipeline.step import Record, committed_outputs, fingerprint
from rosie_pipeline.tokenize.dialogue_shards import DialogueShardOptions, write_dialogue_shards
from rosie_pipeline.tokenize.shards import ShardOptions, write_shards
from rosie_pipeline.tokenize.tokenizer import (
    TokenizerOptions,
    chat_format_of,
    load_tokenizer,
    sample_texts,
    save_tokenizer,
    tokenizer_sha256,
    train_tokenizer,
)

TRAINING_RECORD = "training.json"


def deduplicated_files(root: Path) -> list[Path]:
    """The committed partitions of a deduplicated-documents folder, in a stable order."""
    partitions = (read_json(root / "manifest.json") or {}).get("partitions", {})
    return [root / key / "documents.parquet" for key in sorted(partitions) if (root / key / "documents.parquet").exists()]


def dialogue_candidate_files(reddit_root: Path) -> list[Path]:
    """The committed dialogue candidates of a Reddit-threads folder (one file per monthly partition)."""
    return list(committed_outputs(reddit_root, "dialogue_candidates").values())


@dataclass(frozen=True)
class TokenizerInputs:
    """What the tokenizer's sample is drawn from: curated documents, Reddit dialogue candidates, dialogues."""

    documents: list[Path]
    candidates: list[Path]
    dialogues: list[Path]


def iter_dialogue_texts(files: list[Path]) -> Iterator[tuple[str, str]]:
    """Rendered dialogues (with Rosie's special tokens) for the tokenizer's training sample."""
    from rosie_pipeline.chat_format import render_text
    from rosie_pipeline.dialogue.schema import turns_of

    for path in files:
        for row in iter_rows(path):
            yield row["id"], render_text(turns_of(row))


def iter_documents(files: list[Path]) -> Iterator[tuple[str, str]]:
    for path in files:
        for row in iter_rows(path, columns=["id", "text"]):
            yield row["id"], row["text"]


def iter_dialogues(files: list[Path]) -> Iterator[tuple[str, str]]:
    for path in files:
        for row in iter_rows(path, columns=["id", "turns"]):
            yield row["id"], "\n".join(turn["text"] for turn in row["turns"])


@dataclass
class TokenizerBuild:
    sha256: str
    vocab_size: int
    trained: bool
    sample_chars: int


def build_tokenizer(inputs: TokenizerInputs, folder: Path, options: TokenizerOptions, sample_chars: int,
                    retrain: bool) -> TokenizerBuild:
    record = Record(folder / TRAINING_RECORD)
    wanted = {"options": dataclasses.asdict(options), "sample_chars": sample_chars}
    kept = None if retrain else record.current(wanted, [folder / "tokenizer.json"])
    if kept is not None:
        tokenizer = load_tokenizer(folder)
        return TokenizerBuild(tokenizer_sha256(folder), tokenizer.get_vocab_size(), False, kept["sampled_chars"])
    sampled = 0

    def texts() -> Iterator[str]:
        nonlocal sampled
        stream = itertools.chain(iter_documents(inputs.documents), iter_dialogues(inputs.candidates),
                                 iter_dialogue_texts(inputs.dialogues))   # read once, never held whole
        for text in sample_texts(stream, sample_chars):
            sampled += len(text)
            yield text

    tokenizer = train_tokenizer(texts(), options)
    if sampled == 0:
        raise ValueError("no curated documents to train the tokenizer on: materialize deduplicated_documents first")
    sha = save_tokenizer(tokenizer, folder, options)
    record.commit({**wanted, "sampled_chars": sampled, "sha256": sha})
    return TokenizerBuild(sha, tokenizer.get_vocab_size(), True, sampled)


#: Bump when the same documents and tokenizer give other token ids (2: people's text encoded without
#: special-token parsing).
ENCODING_VERSION = 2


def _rebuild_if_changed(out_dir: Path, tokenizer_dir: Path, files: list[Path], options: Any, force: bool,
                       build: Callable[[str], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Run ``build(tokenizer_hash)`` unless the inputs, tokenizer (and its chat markup) and options match the
    last build."""
    tokenizer_hash = tokenizer_sha256(tokenizer_dir)
    wanted = {"inputs": fingerprint(files), "tokenizer_sha256": tokenizer_hash, "options": dataclasses.asdict(options),
              "chat_format": chat_template(chat_format_of(tokenizer_dir)),  # the markup, as the text it renders
              "encoding": ENCODING_VERSION}
    record = Record(out_dir / "build.json")
    previous = None if force else record.current(wanted)
    if previous is not None:
        return previous["manifests"], False
    manifests = build(tokenizer_hash)
    record.commit({**wanted, "manifests": manifests})
    return manifests, True


def build_pretrain_shards(files: list[Path], tokenizer_dir: Path, out_dir: Path, options: ShardOptions,
                          force: bool) -> tuple[dict[str, Any], bool]:
    """The documents of ``files`` packed into ``out_dir``: (manifests by split, whether they were rebuilt now)."""
    if not files:
        raise ValueError("no deduplicated documents: materialize deduplicated_documents first")
    return _rebuild_if_changed(out_dir, tokenizer_dir, files, options, force, lambda tokenizer_hash: write_shards(
        iter_documents(files), load_tokenizer(tokenizer_dir), tokenizer_hash, out_dir, options))

def build_dialogue_shards(groups: dict[str, list[Path]], tokenizer_dir: Path, out_dir: Path,
                          options: DialogueShardOptions, force: bool) -> tuple[dict[str, Any], bool]:
    """The dialogues of each phase's files (``groups``: phase -> dialogue tables) tokenized into
    ``out_dir/<phase>/<split>``: (manifests by phase and split, whether they were rebuilt now).

    Rosie's own tokenizer for the scratch model; the bootstrap path passes its pretrained model's tokenizer
    and a folder of its own (the same dialogues and splits, other token ids)."""
    files = [path for paths in groups.values() for path in paths if path.exists()]
    if not files:
        raise ValueError("no dialogues: materialize the dialogue group first")
    rows = {phase: (row for path in paths if path.exists() for row in iter_rows(path)) for phase, paths in groups.items()}
    return _rebuild_if_changed(out_dir, tokenizer_dir, files, options, force, lambda tokenizer_hash: write_dialogue_shards(
        rows, load_tokenizer(tokenizer_dir), tokenizer_hash, out_dir, options, chat_format_of(tokenizer_dir)))
