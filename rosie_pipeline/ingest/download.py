"""Download Common Crawl segment files listed in a crawl's ``warc.paths.gz`` / ``wet.paths.gz``.

Polite (one request at a time, a minimum interval between requests, ``Retry-After`` honoured),
patient (retries with exponential back-off on 5xx, 429 and dropped connections) and resumable (a
partial ``*.part`` file continues with an HTTP Range request). A file appears under its final name
only when complete, so the landing sensor never sees half a file.
"""

from __future__ import annotations

import gzip
import os
import time
from dataclasses import dataclass
from pathlib import Path

import requests
from tqdm import tqdm

RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class DownloadOptions:
    base_url: str = "https://data.commoncrawl.org/"
    retries: int = 5
    backoff_s: float = 2.0
    min_interval_s: float = 1.0
    timeout_s: float = 60.0
    chunk_bytes: int = 1 << 16


class DownloadError(RuntimeError):
    """A file could not be fetched after every retry."""


class PoliteClient:
    """A requests session that waits ``min_interval_s`` between requests and retries transient failures."""

    def __init__(self, options: DownloadOptions) -> None:
        self.options = options
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "rosie-pipeline (Common Crawl downloader)"
        self._last_request = 0.0

    def get(self, url: str, headers: dict[str, str] | None = None) -> requests.Response:
        """A streaming GET that has succeeded or returned a non-retryable status."""
        for attempt in range(self.options.retries + 1):
            wait = self._last_request + self.options.min_interval_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last_request = time.monotonic()
            try:
                response = self.session.get(url, headers=headers, stream=True, timeout=self.options.timeout_s)
            except (requests.ConnectionError, requests.Timeout) as exc:
                error: str = str(exc)
            else:
                if response.status_code not in RETRY_STATUS:
                    return response
                error = f"HTTP {response.status_code}"
                retry_after = response.headers.get("Retry-After", "")
                response.close()
                if retry_after.isdigit():
                    time.sleep(min(float(retry_after), 300.0))
            if attempt < self.options.retries:
                time.sleep(self.options.backoff_s * 2**attempt)
        raise DownloadError(f"{url}: gave up after {self.options.retries + 1} attempts ({error})")


def list_crawl_files(client: PoliteClient, crawl: str, kind: str) -> list[str]:
    """Relative paths of a crawl's WARC or WET files, from its ``*.paths.gz`` listing."""
    url = f"{client.options.base_url.rstrip('/')}/crawl-data/{crawl}/{kind}.paths.gz"
    response = client.get(url)
    if response.status_code != 200:
        raise DownloadError(f"{url}: HTTP {response.status_code}")
    return [line for line in gzip.decompress(response.content).decode().splitlines() if line.strip()]


def download_file(client: PoliteClient, relative_path: str, dest_dir: Path) -> Path:
    """Fetch one file into ``dest_dir``, resuming a previous partial download."""
    dest = dest_dir / relative_path.rsplit("/", 1)[-1]
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + ".part")
    url = f"{client.options.base_url.rstrip('/')}/{relative_path.lstrip('/')}"
    for _ in range(client.options.retries + 1):
        offset = part.stat().st_size if part.exists() else 0
        response = client.get(url, headers={"Range": f"bytes={offset}-"} if offset else None)
        if response.status_code == 416:  # nothing left past our offset: the part is the whole file
            response.close()
            break
        if response.status_code not in (200, 206):
            raise DownloadError(f"{url}: HTTP {response.status_code}")
        if response.status_code == 200:
            offset = 0  # the server ignored the Range: start over
        total = _total_size(response, offset)
        try:
            with open(part, "ab" if offset else "wb") as out, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, desc=dest.name, leave=False
            ) as bar:
                for chunk in response.iter_content(client.options.chunk_bytes):
                    out.write(chunk)
                    bar.update(len(chunk))
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            continue  # resume from what arrived
        if total is None or part.stat().st_size >= total:
            break
    else:
        raise DownloadError(f"{url}: incomplete after {client.options.retries + 1} attempts")
    os.replace(part, dest)
    return dest


def _total_size(response: requests.Response, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def download_crawl(crawl: str, kind: str, dest_dir: Path, limit: int, options: DownloadOptions) -> list[Path]:
    """Download the first ``limit`` files of a crawl's ``warc`` or ``wet`` listing into ``dest_dir``."""
    if kind not in ("warc", "wet"):
        raise ValueError(f"kind must be 'warc' or 'wet', not {kind!r}")
    dest_dir.mkdir(parents=True, exist_ok=True)
    client = PoliteClient(options)
    listing = list_crawl_files(client, crawl, kind)[:limit]
    return [download_file(client, path, dest_dir) for path in tqdm(listing, desc=f"{crawl} {kind}", unit="file")]
