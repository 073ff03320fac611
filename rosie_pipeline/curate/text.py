"""Text helpers shared by the filters: normalisation and a fast English word splitter.

The quality rules (Gopher, C4, FineWeb) count words, so their decisions depend on how text is split.
The published implementations use spaCy's English tokenizer, which costs most of their run time;
``split_words`` reproduces its splitting of the cases that matter for those counts (contractions,
punctuation, URLs, e-mails, abbreviations, numbers) with one regular expression.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff]")
_SPACES = re.compile(r"[^\S\n]+")
_TRAILING = re.compile(r" *\n *")
_BLANK_RUNS = re.compile(r"\n{3,}")

_WORDS = re.compile(
    r"""
      (?:https?://|www\.)[^\s<>"]*[^\s<>".,;:!?)\]'] # URLs stay whole
    | [\w.+-]+@[\w-]+(?:\.[\w-]+)+                   # e-mail addresses
    | (?:[^\W\d_]\.){2,}                             # U.S. e.g. A.B.
    | (?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Prof|Inc|Ltd|Co|vs|etc|No|Vol|Fig|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\.
    | \d+(?:[.,:/]\d+)+                              # 3.5  1,000  12:30  1/2
    | \w+(?=n't\b) | n't\b                           # do|n't  ca|n't
    | '(?:s|re|ll|ve|d|m|S|RE|LL|VE|D|M)\b           # it|'s  we|'ll
    | \w+
    | \.{2,} | -{2,}                                 # ... and --
    | \S
    """,
    re.VERBOSE,
)


def normalize_text(text: str) -> str:
    """NFC, no control characters, one space between words, at most one blank line between paragraphs."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    text = _SPACES.sub(" ", text)
    text = _TRAILING.sub("\n", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


def split_words(text: str) -> list[str]:
    """Words and punctuation tokens. No token spans white space, so the text is cut on white space
    first and only chunks that are not plain alphabetic words go through the regular expression."""
    words: list[str] = []
    for chunk in text.split():
        if chunk.isalpha():
            words.append(chunk)
        else:
            words += _WORDS.findall(chunk)
    return words


_HAS_ALPHA = re.compile(r"[^\W\d_]")


def has_alpha(word: str) -> bool:
    """True when the word has at least one letter (the Gopher "alphabetic word" test)."""
    return _HAS_ALPHA.search(word) is not None


@lru_cache(maxsize=65536)
def is_symbol_word(word: str) -> bool:
    """True when every character is punctuation, a symbol or a control character (``--``, ``#``, ``…``)."""
    return all(unicodedata.category(ch)[0] in "PSCZ" for ch in word)


def _terminal_punctuation() -> frozenset[str]:
    names = ("FULL STOP", "QUESTION MARK", "EXCLAMATION MARK", "INTERROBANG", "DANDA", "SENTENCE")
    found = set()
    for code in range(0x10000):
        ch = chr(code)
        if unicodedata.category(ch).startswith("P"):
            name = unicodedata.name(ch, "")
            if any(part in name for part in names) and "ABBREVIATION" not in name:
                found.add(ch)
    return frozenset(found)


#: Characters that end a sentence in any script (., !, ?, 。, ؟, ।, …).
TERMINAL_PUNCTUATION = _terminal_punctuation()
