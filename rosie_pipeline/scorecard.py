"""Rosie's scorecard prompts (``data/scorecard.yaml``): written for evaluation and kept out of training.

The evaluator talks them through ``Rosie.reply``; the dialogue builders call :func:`is_held_out` to drop any
generated exchange that would ask one of them, and the ``no_leakage`` check counts training dialogues that
still do (it must be zero).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rosie_pipeline.chat_format import Turn
from rosie_pipeline.parquet import iter_rows

CONTRACTIONS = {"what's": "what is", "who's": "who is", "i'm": "i am", "you're": "you are", "it's": "it is",
                "where's": "where is", "how's": "how is", "that's": "that is"}


@cache
def load_scorecard() -> dict[str, Any]:
    text = resources.files("rosie_pipeline").joinpath("data/scorecard.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def normalize(text: str) -> str:
    """Lower case, contractions spelled out, words only: two wordings that differ only in that are one prompt."""
    words = re.findall(r"[\w']+", text.lower())
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


@cache
def held_out_prompts() -> frozenset[str]:
    """Every user message the scorecard (and its tuning card) sends, normalized."""
    full = load_scorecard()
    prompts = []
    for card in (full, full.get("tuning", {})):
        prompts += [*card.get("persona", []), *(k["q"] for k in card.get("knowledge", [])),
                    *(m[key] for m in card.get("memory", []) for key in ("tell", "ask")),
                    *(e["say"] for e in card.get("emotion", []))]
    return frozenset(normalize(p) for p in prompts)


def asks_held_out(message: str) -> bool:
    """Whether a user message is one of the scorecard's prompts, in any wording :func:`normalize` folds."""
    return normalize(message) in held_out_prompts()


def is_held_out(turns: Iterable[Turn]) -> bool:
    """Whether any user turn of a dialogue is one of the scorecard's prompts."""
    return any(t.role == "user" and asks_held_out(t.text) for t in turns)


def leaked_dialogues(dialogue_tables: list[Path]) -> int:
    """How many dialogues of ``dialogue_tables`` ask one of the scorecard's prompts (the check wants none)."""
    return sum(any(t["speaker"] == "user" and asks_held_out(t["text"]) for t in row["turns"])
               for path in dialogue_tables if path.exists() for row in iter_rows(path, columns=["turns"]))
