"""Common Crawl files to documents: WARC ``response`` records (HTML) and WET ``conversion`` records."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from rosie_pipeline.documents import make_document
from rosie_pipeline.ingest.html import (
    HTML_TYPES,
    Extractor,
    HttpResponse,
    PayloadError,
    decode_html,
    extract_main_text,
    parse_http_response,
)
from rosie_pipeline.ingest.records import Rejected, Row, bad, skipped
from rosie_pipeline.ingest.streams import iter_decompressed
from rosie_pipeline.ingest.warc import WarcRecord, iter_warc_records

SOURCE = "web"
CC_SUFFIXES = (".warc", ".warc.gz", ".wet", ".wet.gz", ".warc.wet.gz")


@dataclass(frozen=True)
class CommonCrawlOptions:
    extractor: Extractor = "resiliparse"
    max_record_bytes: int = 16 * 1024 * 1024
    #: An HTTP body once its gzip/deflate content encoding is undone (pages past this are quarantined).
    max_body_bytes: int = 8 * 1024 * 1024
    min_text_chars: int = 1


def is_cc_file(path: Path) -> bool:
    return path.is_file() and path.name.endswith(CC_SUFFIXES) and not path.name.startswith(".")


class CommonCrawlReader:
    """Reads one WARC or WET file; the record type decides how a record becomes a document."""

    def __init__(self, options: CommonCrawlOptions | None = None) -> None:
        self.options = options or CommonCrawlOptions()

    def read(self, path: Path) -> Iterator[Row | Rejected]:
        errors: list[Rejected] = []
        chunks = iter_decompressed(path, lambda reason, off, detail, lost: errors.append(bad(reason, off, detail, lost_bytes=lost)))
        for item in iter_warc_records(chunks, self.options.max_record_bytes):
            yield from errors
            errors.clear()
            yield item if isinstance(item, Rejected) else self._guarded(item, path.name)
        yield from errors

    def _guarded(self, record: WarcRecord, file_name: str) -> Row | Rejected:
        """One record's document; whatever a hostile record breaks on costs that record, never the file."""
        try:
            return self._record(record, file_name)
        except Exception as exc:  # noqa: BLE001 — the parsers below raise their own kinds on crafted bytes
            return bad("record_failed", record.offset, f"{type(exc).__name__}: {str(exc)[:200]}", record.block[:2000])

    def _record(self, record: WarcRecord, file_name: str) -> Row | Rejected:
        if record.type == "response":
            try:
                response = parse_http_response(record.block, self.options.max_body_bytes)
            except PayloadError as exc:
                return bad("http_unparseable", record.offset, str(exc), record.block[:2000])
            return self._html(record, response, file_name)
        if record.type == "resource":  # a capture stored without HTTP headers (wget, wpull)
            headers = {"content-type": record.headers.get("content-type", "")}
            return self._html(record, HttpResponse(200, headers, record.block), file_name)
        if record.type == "conversion":
            return self._conversion(record, file_name)
        return skipped(f"warc_type:{record.type or 'missing'}")

    def _html(self, record: WarcRecord, response: HttpResponse, file_name: str) -> Row | Rejected:
        if response.status != 200:
            return skipped("http_status_not_200")
        if response.mime_type not in HTML_TYPES:
            return skipped("not_html")
        html, charset = decode_html(response.body, response.declared_charset)
        text, title = extract_main_text(html, self.options.extractor)
        return self._document(record, file_name, text, title, {"charset": charset, "mime": response.mime_type})

    def _conversion(self, record: WarcRecord, file_name: str) -> Row | Rejected:
        text = record.block.decode("utf-8", errors="replace").strip()
        meta = {"identified_lang": record.headers.get("warc-identified-content-language")}
        return self._document(record, file_name, text, None, meta)

    def _document(
        self, record: WarcRecord, file_name: str, text: str, title: str | None, meta: dict[str, str | None]
    ) -> Row | Rejected:
        if len(text) < self.options.min_text_chars:
            return skipped("empty_text")
        record_id = record.headers.get("warc-record-id", f"{file_name}@{record.offset}")
        meta = {**meta, "warc_record_id": record_id, "warc_type": record.type, "file": file_name}
        return Row(
            "documents",
            make_document(
                source=SOURCE,
                locator=record_id,
                text=text,
                url=record.headers.get("warc-target-uri"),
                title=title,
                created=_parse_warc_date(record.headers.get("warc-date")),
                meta=meta,
            ),
        )


def _parse_warc_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
