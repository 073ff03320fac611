"""The Common Crawl downloader against a local HTTP server that misbehaves like a busy one."""

import gzip
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rosie_pipeline.ingest.download import DownloadError, DownloadOptions, download_crawl

FILES = {
    "/crawl-data/CC-TEST/segments/1/wet/a.warc.wet.gz": bytes(range(256)) * 4_000,
    "/crawl-data/CC-TEST/segments/1/wet/b.warc.wet.gz": b"second file" * 1_000,
}
LISTING = gzip.compress("\n".join(p.lstrip("/") for p in FILES).encode() + b"\n")


class _Server:
    def __init__(self) -> None:
        self.log: list[tuple[float, str, str | None]] = []
        self.calls: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                server.log.append((time.monotonic(), self.path, self.headers.get("Range")))
                n = server.calls[self.path] = server.calls.get(self.path, 0) + 1
                if self.path == "/crawl-data/CC-TEST/wet.paths.gz":
                    return self._send(200, LISTING)
                body = FILES.get(self.path)
                if body is None:
                    return self._send(404, b"")
                if self.path.endswith("a.warc.wet.gz") and n == 1:
                    self.send_response(503)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                if self.path.endswith("a.warc.wet.gz") and n == 2:  # drop the connection half-way
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])
                return None

            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server():
    srv = _Server()
    yield srv
    srv.httpd.shutdown()


class _Clock:
    """The download module's clock: time passes only when the client sleeps, so politeness is measured
    by what the client waited, not by when a loaded machine let the server see each request."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_download_retries_resumes_and_is_polite(server, tmp_path, monkeypatch):
    import requests

    import rosie_pipeline.ingest.download as download

    clock, sent, send = _Clock(), [], requests.Session.get
    monkeypatch.setattr(download, "time", clock)
    monkeypatch.setattr(requests.Session, "get", lambda self, *args, **kw: (sent.append(clock.now), send(self, *args, **kw))[1])
    options = DownloadOptions(base_url=server.url, retries=3, backoff_s=0.01, min_interval_s=0.2, timeout_s=5)
    paths = download_crawl("CC-TEST", "wet", tmp_path, limit=2, options=options)
    assert [p.name for p in paths] == ["a.warc.wet.gz", "b.warc.wet.gz"]
    for path, (_, body) in zip(paths, FILES.items()):
        assert path.read_bytes() == body
    assert not list(tmp_path.glob("*.part"))
    a_ranges = [rng for _, path, rng in server.log if path.endswith("a.warc.wet.gz")]
    assert a_ranges[:2] == [None, None] and len(a_ranges) == 3  # 503, then dropped half-way, then resumed
    resumed_at = int(a_ranges[2].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(FILES["/crawl-data/CC-TEST/segments/1/wet/a.warc.wet.gz"]) // 2
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert len(sent) == len(server.log) and min(gaps) >= 0.2 - 1e-9  # never faster than min_interval_s


def test_existing_file_is_not_downloaded_again(server, tmp_path):
    (tmp_path / "a.warc.wet.gz").write_bytes(b"already here")
    options = DownloadOptions(base_url=server.url, retries=3, backoff_s=0.01, min_interval_s=0, timeout_s=5)
    download_crawl("CC-TEST", "wet", tmp_path, limit=1, options=options)
    assert (tmp_path / "a.warc.wet.gz").read_bytes() == b"already here"
    assert [path for _, path, _ in server.log] == ["/crawl-data/CC-TEST/wet.paths.gz"]


def test_unknown_crawl_is_a_clear_error(server, tmp_path):
    options = DownloadOptions(base_url=server.url, retries=0, min_interval_s=0, timeout_s=5)
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_crawl("CC-NOPE", "wet", tmp_path, limit=1, options=options)
