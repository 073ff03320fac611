import gzip

import pytest
import zstandard

from rosie_pipeline.ingest.streams import iter_decompressed, iter_lines
from tests.fixtures import zstd_ndjson


def _read(path):
    errors = []
    data = b"".join(iter_decompressed(path, lambda reason, offset, detail, lost: errors.append(reason)))
    return data, errors


def test_corrupt_gzip_member_costs_only_that_member(tmp_path):
    members = [gzip.compress(f"member {i}\n".encode() * 500) for i in range(5)]
    broken = bytearray(members[2])
    broken[25:60] = b"\x00" * 35
    path = tmp_path / "multi.gz"
    path.write_bytes(b"".join(members[:2]) + bytes(broken) + b"".join(members[3:]))
    data, errors = _read(path)
    assert errors == ["corrupt_gzip"]
    kept = {line.split()[1] for line in data.splitlines()}
    assert {b"0", b"1", b"3", b"4"} <= kept


def test_truncated_gzip_keeps_what_came_before(tmp_path):
    members = [gzip.compress(f"member {i}\n".encode() * 500) for i in range(3)]
    path = tmp_path / "cut.gz"
    path.write_bytes(b"".join(members)[:-40])
    data, errors = _read(path)
    assert errors == ["truncated_gzip"]
    assert data.startswith(b"member 0\n" * 500 + b"member 1\n" * 500)


def test_corrupt_zstd_frame_resyncs_at_next_frame(tmp_path):
    compressor = zstandard.ZstdCompressor()
    frames = [compressor.compress(f"frame {i}\n".encode() * 500) for i in range(4)]
    broken = bytearray(frames[1])
    broken[15:40] = b"\xff" * 25
    path = tmp_path / "dump.zst"
    path.write_bytes(frames[0] + bytes(broken) + frames[2] + frames[3])
    data, errors = _read(path)
    assert errors == ["corrupt_zstd"]
    assert {line.split()[1] for line in data.splitlines()} == {b"0", b"2", b"3"}


def test_zstd_long_window_is_accepted(tmp_path):
    path = tmp_path / "long.zst"
    path.write_bytes(zstd_ndjson([{"id": str(i)} for i in range(100)], window_log=30))
    with pytest.raises(zstandard.ZstdError):  # what a default decoder does with Pushshift's --long=31 dumps
        zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes())
    data, errors = _read(path)
    assert errors == [] and data.count(b"\n") == 100


def test_plain_file_passes_through(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_bytes(b"hello\nworld\n")
    assert _read(path) == (b"hello\nworld\n", [])


def test_empty_file_yields_nothing(tmp_path):
    path = tmp_path / "empty.gz"
    path.write_bytes(b"")
    assert _read(path) == (b"", [])


def test_oversized_line_is_reported_not_buffered():
    big = b"x" * (10 * 1024 * 1024)
    chunks = [b"first\n", big[: 5 << 20], big[5 << 20 :] + b"\nlast\n"]
    oversized = []
    lines = list(iter_lines(iter(chunks), 1 << 20, lambda offset, head: oversized.append((offset, len(head)))))
    assert [line.data for line in lines] == [b"first", b"last"]
    assert oversized == [(6, 2000)]
    assert lines[1].offset == 6 + len(big) + 1
