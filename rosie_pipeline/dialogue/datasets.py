"""The three dialogue datasets, assembled from the seed, the packages, the lake and ``landing/dialogue``.

What lands in ``landing/dialogue`` is recognised by its form: ``*.jsonl`` SillyTavern/TavernAI chat logs,
``*.png``/``*.json`` character cards, ``*.json`` CharacterAI dumps, ``*.tsv`` GoEmotions,
``dialogues_text.txt`` + ``dialogues_emotion.txt`` DailyDialog, ``*.csv`` EmpatheticDialogues. Anything
else is skipped and counted.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosie_pipeline.chat_format import Turn
from rosie_pipeline.dialogue.emotion import LabelledDialogue, read_dailydialog, read_empathetic, read_goemotions, weak_label
from rosie_pipeline.dialogue.importers import (
    Imported,
    PersonaRegistry,
    chitchat_conversations,
    read_landing_file,
    reddit_chains,
)
from rosie_pipeline.dialogue.memory import background_memories, memory_dialogues, said_lines
from rosie_pipeline.dialogue.personality import load_seed, personality_dialogues
from rosie_pipeline.dialogue.schema import content_hash, make_dialogue, split_for, turns_of
from rosie_pipeline.ingest.records import Rejected, Row, skipped
from rosie_pipeline.paths import RosieHome

PERSONALITY_FORMS = (".jsonl", ".png", ".json")
EMOTION_FORMS = (".tsv", ".csv", ".txt")


def landing_files(home: RosieHome) -> list[Path]:
    folder = home.landing_dir("dialogue")
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []


@dataclass(frozen=True)
class PersonalityOptions:
    target: int = 10_000
    val_permille: int = 50
    seed: int = 0
    chitchat_limit: int = 2_000
    use_reddit: bool = True
    personas: int = 8
    #: Share (per mille) of dialogues that carry a memory block none of their turns asks about.
    background_memory_permille: int = 300


def past_turns(limit: int = 300) -> list[str]:
    """Short things users said in real conversations: the past turns a returning user's recall brings."""
    return said_lines([turn for item in chitchat_conversations(limit) for turn in item.turns])


def with_background_memory(row: dict[str, Any], said: list[str], permille: int) -> dict[str, Any]:
    """``row`` with a memory block of unrelated facts and past turns, for a ``permille`` share of rows (by id,
    so a rebuild draws the same): at serving time recall fills the block on every turn of a returning user,
    and a model that only ever saw memory when asked about it answers every message with a memory."""
    rng = random.Random(row["id"])
    if row["memory"] or row["split"] == "gold" or rng.randrange(1000) >= permille:
        return row
    return {**row, "memory": background_memories(rng, said)}


def background_rows(permille: int) -> Callable[[dict[str, Any]], Row]:
    """Dialogue → output row, with a background memory block for ``permille`` of them."""
    said = past_turns()
    return lambda dialogue: Row("dialogues", with_background_memory(dialogue, said, permille))


def _imported_dialogue(item: Imported, val_permille: int, system: str) -> dict[str, Any]:
    turns = [Turn("system", system), *item.turns] if item.persona == 0 else item.turns
    return make_dialogue(item.source, item.locator, turns, persona=item.persona,
                         split=split_for(item.turns, val_permille))


def build_personality(home: RosieHome, options: PersonalityOptions, registry: PersonaRegistry,
                      reddit_candidates: list[Path]) -> Iterator[Row | Rejected]:
    """The seed personality expanded, chitchat conversations, Reddit chains (``reddit_candidates``, when
    ``use_reddit``) and the chats and cards landed in ``landing/dialogue``, each with Rosie's system prompt."""
    system, seed = load_seed()
    row = background_rows(options.background_memory_permille)
    for dialogue in personality_dialogues(system, seed, options.target, options.val_permille, options.seed):
        yield row(dialogue)
    for item in chitchat_conversations(options.chitchat_limit):
        yield row(_imported_dialogue(item, options.val_permille, system))
    if options.use_reddit:
        for item in reddit_chains(reddit_candidates):
            yield row(_imported_dialogue(item, options.val_permille, system))
    for path in landing_files(home):
        if path.suffix.lower() not in PERSONALITY_FORMS:
            continue
        for result in read_landing_file(path, registry):
            if isinstance(result, Imported):
                yield row(_imported_dialogue(result, options.val_permille, system))
            else:
                yield result


@dataclass(frozen=True)
class EmotionOptions:
    val_permille: int = 50
    gold_permille: int = 100
    weak_min_confidence: float = 0.6
    chitchat_limit: int = 3_000
    #: Share (per mille) of train/val dialogues that carry a memory block none of their turns asks about.
    background_memory_permille: int = 300


def _gold_or_split(turns: list[Turn], options: EmotionOptions) -> str:
    """Gold (kept apart for evaluation), else train/val — all by content hash."""
    bucket = int(hashlib.sha1(("gold:" + content_hash(turns)).encode()).hexdigest()[:8], 16) % 1000
    return "gold" if bucket < options.gold_permille else split_for(turns, options.val_permille)


def build_emotion(home: RosieHome, options: EmotionOptions) -> Iterator[Row | Rejected]:
    """Human-labelled dialogues (with a gold split) and weakly labelled chitchat (never gold)."""
    row = background_rows(options.background_memory_permille)
    files = landing_files(home)
    labelled: list[Iterator[LabelledDialogue | Rejected]] = []
    for path in files:
        if path.suffix.lower() == ".tsv":
            labelled.append(read_goemotions(path))
        elif path.suffix.lower() == ".csv":
            labelled.append(read_empathetic(path))
        elif path.name.endswith("dialogues_text.txt"):
            partner = path.with_name(path.name.replace("dialogues_text.txt", "dialogues_emotion.txt"))
            if partner.exists():
                labelled.append(read_dailydialog(path, partner))
            else:
                yield skipped("dailydialog_without_emotion_file")
    for reader in labelled:
        for item in reader:
            if isinstance(item, Rejected):
                yield item
            else:
                yield row(make_dialogue(item.source, item.locator, item.turns, split=_gold_or_split(item.turns, options)))
    for item in chitchat_conversations(options.chitchat_limit):
        labelled_turns = []
        for turn in item.turns:
            if turn.role == "rosie":
                label = weak_label(turn.text, options.weak_min_confidence)
                turn = Turn("rosie", turn.text, label.emotion) if label.emotion else Turn("user", turn.text)
            labelled_turns.append(turn)
        if any(t.role == "rosie" for t in labelled_turns):
            yield row(make_dialogue("chitchat_weak", item.locator, labelled_turns,
                                    split=split_for(labelled_turns, options.val_permille)))
        else:
            yield skipped("weak_labeller_abstained")


@dataclass(frozen=True)
class MemoryOptions:
    count: int = 3_000
    val_permille: int = 100
    seed: int = 0
    max_facts: int = 3
    distractor_conversations: int = 1_000


def build_memory(options: MemoryOptions) -> Iterator[Row]:
    system, _ = load_seed()
    distractors = list(chitchat_conversations(options.distractor_conversations))
    for row in memory_dialogues(system, distractors, options.count, options.val_permille, options.seed,
                                options.max_facts):
        yield Row("dialogues", row)


# -- checks -----------------------------------------------------------------------------------------------
def dialogue_report(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts that the asset checks read: splits, emotions, empty turns, content shared across splits."""
    splits: Counter[str] = Counter()
    emotions: Counter[str] = Counter()
    empty = 0
    seen: dict[str, set[str]] = {}
    for row in rows:
        splits[row["split"]] += 1
        turns = turns_of(row)
        empty += sum(1 for t in turns if not t.text.strip())
        emotions.update(t.emotion or "neutral" for t in turns if t.role == "rosie")
        seen.setdefault(content_hash(turns), set()).add(row["split"])
    leaked = sum(1 for found in seen.values() if len(found) > 1)
    return {"dialogues": len(rows), "splits": dict(splits), "emotions": dict(emotions), "empty_turns": empty,
            "leaked_dialogues": leaked}


def leaked_dialogues(files: list[Path]) -> int:
    """Dialogues whose content is in the training split of one dataset and in val/gold of any."""
    from rosie_pipeline.parquet import iter_rows

    splits: dict[str, set[str]] = {}
    for path in files:
        for row in iter_rows(path, columns=["turns", "split"]):
            splits.setdefault(content_hash(turns_of(row)), set()).add(row["split"])
    return sum(1 for found in splits.values() if "train" in found and len(found) > 1)
