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


#: Byte-order marks, longest first (UTF-32-LE's starts with UTF-16-LE's).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
#: Share of NUL bytes in the head above which a file without a BOM is UTF-16/32 or not text at all.
_NUL_HEAVY = 0.2
#: Share of control bytes (not tab, line breaks or form feed) above which a byte-oriented file is binary.
_CONTROL_HEAVY = 0.05
_CONTROL = bytes(c for c in range(32) if c not in (9, 10, 12, 13)) + b"\x7f"


class NotText(ValueError):
    """A ``.txt`` file that is binary (NUL bytes in no UTF-16/32 pattern)."""


def wide_encoding(head: bytes) -> str | None:
    """UTF-16/32 from a byte-order mark or, without one, from where the NUL bytes of ASCII text fall
    (every other byte: UTF-16; three of four: UTF-32). None for byte-oriented text; NotText for binary."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return None if name == "utf-8-sig" else name
    if not head or head.count(0) < _NUL_HEAVY * len(head):
        if len(head) - len(head.translate(None, _CONTROL)) > _CONTROL_HEAVY * len(head):
            raise NotText(f"{len(head) - len(head.translate(None, _CONTROL)):,} control bytes in the first "
                          f"{len(head):,}: not text")
        return None
    even, odd = head[0::2].count(0), head[1::2].count(0)
    quads = [head[k::4].count(0) for k in range(4)]
    quarter = len(head) / 4
    if sum(q > 0.9 * quarter for q in quads) == 3:
        return "utf-32-le" if quads[0] < 0.9 * quarter else "utf-32-be"
    if odd > 0.9 * len(head) / 2 > even:
        return "utf-16-le"
    if even > 0.9 * len(head) / 2 > odd:
        return "utf-16-be"
    raise NotText(f"{head.count(0):,} NUL bytes in the first {len(head):,} in no UTF-16/32 pattern: not text")


def detect_encoding(path: Path, declared: str | None, fallbacks: tuple[str, ...]) -> str:
    """For a byte-oriented file (:func:`wide_encoding` found none): UTF-8 when the whole file decodes as
    UTF-8 (checked incrementally), else the header's declared charset, else the first fallback."""
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


def read_header_fields(path: Path, max_lines: int = 400, encoding: str = "latin-1") -> dict[str, str]:
    """Title/Author/Language/... from the lines before the START marker."""
    fields: dict[str, str] = {}
    # header fields are ASCII in practice; latin-1 never fails (UTF-16/32 files are read as what they are)
    with open(path, encoding=encoding, errors="replace") as fh:
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
        try:
            with open(path, "rb") as fh:
                wide = wide_encoding(fh.read(1 << 16))
        except NotText as exc:
            yield bad("not_text", None, str(exc))
            return
        header = read_header_fields(path, encoding=wide or "latin-1")
        encoding = wide or detect_encoding(path, header.get("character set encoding"), self.options.fallback_encodings)
        if encoding not in ("utf-8-sig", wide):
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
                line = raw.replace("\x00", "").strip()
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
