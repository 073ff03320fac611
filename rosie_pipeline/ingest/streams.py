"""Byte streams that survive damaged files.

``gzip`` and ``zstd`` files are read member by member (frame by frame): a corrupt member is reported
and the stream resynchronises at the next member's magic bytes, so one bad record in a multi-member
``.warc.gz`` or a broken frame in a Pushshift dump costs that member, not the rest of the file. A
truncated file yields everything up to the damage and reports it. The codec is detected from the
magic bytes, not the file name.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import zstandard

READ_SIZE = 1 << 16
#: Pushshift dumps are compressed with ``--long=31``; the default decoder refuses such windows.
ZSTD_MAX_WINDOW = 2**31

#: Called as ``on_error(reason, raw_offset, detail, lost_bytes)`` for each damaged region; ``lost_bytes`` is
#: how much of the file was skipped to get past it (0 for a truncated end: what is missing is not there).
ErrorCallback = Callable[[str, int, str, int], None]


class _Decompressor(Protocol):
    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class Codec:
    name: str
    magic: bytes
    new: Callable[[], _Decompressor]
    errors: tuple[type[Exception], ...]


GZIP = Codec("gzip", b"\x1f\x8b\x08", lambda: zlib.decompressobj(31), (zlib.error,))
ZSTD = Codec(
    "zstd",
    b"\x28\xb5\x2f\xfd",
    lambda: zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompressobj(),
    (zstandard.ZstdError,),
)


def detect_codec(head: bytes) -> Codec | None:
    for codec in (GZIP, ZSTD):
        if head.startswith(codec.magic):
            return codec
    return None


def iter_decompressed(path: Path, on_error: ErrorCallback, read_size: int = READ_SIZE) -> Iterator[bytes]:
    """Yield the decompressed content of ``path`` in chunks (plain files pass through)."""
    with open(path, "rb") as fh:
        codec = detect_codec(fh.read(4))
        fh.seek(0)
        if codec is None:
            yield from iter(lambda: fh.read(read_size), b"")
        else:
            yield from _iter_members(fh, codec, on_error, read_size)


def _iter_members(fh: BinaryIO, codec: Codec, on_error: ErrorCallback, read_size: int) -> Iterator[bytes]:
    decompressor = codec.new()
    in_member = False
    pending = b""
    offset = 0  # file offset of pending[0]
    while True:
        if not pending:
            pending = fh.read(read_size)
            if not pending:
                break
        if not in_member and not pending.startswith(codec.magic[: len(pending)]):
            damaged = offset
            pending, offset = _resync(fh, pending, offset, codec.magic, read_size)
            on_error(f"corrupt_{codec.name}", damaged, "bytes between members are not a new member", offset - damaged)
            continue
        in_member = True
        try:
            out = decompressor.decompress(pending)
        except codec.errors as exc:
            damaged = offset  # what was decoded before this read is kept; the rest of it on is skipped
            pending, offset = _resync(fh, pending[1:], offset + 1, codec.magic, read_size)
            on_error(f"corrupt_{codec.name}", damaged, str(exc), offset - damaged)
            decompressor, in_member = codec.new(), False
            continue
        if out:
            yield out
        if decompressor.eof:
            rest = decompressor.unused_data
            offset += len(pending) - len(rest)
            pending = rest
            decompressor, in_member = codec.new(), False
        else:
            offset += len(pending)
            pending = b""
    if in_member:
        on_error(f"truncated_{codec.name}", offset, "file ends inside a compressed member", 0)


def _resync(fh: BinaryIO, data: bytes, offset: int, magic: bytes, read_size: int) -> tuple[bytes, int]:
    """Skip forward to the next occurrence of ``magic``; returns (data from there, its file offset)."""
    while True:
        found = data.find(magic)
        if found >= 0:
            return data[found:], offset + found
        keep = len(magic) - 1
        offset += max(0, len(data) - keep)
        data = data[-keep:] if len(data) > keep else data
        more = fh.read(read_size)
        if not more:
            return b"", offset + len(data)
        data += more


@dataclass(frozen=True)
class Line:
    data: bytes
    offset: int  # offset in the decompressed stream


def iter_lines(
    chunks: Iterator[bytes],
    max_line_bytes: int,
    on_oversized: Callable[[int, bytes], None],
) -> Iterator[Line]:
    """Split a chunk stream on ``\\n``; a line longer than ``max_line_bytes`` is reported, not kept.

    An oversized line is never buffered whole: once it passes the limit its bytes are dropped until the
    next newline, so a 10 MB line costs at most ``max_line_bytes`` of memory.
    """
    carry = bytearray()
    carry_offset = 0
    dropping = False  # inside an oversized line
    head = b""  # first bytes of the oversized line, for the quarantine sample
    stream_offset = 0
    for chunk in chunks:
        start = 0
        while True:
            newline = chunk.find(b"\n", start)
            end = newline if newline >= 0 else len(chunk)
            if dropping:
                pass
            elif len(carry) + end - start > max_line_bytes:
                head = bytes(carry[:2_000]) or chunk[start : start + 2_000]
                dropping = True
                carry.clear()
            else:
                carry += chunk[start:end]
            if newline < 0:
                break
            if dropping:
                on_oversized(carry_offset, head)
                dropping = False
            else:
                yield Line(bytes(carry), carry_offset)
            carry.clear()
            start = newline + 1
            carry_offset = stream_offset + start
        stream_offset += len(chunk)
    if dropping:
        on_oversized(carry_offset, head)
    elif carry:
        yield Line(bytes(carry), carry_offset)
