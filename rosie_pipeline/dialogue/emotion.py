"""Emotion labels: the published datasets' label sets mapped onto Rosie's, their readers, and a weak
labeller for unlabelled turns.

Mapping (documented here, the one place): GoEmotions' 27 emotions + neutral, DailyDialog's 7 and
EmpatheticDialogues' 32 onto Rosie's ten (``chat_format.EMOTIONS``). EmpatheticDialogues labels the
*speaker's* situation; Rosie plays the listener, so its labels map to how she reacts (a friend's fear
makes her worried and comforting — ``love`` — not ``scared``).
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rosie_pipeline.chat_format import EMOTIONS, Turn
from rosie_pipeline.ingest.records import Rejected, bad

GOEMOTIONS_LABELS = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity", "desire",
    "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear", "gratitude", "grief", "joy",
    "love", "nervousness", "optimism", "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
)
GOEMOTIONS_TO_ROSIE = {
    "admiration": "love", "amusement": "happy", "anger": "angry", "annoyance": "angry", "approval": "happy",
    "caring": "love", "confusion": "curious", "curiosity": "curious", "desire": "excited",
    "disappointment": "sad", "disapproval": "angry", "disgust": "angry", "embarrassment": "shy",
    "excitement": "excited", "fear": "scared", "gratitude": "love", "grief": "sad", "joy": "happy", "love": "love",
    "nervousness": "scared", "optimism": "happy", "pride": "happy", "realization": "surprised", "relief": "happy",
    "remorse": "sad", "sadness": "sad", "surprise": "surprised", "neutral": "neutral",
}
DAILYDIALOG_TO_ROSIE = {0: "neutral", 1: "angry", 2: "angry", 3: "scared", 4: "happy", 5: "sad", 6: "surprised"}
EMPATHETIC_TO_ROSIE = {
    "afraid": "love", "angry": "sad", "annoyed": "neutral", "anticipating": "excited", "anxious": "love",
    "apprehensive": "love", "ashamed": "love", "caring": "love", "confident": "happy", "content": "happy",
    "devastated": "sad", "disappointed": "sad", "disgusted": "surprised", "embarrassed": "shy", "excited": "excited",
    "faithful": "love", "furious": "surprised", "grateful": "happy", "guilty": "love", "hopeful": "happy",
    "impressed": "surprised", "jealous": "curious", "joyful": "happy", "lonely": "love", "nostalgic": "curious",
    "prepared": "happy", "proud": "excited", "sad": "sad", "sentimental": "love", "surprised": "surprised",
    "terrified": "scared", "trusting": "love",
}
assert set(GOEMOTIONS_TO_ROSIE.values()) | set(DAILYDIALOG_TO_ROSIE.values()) | set(EMPATHETIC_TO_ROSIE.values()) <= set(EMOTIONS)


@dataclass(frozen=True)
class LabelledDialogue:
    source: str
    locator: str
    turns: list[Turn]


# -- readers: each yields dialogues whose Rosie turns carry Rosie's label, or Rejected -------------------
def read_goemotions(path: Path) -> Iterator[LabelledDialogue | Rejected]:
    """GoEmotions TSV: ``text<TAB>label ids (comma-separated)<TAB>comment id``; one Rosie turn each."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        for number, line in enumerate(fh, start=1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2 or not parts[0].strip():
                yield bad("goemotions_bad_line", number, "expected text<TAB>labels[<TAB>id]", line)
                continue
            try:
                labels = [GOEMOTIONS_LABELS[int(i)] for i in parts[1].split(",")]
            except (ValueError, IndexError):
                yield bad("unknown_label", number, f"GoEmotions labels {parts[1]!r}", line)
                continue
            mapped = [GOEMOTIONS_TO_ROSIE[label] for label in labels]
            emotion = next((m for m in mapped if m != "neutral"), "neutral")
            locator = parts[2] if len(parts) > 2 and parts[2] else f"{path.name}:{number}"
            yield LabelledDialogue("goemotions", locator, [Turn("rosie", parts[0].strip(), emotion)])


def read_dailydialog(text_path: Path, emotion_path: Path) -> Iterator[LabelledDialogue | Rejected]:
    """DailyDialog: utterances separated by ``__eou__`` per line, emotion ids per line in a parallel file.
    Speakers alternate; the second speaker plays Rosie."""
    with open(text_path, encoding="utf-8", errors="replace") as texts, open(emotion_path, encoding="utf-8") as labels:
        for number, (line, label_line) in enumerate(zip(texts, labels), start=1):
            utterances = [u.strip() for u in line.split("__eou__") if u.strip()]
            try:
                ids = [int(x) for x in label_line.split()]
                emotions = [DAILYDIALOG_TO_ROSIE[i] for i in ids]
            except (ValueError, KeyError):
                yield bad("unknown_label", number, f"DailyDialog emotions {label_line.strip()!r}", label_line)
                continue
            if len(ids) != len(utterances) or len(utterances) < 2:
                yield bad("dailydialog_mismatch", number, f"{len(utterances)} utterances, {len(ids)} labels", line)
                continue
            turns = [Turn("rosie", u, e) if i % 2 else Turn("user", u) for i, (u, e) in enumerate(zip(utterances, emotions))]
            yield LabelledDialogue("dailydialog", f"{text_path.name}:{number}", turns)


def read_empathetic(path: Path) -> Iterator[LabelledDialogue | Rejected]:
    """EmpatheticDialogues CSV (conv_id, utterance_idx, context, prompt, speaker_idx, utterance, …), with
    ``_comma_`` for commas. The speaker who shares the situation is the user; the listener plays Rosie."""
    conversations: dict[str, list[dict[str, str]]] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or "conv_id" not in header or "utterance" not in header:
            yield bad("empathetic_bad_header", 0, f"header {header!r}", str(header))
            return
        index = {name: i for i, name in enumerate(header)}
        for number, row in enumerate(reader, start=2):
            if len(row) < len(index) - 2:  # trailing optional columns may be missing
                yield bad("empathetic_bad_row", number, f"{len(row)} fields", ",".join(row))
                continue
            conversations.setdefault(row[index["conv_id"]], []).append(
                {"context": row[index["context"]], "idx": row[index["utterance_idx"]],
                 "utterance": row[index["utterance"]].replace("_comma_", ",")})
    for conv_id, rows in conversations.items():
        situation = rows[0]["context"]
        if situation not in EMPATHETIC_TO_ROSIE:
            yield bad("unknown_label", None, f"EmpatheticDialogues context {situation!r}", conv_id)
            continue
        rows.sort(key=lambda r: int(r["idx"]) if r["idx"].isdigit() else 0)
        turns = [Turn("rosie", r["utterance"], EMPATHETIC_TO_ROSIE[situation]) if i % 2 else Turn("user", r["utterance"])
                 for i, r in enumerate(rows)]
        yield LabelledDialogue("empatheticdialogues", conv_id, turns)


# -- the weak labeller -----------------------------------------------------------------------------------
#: Cue words and emoji per emotion, written for Rosie's label set.
LEXICON: dict[str, tuple[str, ...]] = {
    "happy": ("happy", "glad", "great", "nice", "good", "fun", "yay", "awesome", "lol", "haha", "hehe", "😀", "😊", "🙂",
              "cool", "enjoy", "enjoyed", "fantastic", "wonderful", "pleased"),
    "excited": ("excited", "amazing", "wow", "can't wait", "cant wait", "woohoo", "incredible", "!!", "🎉", "thrilled",
                "omg", "stoked", "pumped"),
    "love": ("love", "adore", "sweet", "thank", "thanks", "grateful", "hug", "💕", "❤", "dear", "care", "miss you",
             "kind", "appreciate"),
    "surprised": ("surprised", "really?", "no way", "what?!", "unexpected", "didn't expect", "whoa", "😮", "shocked",
                  "suddenly"),
    "curious": ("why", "how", "what", "wonder", "curious", "?", "tell me", "interesting", "🤔", "maybe"),
    "shy": ("shy", "blush", "embarrass", "awkward", "um", "umm", "oops", "😳", "nervous laugh"),
    "sad": ("sad", "sorry", "miss", "lonely", "cry", "crying", "unfortunately", "bad day", "😢", "😞", "depressed",
            "lost", "upset", "hurts"),
    "angry": ("angry", "mad", "hate", "annoying", "annoyed", "furious", "stupid", "ugh", "😠", "unfair", "terrible"),
    "scared": ("scared", "afraid", "fear", "terrified", "nervous", "anxious", "worried", "scary", "😱", "panic"),
}
_CUES = [(emotion, cue, re.compile(rf"(?<!\w){re.escape(cue)}(?!\w)" if cue.isalnum() else re.escape(cue)))
         for emotion, cues in LEXICON.items() for cue in cues]


@dataclass(frozen=True)
class WeakLabel:
    emotion: str | None  # None: abstained
    confidence: float


def weak_label(text: str, min_confidence: float = 0.6, min_hits: int = 1) -> WeakLabel:
    """The emotion whose cues dominate ``text``. Confidence is that emotion's share of all cue hits;
    below ``min_confidence`` (or with no cue at all) the labeller abstains."""
    lower = text.lower()
    hits: Counter[str] = Counter()
    for emotion, _cue, pattern in _CUES:
        hits[emotion] += len(pattern.findall(lower))
    total = sum(hits.values())
    if total < min_hits:
        return WeakLabel(None, 0.0)
    emotion, count = hits.most_common(1)[0]
    confidence = count / total
    return WeakLabel(emotion if confidence >= min_confidence else None, confidence)
