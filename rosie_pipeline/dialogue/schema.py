"""The dialogues contract (DESIGN.md): id, source, persona, turns, memory, split."""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa

from rosie_pipeline.chat_format import Turn
from rosie_pipeline.documents import document_id

TURN_TYPE = pa.struct([("speaker", pa.string()), ("text", pa.string()), ("emotion", pa.string()),
                       ("event", pa.string())])
DIALOGUE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("persona", pa.int16(), nullable=False),
        pa.field("turns", pa.list_(TURN_TYPE), nullable=False),
        pa.field("memory", pa.list_(pa.string())),
        pa.field("split", pa.string(), nullable=False),
    ]
)
ROSIE_PERSONA = 0


def content_hash(turns: list[Turn]) -> str:
    """What a dialogue says, independent of its source: used for splits and leakage checks."""
    text = "\n".join(f"{t.role}:{t.text.strip().lower()}" for t in turns if t.role != "system")
    return hashlib.sha1(text.encode()).hexdigest()


def split_for(turns: list[Turn], val_permille: int) -> str:
    """Train or val, decided by the dialogue's content, so the same dialogue never lands in both."""
    return "val" if int(content_hash(turns)[:8], 16) % 1000 < val_permille else "train"


def make_dialogue(source: str, locator: str, turns: list[Turn], *, persona: int = ROSIE_PERSONA,
                  memory: list[str] | None = None, split: str) -> dict[str, Any]:
    return {
        "id": document_id(source, locator),
        "source": source,
        "persona": persona,
        "turns": [{"speaker": t.role, "text": "" if t.role == "event" else t.text, "emotion": t.emotion,
                   "event": t.text if t.role == "event" else None} for t in turns],
        "memory": list(memory or []),
        "split": split,
    }


def turns_of(row: dict[str, Any]) -> list[Turn]:
    return [Turn(t["speaker"], t["event"] if t["speaker"] == "event" else t["text"], t.get("emotion"))
            for t in row["turns"]]
