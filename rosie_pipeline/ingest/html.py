"""HTTP payloads to main text: transfer/content decoding, charset handling, main-content extraction."""

from __future__ import annotations

import codecs
import re
import zlib
from dataclasses import dataclass
from typing import Literal

from resiliparse.extract.html2text import extract_plain_text
from resiliparse.parse.encoding import bytes_to_str, detect_encoding
from resiliparse.parse.html import HTMLTree

Extractor = Literal["resiliparse", "trafilatura"]
HTML_TYPES = ("text/html", "application/xhtml+xml")
#: Text codecs Python has that no web page means: they would read escape syntax, not characters.
_NOT_CHARSETS = {"idna", "punycode", "unicode-escape", "raw-unicode-escape"}
_STATUS = re.compile(r"[0-9]{3}")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)


class PayloadError(ValueError):
    """The HTTP payload cannot be decoded (broken chunking or content encoding)."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def mime_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def declared_charset(self) -> str | None:
        for param in self.headers.get("content-type", "").split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset":
                return value.strip().strip("\"'") or None
        return None


def parse_http_response(block: bytes, max_body_bytes: int) -> HttpResponse:
    """Split a WARC ``response`` block into status, headers and the decoded body (at most
    ``max_body_bytes`` once decoded: a 1 KB gzip bomb must not become a 128 MB page)."""
    head_end, sep_len = block.find(b"\r\n\r\n"), 4
    if head_end < 0:
        head_end, sep_len = block.find(b"\n\n"), 2
    if head_end < 0:
        raise PayloadError("no end of HTTP headers")
    lines = block[:head_end].decode("latin-1").splitlines()
    parts = lines[0].split(None, 2) if lines else []
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not _STATUS.fullmatch(parts[1]):
        raise PayloadError(f"bad HTTP status line {lines[0][:80] if lines else ''!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = block[head_end + sep_len :]
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    body = _decode_content(body, headers.get("content-encoding", "").lower().strip(), max_body_bytes)
    return HttpResponse(int(parts[1]), headers, body)


def _dechunk(body: bytes) -> bytes:
    """Undo chunked transfer encoding; archives often store the body already de-chunked while the
    header still says ``chunked`` (pywb's iana.org sample does), so a body that does not parse as
    chunks is taken as it is."""
    out, pos = bytearray(), 0
    while True:
        line_end = body.find(b"\r\n", pos)
        size_field = body[pos:line_end].split(b";")[0].strip() if line_end >= 0 else b""
        if not size_field or any(c not in b"0123456789abcdefABCDEF" for c in size_field):
            return body
        size = int(size_field, 16)
        if size == 0:
            return bytes(out)
        out += body[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2


def _decode_content(body: bytes, encoding: str, max_bytes: int) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        inflater = zlib.decompressobj(47 if encoding != "deflate" else zlib.MAX_WBITS)
        try:
            out = inflater.decompress(body, max_bytes + 1)
        except zlib.error as exc:
            raise PayloadError(f"bad {encoding} content encoding: {exc}") from exc
        if len(out) > max_bytes:
            raise PayloadError(f"the {encoding} body inflates past {max_bytes:,} bytes (a compression bomb?)")
        return out
    raise PayloadError(f"unsupported content encoding {encoding!r}")


def _valid_codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        info = codecs.lookup(name)
    except LookupError:
        return None
    # bytes-to-bytes codecs (rot13, hex, zlib…) are found by lookup but cannot decode a page
    return info.name if getattr(info, "_is_text_encoding", True) and info.name not in _NOT_CHARSETS else None


def decode_html(body: bytes, declared_charset: str | None) -> tuple[str, str]:
    """(text, charset used): the HTTP header's charset, else a ``<meta>`` charset, else detection."""
    sniffed = _META_CHARSET.search(body[:4096])
    charset = (
        _valid_codec(declared_charset)
        or _valid_codec(sniffed.group(1).decode("ascii", "ignore") if sniffed else None)
        or detect_encoding(body)
    )
    try:
        return bytes_to_str(body, charset, errors="replace"), charset
    except (LookupError, ValueError):  # a name the detector returned that Python cannot decode with
        return body.decode("utf-8", errors="replace"), "utf-8"


def extract_main_text(html: str, extractor: Extractor = "resiliparse") -> tuple[str, str | None]:
    """(main text, page title). ``resiliparse`` is fast; ``trafilatura`` is slower and stricter."""
    tree = HTMLTree.parse(html)
    title = tree.title.strip() if tree.title else None
    if extractor == "trafilatura":
        import trafilatura

        text = trafilatura.extract(html, include_comments=False, include_tables=False) or ""
    else:
        text = extract_plain_text(tree, preserve_formatting=True, main_content=True, list_bullets=True)
    return text.strip(), title or None
