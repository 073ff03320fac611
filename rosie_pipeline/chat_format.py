"""Rosie's chat vocabulary: special tokens, the emotions her avatar can show, desktop events.

Defined once here; the tokenizer reserves these tokens and writes the lists into
``tokenizer_config.json``, which is how rosie_model learns them (as data, not shared code).
"""

from __future__ import annotations

EOS = "<|endoftext|>"
PAD = "<|pad|>"
SYSTEM = "<|system|>"
USER = "<|user|>"
ROSIE = "<|rosie|>"
MEMORY = "<|memory|>"

#: States Rosie's avatar can show; every Rosie turn starts with one.
EMOTIONS = ("neutral", "happy", "excited", "love", "surprised", "curious", "shy", "sad", "angry", "scared")
#: Desktop interactions that reach Rosie as events.
EVENTS = ("drag", "drop", "poke", "pet", "tickle", "idle", "wake", "sleep")


def emotion_token(name: str) -> str:
    if name not in EMOTIONS:
        raise ValueError(f"unknown emotion {name!r}; expected one of {EMOTIONS}")
    return f"<|emotion:{name}|>"


def event_token(name: str) -> str:
    if name not in EVENTS:
        raise ValueError(f"unknown event {name!r}; expected one of {EVENTS}")
    return f"<|event:{name}|>"


SPECIAL_TOKENS: tuple[str, ...] = (
    EOS, PAD, SYSTEM, USER, ROSIE, MEMORY,
    *(event_token(e) for e in EVENTS),
    *(emotion_token(e) for e in EMOTIONS),
)
