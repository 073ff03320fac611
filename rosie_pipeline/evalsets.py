"""Held-out evaluation sets, written as files that rosie_model's evaluator reads (``spec.json``).

* ``texts.jsonl``: validation documents per source (web, books, reddit), by the same document-hash split
  the pretraining shards use, so the model never trained on them;
* ``memory.jsonl``: held-out memory dialogues as multiple choice — the conversation without Rosie's
  answer, the facts, the true answer and answers to the same question from other dialogues;
* the dialogue shard splits for dialogue perplexity (``personality/val``) and emotion
  (``emotion_memory/gold``, else ``emotion_memory/val``);
* ``scorecard.json``: the scorecard's prompts (``data/scorecard.yaml``), talked through ``Rosie.reply``;
* ``conversations.jsonl``: held-out *human* conversations — imported chats in the val split of the dialogue
  tables and held-out Reddit documents — for bits per byte that memorised templates cannot win.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from rosie_pipeline.atomic import atomic_path, write_json_atomic
from rosie_pipeline.chat_format import as_messages
from rosie_pipeline.dialogue.schema import turns_of
from rosie_pipeline.parquet import iter_rows
from rosie_pipeline.scorecard import load_scorecard
from rosie_pipeline.tokenize.shards import split_of


def _write_lines(path: Path, items: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items), encoding="utf-8")


def held_out_texts(documents: list[Path], val_permille: int, per_source: int) -> list[dict[str, str]]:
    chosen: dict[str, list[dict[str, str]]] = defaultdict(list)
    for path in documents:
        for row in iter_rows(path, columns=["id", "source", "text"]):
            if split_of(row["id"], val_permille) == "val" and len(chosen[row["source"]]) < per_source:
                chosen[row["source"]].append({"source": row["source"], "text": row["text"]})
    return [item for items in chosen.values() for item in items]


def memory_choices(rows: list[dict[str, Any]], choices: int, seed: int = 0) -> list[dict[str, Any]]:
    """Each held-out memory dialogue's last answer among answers of other held-out dialogues (the questions
    come in too many wordings and names for answers to the same question to be the distractors)."""
    answers = sorted({row["turns"][-1]["text"] for row in rows})
    rng = random.Random(seed)
    items = []
    for row in rows:
        truth = row["turns"][-1]["text"]
        others = [a for a in answers if a != truth]
        if not others:
            continue
        options = [truth, *rng.sample(others, min(choices - 1, len(others)))]
        rng.shuffle(options)
        items.append({"messages": as_messages(turns_of(row)[:-1]), "memory": row["memory"], "choices": options,
                      "answer": options.index(truth), "emotion": row["turns"][-1]["emotion"] or "neutral"})
    return items


#: Dialogue sources that are people talking (imported chats), not Rosie's generated data.
HUMAN_SOURCES = ("chitchat", "chitchat_weak", "sillytavern", "characterai", "reddit")


def held_out_conversations(dialogue_tables: list[Path], texts: list[dict[str, str]], limit: int) -> list[dict[str, str]]:
    """Human conversations no model trained on: val-split imported dialogues, then held-out Reddit threads."""
    seen: set[str] = set()
    found = []
    for path in dialogue_tables:
        for row in iter_rows(path, columns=["source", "split", "turns"]):
            if row["split"] != "val" or not row["source"].startswith(HUMAN_SOURCES):
                continue
            text = "\n".join(t["text"] for t in row["turns"] if t["speaker"] in ("user", "rosie"))
            if text not in seen:
                seen.add(text)
                found.append({"source": row["source"], "text": text})
    found += [item for item in texts if item["source"] == "reddit"]
    return found[:limit]


def build_eval_sets(documents: list[Path], memory_path: Path, shard_folders: dict[str, Path], out_dir: Path,
                    val_permille: int, per_source: int = 50, memory_items: int = 200,
                    choices: int = 4, dialogue_tables: list[Path] | None = None,
                    conversations: int = 40) -> dict[str, dict[str, Any]]:
    """Write the evaluation files under ``out_dir`` and one spec per approach (``spec-<approach>.json``).

    Every approach is measured on the same held-out documents (of ``documents``), memory items (the val split
    of the ``memory_path`` dialogues) and dialogues; only the dialogue shards differ, each tokenized for its
    model (``shard_folders``: approach -> dialogue shard folder). Returns the specs by approach.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = held_out_texts(documents, val_permille, per_source)
    _write_lines(out_dir / "texts.jsonl", texts)
    _write_lines(out_dir / "conversations.jsonl", held_out_conversations(dialogue_tables or [], texts, conversations))
    write_json_atomic(out_dir / "scorecard.json", load_scorecard())
    held_out = [r for r in iter_rows(memory_path) if r["split"] == "val"] if memory_path.exists() else []
    _write_lines(out_dir / "memory.jsonl", memory_choices(held_out, choices)[:memory_items])

    def split(shards: Path, phase: str, *names: str) -> str | None:
        return next((str(shards / phase / n) for n in names if (shards / phase / n / "manifest.json").exists()), None)

    specs = {}
    for approach, shards in shard_folders.items():
        specs[approach] = {
            "scorecard": str(out_dir / "scorecard.json"),
            "conversations": str(out_dir / "conversations.jsonl"),
            "texts": str(out_dir / "texts.jsonl"),
            "memory_set": str(out_dir / "memory.jsonl"),
            "dialogue_val": split(shards, "personality", "val"),
            "emotion_set": split(shards, "emotion_memory", "gold", "val"),
        }
        write_json_atomic(out_dir / f"spec-{approach}.json", specs[approach])
    return specs
