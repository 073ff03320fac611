"""The curation pipeline: normalise, then run a source's rule set over each document.

Sources need different rules: web pages get everything; books are long and keep their chapter
headings (no C4 line rules, no FineWeb line-shape rules, no length ceiling); Reddit threads and
dialogue are chatty and short (no C4/FineWeb, a lower word minimum). Every drop is counted by reason
and kept in a ``dropped`` table with ``dropped_by`` for audit.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import pyarrow as pa

from rosie_pipeline.curate.filters import (
    C4Quality,
    Doc,
    Filter,
    FineWebQuality,
    GopherQuality,
    GopherRepetition,
    LanguageFilter,
    PIIRedactor,
    SafetyFilter,
    describe,
)
from rosie_pipeline.curate.text import normalize_text
from rosie_pipeline.documents import DOCUMENT_SCHEMA
from rosie_pipeline.ingest.records import Rejected, Row, bad, skipped
from rosie_pipeline.stats import FilterStats

#: Filter names in the order they run (cheap and decisive first, rewriting ones late).
FILTER_ORDER = ("language", "gopher_quality", "gopher_repetition", "c4_quality", "fineweb_quality", "safety", "pii")
DROPPED_SCHEMA = DOCUMENT_SCHEMA.append(pa.field("dropped_by", pa.string()))
#: A document with more replacement characters than this share was decoded with the wrong charset.
MAX_REPLACEMENT_SHARE = 0.01


@dataclass
class RuleSet:
    """The rules of one source: which filters run, the language wanted and the size bounds."""

    filters: tuple[str, ...] = FILTER_ORDER
    languages: tuple[str, ...] = ("en",)
    min_language_score: float = 0.65
    min_chars: int = 1
    max_chars: int = 1_000_000
    gopher_min_words: int | None = 50
    gopher_max_words: int | None = 100_000

    def build(self) -> list[Filter]:
        unknown = set(self.filters) - set(FILTER_ORDER)
        if unknown:
            raise ValueError(f"unknown filters {sorted(unknown)}; choose from {FILTER_ORDER}")
        made: dict[str, Filter] = {
            "language": LanguageFilter(self.languages, self.min_language_score),
            "gopher_repetition": GopherRepetition(),
            "gopher_quality": GopherQuality(min_doc_words=self.gopher_min_words, max_doc_words=self.gopher_max_words),
            "c4_quality": C4Quality(),
            "fineweb_quality": FineWebQuality(),
            "safety": _safety(),
            "pii": PIIRedactor(),
        }
        return [made[name] for name in FILTER_ORDER if name in self.filters]


@lru_cache(maxsize=1)
def _safety() -> SafetyFilter:
    """One shared safety filter (its word list is read from better-profanity once)."""
    return SafetyFilter()


def default_rules() -> dict[str, RuleSet]:
    """Rule sets by document ``source`` (``web``, ``books``, ``reddit``, ``dialogue``)."""
    chat = RuleSet(filters=("language", "gopher_repetition", "gopher_quality", "safety", "pii"), gopher_min_words=20)
    return {
        "web": RuleSet(),
        "books": RuleSet(filters=("language", "gopher_repetition", "gopher_quality", "safety", "pii"),
                         max_chars=5_000_000, gopher_max_words=None),
        "reddit": chat,
        "dialogue": chat,
    }


@dataclass
class Curator:
    """Applies each document's source rules; yields kept rows, dropped rows and their reasons."""

    rules: dict[str, RuleSet] = field(default_factory=default_rules)
    #: Per filter name, what it did in this curator's lifetime (documents judged, dropped, seconds).
    filter_stats: dict[str, FilterStats] = field(default_factory=lambda: defaultdict(FilterStats))

    def __post_init__(self) -> None:
        self._filters = {source: rules.build() for source, rules in self.rules.items()}

    def settings(self) -> dict[str, Any]:
        return {source: {f.name: describe(f) for f in filters} | {"rules": vars(self.rules[source])}
                for source, filters in self._filters.items()}

    def curate(self, rows: Iterable[dict[str, Any]]) -> Iterator[Row | Rejected]:
        for row in rows:
            yield from self._one(row)

    def _one(self, row: dict[str, Any]) -> Iterator[Row | Rejected]:
        source = row["source"]
        rules, filters = self.rules.get(source), self._filters.get(source)
        if rules is None or filters is None:
            yield bad("unknown_source", None, f"no rule set for source {source!r}", row["text"][:2000])
            return
        text = row["text"] or ""
        reason = _size_problem(text, rules)
        doc = Doc(normalize_text(text) if reason is None else text, source, row.get("url"))
        if reason is None and not doc.text:
            reason = "empty_after_normalisation"
        for step in filters if reason is None else ():
            started = time.perf_counter()
            reason = step(doc)
            self.filter_stats[step.name].record(reason is not None, time.perf_counter() - started)
            if reason is not None:
                break
        out = {**row, "text": doc.text, "lang": doc.lang or row.get("lang"),
               "lang_score": doc.lang_score if doc.lang_score is not None else row.get("lang_score")}
        if doc.redactions:
            out["meta"] = json.dumps({**json.loads(row.get("meta") or "{}"),
                                      "redactions": dict(doc.redactions)}, sort_keys=True)
        if reason is None:
            yield Row("documents", out)
        else:
            yield Row("dropped", {**out, "dropped_by": reason}, consumed=0)
            yield skipped(reason)


def _size_problem(text: str, rules: RuleSet) -> str | None:
    if len(text) < rules.min_chars:
        return "empty"
    if len(text) > rules.max_chars:
        return "too_long"
    if text.count("\ufffd") > MAX_REPLACEMENT_SHARE * len(text):
        return "undecodable"
    return None
