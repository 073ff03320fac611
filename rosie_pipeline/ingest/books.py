"""Project Gutenberg plain-text books to documents.

The licence header and footer are stripped, title/author/language come from the header, hard-wrapped
lines are joined back into paragraphs (blank lines separate paragraphs; chapter headings stay as
their own short paragraphs). The file is read line by line; a book longer than ``max_doc_chars`` is
emitted as several documents cut at paragraph boundaries.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rosie_pipeline.documents import make_document
from rosie_pipeline.ingest.records import Rejected, Row, bad, skipped

SOURCE = "books"
_START = re.compile(r"^\s*\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG", re.IGNORECASE)
_END = re.compile(
    r"^\s*(\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG|End of (the )?Project Gutenberg'?s?\b)", re.IGNORECASE
)
_FIELD = re.compile(r"^(Title|Author|Language|Release Date|Character set encoding):\s*(.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class BookOptions:
    max_doc_chars: int = 2_000_000
    #: A longer line is not prose (a binary blob, a mangled file) and is quarantined.
    max_line_chars: int = 1_000_000
    min_text_chars: int = 1
    #: Tried in order when the file is not valid UTF-8 (old Gutenberg files are often Latin-1).
    fallback_encodings: tuple[str, ...] = field(default=("cp1252", "latin-1"))


def is_book_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".txt" and not path.name.startswith(".")


def detect_encoding(path: Path, declared: str | None, fallbacks: tuple[str, ...]) -> str:
    """UTF-8 when the whole file decodes as UTF-8 (checked incrementally), else the header's
    declared charset, else the first fallback."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
        return "utf-8-sig"
    except UnicodeDecodeError:
        pass
    if declared:
        try:
            return codecs.lookup(declared).name
        except LookupError:
            pass
    return fallbacks[0]


def read_header_fields(path: Path, max_lines: int = 400) -> dict[str, str]:
    """Title/Author/Language/... from the lines before the START marker."""
    fields: dict[str, str] = {}
    with open(path, encoding="latin-1") as fh:  # header fields are ASCII in practice; latin-1 never fails
        for number, line in enumerate(fh):
            if number >= max_lines or _START.match(line):
                break
            match = _FIELD.match(line.strip())
            if match and match.group(2):
                fields.setdefault(match.group(1).lower(), match.group(2).strip())
    return fields


class GutenbergReader:
    """Reads one Gutenberg ``.txt`` file, or every ``.txt`` under a directory."""

    def __init__(self, options: BookOptions | None = None) -> None:
        self.options = options or BookOptions()

    def read_directory(self, directory: Path) -> Iterator[Row | Rejected]:
        for path in sorted(p for p in directory.rglob("*.txt") if is_book_file(p)):
            yield from self.read(path)

    def read(self, path: Path) -> Iterator[Row | Rejected]:
        if path.stat().st_size == 0:
            yield skipped("empty_file")
            return
        header = read_header_fields(path)
        encoding = detect_encoding(path, header.get("character set encoding"), self.options.fallback_encodings)
        if encoding != "utf-8-sig":
            header = {key: _redecode(value, encoding) for key, value in header.items()}
        title = header.get("title") or path.stem.replace("_", " ")
        part = 0
        for item in self._parts(path, encoding):
            if isinstance(item, Rejected):
                yield item
                continue
            paragraphs, had_markers = item
            text = "\n\n".join(paragraphs)
            if len(text) < self.options.min_text_chars:
                yield skipped("empty_text")
                continue
            meta = {
                "author": header.get("author"),
                "language": header.get("language"),
                "release_date": header.get("release date"),
                "encoding": encoding,
                "file": path.name,
                "part": part,
                "gutenberg_markers": had_markers,
            }
            yield Row(
                "documents",
                make_document(source=SOURCE, locator=f"{path.name}#{part}", text=text, title=title, meta=meta),
            )
            part += 1

    def _parts(self, path: Path, encoding: str) -> Iterator[tuple[list[str], bool] | Rejected]:
        """Paragraph lists, each at most ``max_doc_chars`` long, from the body between the markers."""
        has_start = _has_start_marker(path, encoding)
        in_body = not has_start
        paragraphs: list[str] = []
        size = 0
        lines: list[str] = []
        with open(path, encoding=encoding, errors="replace", newline=None) as fh:
            for raw in fh:
                if len(raw) > self.options.max_line_chars:
                    yield bad("oversized_line", None, f"{len(raw):,} chars > {self.options.max_line_chars:,}", raw)
                    continue
                if not in_body:
                    in_body = bool(_START.match(raw))
                    continue
                if _END.match(raw):
                    break
                line = raw.strip()
                if line:
                    lines.append(line)
                    continue
                if lines:
                    paragraph = " ".join(lines)
                    lines = []
                    if size + len(paragraph) > self.options.max_doc_chars and paragraphs:
                        yield paragraphs, has_start
                        paragraphs, size = [], 0
                    paragraphs.append(paragraph)
                    size += len(paragraph) + 2
        if lines:
            paragraphs.append(" ".join(lines))
        if paragraphs:
            yield paragraphs, has_start


def _has_start_marker(path: Path, encoding: str) -> bool:
    with open(path, encoding=encoding, errors="replace") as fh:
        return any(_START.match(line) for line in fh)


def _redecode(value: str, encoding: str) -> str:
    try:
        return value.encode("latin-1").decode(encoding)
    except (UnicodeDecodeError, UnicodeEncodeError):
        return value
