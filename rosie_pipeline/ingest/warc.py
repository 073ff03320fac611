"""A streaming WARC record parser that skips broken records instead of giving up on the file.

Records are read from :func:`~rosie_pipeline.ingest.streams.iter_decompressed`, so ``.warc``,
``.warc.gz`` (one member per record, or one member for the whole file) and ``.wet.gz`` all work. A
record with a bad header or a wrong ``Content-Length`` is reported and the parser resynchronises at
the next ``WARC/1.x`` line; at most one record (bounded by ``max_record_bytes``) is in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from rosie_pipeline.ingest.records import Rejected, bad

MAX_HEADER_BYTES = 64 * 1024
RECORD_START = b"WARC/1."
RECORD_END = b"\r\n\r\n"
TRAILER_SLACK = 4


@dataclass(frozen=True)
class WarcRecord:
    offset: int  # offset of the record in the decompressed stream
    headers: dict[str, str]  # header names lower-cased
    block: bytes

    @property
    def type(self) -> str:
        return self.headers.get("warc-type", "").lower()


class _Buffer:
    """A growable window over a chunk iterator, addressed by stream offset."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.data = bytearray()
        self.start = 0  # stream offset of data[0]
        self.exhausted = False

    def fill(self, size: int) -> bool:
        """Try to hold at least ``size`` bytes; False when the stream ends first."""
        while len(self.data) < size and not self.exhausted:
            chunk = next(self._chunks, None)
            if chunk is None:
                self.exhausted = True
            else:
                self.data += chunk
        return len(self.data) >= size

    def find(self, needle: bytes, limit: int, begin: int = 0) -> int:
        """Index of ``needle`` within the first ``limit`` bytes (reading as needed), else -1."""
        searched = begin
        while True:
            found = self.data.find(needle, max(begin, searched - len(needle)), limit)
            if found >= 0 or len(self.data) >= limit or self.exhausted:
                return found
            searched = len(self.data)
            self.fill(min(limit, len(self.data) + 65536))

    def drop(self, size: int) -> None:
        """Discard ``size`` bytes, reading (and dropping) past the buffer when needed."""
        while size > 0:
            if not self.data and not self.fill(1):
                return
            step = min(size, len(self.data))
            del self.data[:step]
            self.start += step
            size -= step

    def at_end(self) -> bool:
        return not self.data and not self.fill(1)


def iter_warc_records(chunks: Iterator[bytes], max_record_bytes: int) -> Iterator[WarcRecord | Rejected]:
    """Yield every well-formed record and a :class:`Rejected` for each broken one."""
    buf = _Buffer(chunks)
    while True:
        _skip_blank(buf)
        if buf.at_end():
            return
        offset = buf.start
        if not buf.fill(len(RECORD_START)) or not buf.data.startswith(RECORD_START):
            yield bad("warc_garbage", offset, "bytes between records are not a WARC record", bytes(buf.data[:200]))
            _resync(buf, skip=1)
            continue
        header_end = buf.find(RECORD_END, MAX_HEADER_BYTES)
        if header_end < 0:
            yield bad("warc_broken_header", offset, "no end of WARC header", bytes(buf.data[:2000]))
            _resync(buf, skip=len(RECORD_START))
            continue
        headers = _parse_headers(bytes(buf.data[:header_end]))
        length = _content_length(headers)
        if length is None:
            yield bad("warc_bad_content_length", offset, f"Content-Length {headers.get('content-length')!r}",
                      bytes(buf.data[:header_end]))
            _resync(buf, skip=len(RECORD_START))
            continue
        block_start = header_end + len(RECORD_END)
        if length > max_record_bytes:  # skipped up to the next record, not by a Content-Length that may lie
            yield bad("warc_oversized_record", offset, f"{length:,} bytes > {max_record_bytes:,}",
                      bytes(buf.data[:header_end]))
            _resync(buf, skip=block_start)
            continue
        block_end = block_start + length
        buf.fill(block_end + TRAILER_SLACK + len(RECORD_START))
        if len(buf.data) < block_end:
            yield bad("warc_truncated_record", offset, "stream ends inside the record", bytes(buf.data[:2000]))
            buf.drop(len(buf.data))
            return
        if not _record_ends_at(buf.data, block_end):
            yield bad("warc_bad_record_length", offset, "no record boundary after Content-Length bytes",
                      bytes(buf.data[:2000]))
            _resync(buf, skip=len(RECORD_START))
            continue
        yield WarcRecord(offset, headers, bytes(buf.data[block_start:block_end]))
        buf.drop(block_end)


def _record_ends_at(data: bytearray, block_end: int) -> bool:
    """True when the block is followed by line breaks and then the next record or the end of stream.

    The standard asks for exactly CRLF CRLF; real archives (pywb's samples among them) are off by a
    line break now and then, which warcio also accepts, so up to ``TRAILER_SLACK`` CR/LF bytes are
    allowed as long as the next record starts right after them.
    """
    rest = bytes(data[block_end : block_end + TRAILER_SLACK + len(RECORD_START)])
    if not rest:
        return True
    after_breaks = rest.lstrip(b"\r\n")
    newlines = len(rest) - len(after_breaks)
    return 0 < newlines <= TRAILER_SLACK and (not after_breaks or after_breaks.startswith(RECORD_START))


def _skip_blank(buf: _Buffer) -> None:
    while buf.fill(1) and buf.data[:1] in (b"\r", b"\n"):
        buf.drop(1)


def _resync(buf: _Buffer, skip: int) -> None:
    """Drop bytes up to the next ``WARC/1.x`` version line (after garbage it need not start a line)."""
    buf.drop(skip)
    while True:
        found = buf.find(RECORD_START, len(buf.data) + 65536)
        if found >= 0:
            buf.drop(found)
            return
        if buf.exhausted:
            buf.drop(len(buf.data))
            return
        buf.drop(max(0, len(buf.data) - len(RECORD_START)))


def _parse_headers(raw: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in raw.decode("utf-8", errors="replace").split("\r\n")[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _content_length(headers: dict[str, str]) -> int | None:
    try:
        length = int(headers["content-length"])
    except (KeyError, ValueError):
        return None
    return length if length >= 0 else None
