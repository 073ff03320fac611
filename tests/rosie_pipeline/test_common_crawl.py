import dataclasses
import gzip
import json

import polars as pl
import pytest

from rosie_pipeline.documents import DOCUMENT_SCHEMA
from rosie_pipeline.ingest.common_crawl import CommonCrawlOptions, CommonCrawlReader
from rosie_pipeline.ingest.records import Rejected, Row
from rosie_pipeline.step import run_step
from rosie_pipeline.samples import pywb_sample_warcs
from tests.fixtures import gzip_members, html_page, http_response, warc_record

PARAGRAPHS = [
    "Rosie likes long walks through the archive and reads every page she finds along the way.",
    "She keeps the main text and leaves the navigation menus behind, because menus are not prose.",
]


def _split(items):
    rows = [i.values for i in items if isinstance(i, Row)]
    rejected = [i for i in items if isinstance(i, Rejected)]
    return rows, rejected


def _read(path, **options):
    return _split(list(CommonCrawlReader(CommonCrawlOptions(**options)).read(path)))


@pytest.fixture(scope="session")
def pywb_warcs():
    return pywb_sample_warcs()


def test_real_iana_capture(pywb_warcs):
    rows, rejected = _read(pywb_warcs / "iana.warc.gz")
    assert len(rows) >= 10
    home = next(r for r in rows if r["url"] == "http://www.iana.org/")
    assert home["title"] == "Internet Assigned Numbers Authority"
    assert "Internet Assigned Numbers Authority" in home["text"] or "IANA" in home["text"]
    assert home["created"].year == 2014 and home["source"] == "web"
    assert json.loads(home["meta"])["charset"] == "utf-8"
    assert not [r for r in rejected if r.bad]  # a clean file: nothing malformed
    assert {r.reason for r in rejected} >= {"warc_type:request", "not_html"}


def test_real_single_member_gzip_warc(pywb_warcs):
    # pywb's example-bad.warc.gz.bad is one gzip member for the whole file, which warcio refuses
    rows, rejected = _read(pywb_warcs / "example-bad.warc.gz.bad")
    assert len(rows) == 1 and "Example Domain" in (rows[0]["title"] or "")
    assert not [r for r in rejected if r.bad]


def test_real_broken_content_length_is_quarantined_and_rest_kept(pywb_warcs):
    rows, rejected = _read(pywb_warcs / "example.warc")
    bad = [r for r in rejected if r.bad]
    assert [r.reason for r in bad] == ["warc_bad_record_length"]
    assert len(rows) == 1  # the response after the broken request record is still read


def test_broken_record_in_the_middle(tmp_path):
    good1 = warc_record("response", "http://a.example/", http_response(html_page("A", PARAGRAPHS)))
    broken = warc_record("response", "http://b.example/", http_response(html_page("B", PARAGRAPHS)), content_length=50)
    good2 = warc_record("response", "http://c.example/", http_response(html_page("C", PARAGRAPHS)))
    path = tmp_path / "mixed.warc.gz"
    path.write_bytes(gzip_members([good1, broken, good2]))
    rows, rejected = _read(path)
    assert [r["url"] for r in rows] == ["http://a.example/", "http://c.example/"]
    assert [r.reason for r in rejected if r.bad] == ["warc_bad_record_length"]
    assert "SiteNavigationMenu" not in rows[0]["text"] and PARAGRAPHS[0] in rows[0]["text"]


def test_corrupt_and_truncated_gzip_members(tmp_path):
    records = [warc_record("response", f"http://{i}.example/", http_response(html_page(str(i), PARAGRAPHS)))
               for i in range(4)]
    members = [gzip.compress(r) for r in records]
    corrupt = bytearray(members[1])
    corrupt[40:80] = b"\x00" * 40
    path = tmp_path / "damaged.warc.gz"
    path.write_bytes(members[0] + bytes(corrupt) + members[2] + members[3][:-30])
    rows, rejected = _read(path)
    assert [r["url"] for r in rows] == ["http://0.example/", "http://2.example/"]
    assert sorted(r.reason for r in rejected if r.bad)[0:2] == ["corrupt_gzip", "truncated_gzip"]


def test_charsets(tmp_path):
    text = "Crème brûlée à la façon de Rosie, naïve et légère comme un soufflé."
    declared = http_response(f"<html><body><p>{text}</p></body></html>".encode("cp1252"), "text/html; charset=windows-1252")
    meta_only = http_response(
        f'<html><head><meta charset="iso-8859-1"></head><body><p>{text}</p></body></html>'.encode("latin-1"),
        "text/html",
    )
    undeclared_utf8 = http_response(f"<html><body><p>{text}</p></body></html>".encode(), "text/html")
    path = tmp_path / "charsets.warc"
    path.write_bytes(b"".join(warc_record("response", f"http://{i}.example/", block)
                              for i, block in enumerate([declared, meta_only, undeclared_utf8])))
    rows, _ = _read(path)
    assert [r["text"] for r in rows] == [text] * 3


def test_wet_conversion_records(tmp_path):
    wet = [warc_record("warcinfo", "", b"software: test\r\n"),
           warc_record("conversion", "http://w.example/", "Plain text from WET, ünïcödé.".encode(),
                       {"WARC-Identified-Content-Language": "eng", "Content-Type": "text/plain"})]
    path = tmp_path / "seg.warc.wet.gz"
    path.write_bytes(gzip_members(wet))
    rows, rejected = _read(path)
    assert rows[0]["text"] == "Plain text from WET, ünïcödé." and rows[0]["url"] == "http://w.example/"
    assert json.loads(rows[0]["meta"])["identified_lang"] == "eng"
    assert [r.reason for r in rejected] == ["warc_type:warcinfo"]


def test_oversized_record_is_skipped_without_losing_the_next(tmp_path):
    big = warc_record("response", "http://big.example/", http_response("<p>" + "x" * 200_000 + "</p>"))
    small = warc_record("response", "http://small.example/", http_response(html_page("S", PARAGRAPHS)))
    path = tmp_path / "big.warc"
    path.write_bytes(big + small)
    rows, rejected = _read(path, max_record_bytes=100_000)
    assert [r["url"] for r in rows] == ["http://small.example/"]
    assert [r.reason for r in rejected] == ["warc_oversized_record"]


def test_trafilatura_extractor(tmp_path):
    path = tmp_path / "t.warc"
    path.write_bytes(warc_record("response", "http://t.example/", http_response(html_page("T", PARAGRAPHS * 3))))
    rows, _ = _read(path, extractor="trafilatura")
    assert PARAGRAPHS[1] in rows[0]["text"] and rows[0]["title"] == "T"


def test_run_step_writes_parquet_and_quarantine(tmp_path, pywb_warcs):
    reader = CommonCrawlReader()
    path = pywb_warcs / "example-extra.warc"
    result = run_step(lambda: reader.read(path), inputs=[path], out_dir=tmp_path / "out",
                        schemas={"documents": DOCUMENT_SCHEMA}, quarantine_path=tmp_path / "q.jsonl",
                        options=dataclasses.asdict(reader.options))
    frame = pl.read_parquet(result.tables["documents"])
    assert frame.columns == DOCUMENT_SCHEMA.names and frame.height == result.stats.records_out == 1
    entries = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert len(entries) == result.stats.bad_total == 2
    assert all(e["file"] == "example-extra.warc" and e["reason"] == "warc_bad_record_length" for e in entries)


def test_empty_files(tmp_path):
    for name in ("empty.warc.gz", "empty.warc"):
        (tmp_path / name).write_bytes(b"")
        assert _read(tmp_path / name) == ([], [])
