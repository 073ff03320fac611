"""Tokenize group: rosie_tokenizer (byte-level BPE with Rosie's special tokens) -> pretrain_shards."""

from typing import Any

import dagster as dg

from dagster_project.assets.curate import deduplicated_documents
from dagster_project.assets.dialogue import DIALOGUE_ASSETS
from dagster_project.config import dataclass_from_config, md_table
from dagster_project.resources import RosieHomeResource
from rosie_pipeline.chat_format import SPECIAL_TOKENS
from rosie_pipeline.paths import RosieHome
from rosie_pipeline.dialogue.datasets import leaked_dialogues
from rosie_pipeline.tokenize.build import (
    build_dialogue_shards,
    build_pretrain_shards,
    build_tokenizer,
    deduplicated_files,
    dialogue_files,
    iter_documents,
)
from rosie_pipeline.tokenize.dialogue_shards import DialogueShardOptions
from rosie_pipeline.tokenize.shards import ShardOptions, verify_split
from rosie_pipeline.tokenize.tokenizer import TokenizerOptions, load_tokenizer, special_token_ids, tokenizer_sha256


class TokenizerConfig(dg.Config):
    vocab_size: int = 32_000
    min_frequency: int = 2
    model_max_length: int = 2048
    sample_chars: int = 200_000_000
    """Characters of deduplicated documents and dialogues to train on (a deterministic sample)."""
    retrain: bool = False
    """Train again even though a tokenizer with these options exists (changes every token id)."""


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
    home = rosie.home
    options = dataclass_from_config(config, TokenizerOptions)
    build = build_tokenizer(home, options, config.sample_chars, config.retrain)
    context.log.info(("trained" if build.trained else "kept the existing") +
                     f" tokenizer: {build.vocab_size:,} tokens, sha256 {build.sha256[:12]}")
    tokenizer = load_tokenizer(home.tokenizer)
    texts = [text for _, text in zip(range(50), iter_documents(deduplicated_files(home)))]
    texts = [t for _, t in texts] + ["Hi Rosie! 😀 naïve café — 東京 <|user|> ok"]
    failures = [t[:80] for t in texts if tokenizer.decode(tokenizer.encode(t).ids, skip_special_tokens=False) != t]
    chars = sum(len(t) for t in texts)
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(texts))
    special_ok = all(len(tokenizer.encode(t).ids) == 1 for t in SPECIAL_TOKENS)
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


def _verify(home: RosieHome, asset_name: str, manifests: dict[str, Any]) -> list[str]:
    """Problems found re-checking every split's shards against their sha256 and the current tokenizer."""
    problems = []
    for split in manifests:
        try:
            verify_split(home.asset_dir(asset_name) / split, tokenizer_sha256(home.tokenizer))
        except ValueError as exc:
            problems.append(str(exc))
    return problems


class ShardConfig(dg.Config):
    seq_len: int = 2048
    val_permille: int = 10
    """Documents whose id hashes below this (per mille) go to the validation split."""
    target_shard_bytes: int = 128 * 1024 * 1024
    force: bool = False


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
    home = rosie.home
    options = dataclass_from_config(config, ShardOptions)
    manifests, rebuilt = build_pretrain_shards(home, options, config.force)
    context.log.info(("built" if rebuilt else "kept unchanged") + " shards: " +
                     ", ".join(f"{s} {m['tokens']:,} tokens in {len(m['shards'])} shards" for s, m in manifests.items()))
    problems = _verify(home, "pretrain_shards", manifests)
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
            "path": dg.MetadataValue.path(str(home.asset_dir("pretrain_shards"))),
        },
        check_results=[
            dg.AssetCheckResult(check_name="token_counts", passed=train["tokens"] > 0 and val["tokens"] > 0,
                                metadata={"train_tokens": train["tokens"], "val_tokens": val["tokens"]}),
            dg.AssetCheckResult(check_name="integrity", passed=not problems,
                                metadata={"problems": "; ".join(problems) or "none"}),
        ],
    )


class DialogueShardConfig(dg.Config):
    seq_len: int = 2048
    rows_per_shard: int = 20_000
    max_truncated_share: float = 0.05
    """truncation fails when a larger share of rows had some of Rosie's own tokens cut."""
    min_emotions: int = 5
    force: bool = False


@dg.asset(
    group_name="tokenize",
    deps=[rosie_tokenizer, *DIALOGUE_ASSETS],
    kinds={"parquet"},
    check_specs=[
        dg.AssetCheckSpec("truncation", asset="dialogue_shards", description="Few rows lose any of Rosie's tokens."),
        dg.AssetCheckSpec("no_leakage", asset="dialogue_shards",
                          description="No dialogue (by content) is in train and in val or gold."),
        dg.AssetCheckSpec("label_distribution", asset="dialogue_shards",
                          description="The training rows cover enough emotions."),
        dg.AssetCheckSpec("integrity", asset="dialogue_shards",
                          description="Every shard matches its sha256 and the current tokenizer."),
    ],
    description="Dialogues rendered in Rosie's chat format, one row per Rosie turn (loss on that turn), with "
    "emotion, persona and tokenized memory columns: personality/ for phase 2, emotion_memory/ for phase 3, "
    "each with train/val (and gold) splits.",
)
def dialogue_shards(context: dg.AssetExecutionContext, config: DialogueShardConfig,
                    rosie: RosieHomeResource) -> dg.MaterializeResult:
    home = rosie.home
    options = dataclass_from_config(config, DialogueShardOptions)
    manifests, rebuilt = build_dialogue_shards(home, options, config.force)
    problems = [p for phase, splits in manifests.items() for p in _verify(home, f"dialogue_shards/{phase}", splits)]
    flat = {(phase, split): m for phase, splits in manifests.items() for split, m in splits.items()}
    rows = sum(m["rows"] for m in flat.values())
    truncated = sum(m["truncated_rows"] for m in flat.values())
    leaked = leaked_dialogues(dialogue_files(home))
    thin = [f"{phase}/train: {len(splits.get('train', {}).get('emotions', {}))} emotions"
            for phase, splits in manifests.items() if len(splits.get("train", {}).get("emotions", {})) < config.min_emotions]
    table = [[f"{phase}/{split}", m["dialogues"], m["rows"], m["tokens"], m["truncated_rows"], len(m["shards"])]
             for (phase, split), m in flat.items()]
    context.log.info(("built" if rebuilt else "kept unchanged") + f" dialogue shards: {rows:,} rows, "
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
            "path": dg.MetadataValue.path(str(home.asset_dir("dialogue_shards"))),
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


TOKENIZE_ASSETS = [rosie_tokenizer, pretrain_shards, dialogue_shards]
