"""The bad-input corpus: crafted and damaged inputs for every reader, generated here (nothing committed).

Each :class:`Case` writes one input that mixes good records with one hostile or damaged thing, and says
how many good records it holds. :func:`run_case` feeds it to the real reader through ``run_step`` (as the
ingest assets do) and reports whether the stage survived and how many good records it lost.
``tests/test_hostile_input.py`` requires every case to survive with nothing good lost;
``bench/bad_inputs.py`` prints the same run as the table in the README's reliability section.
Add a case whenever an input breaks something.
"""

from __future__ import annotations

import base64
import codecs
import dataclasses
import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from rosie_pipeline.documents import DOCUMENT_SCHEMA
from rosie_pipeline.ingest.books import GutenbergReader
from rosie_pipeline.ingest.common_crawl import CommonCrawlReader
from rosie_pipeline.ingest.reddit import DIALOGUE_SCHEMA, PushshiftReader
from rosie_pipeline.step import run_step
from tests.fixtures import (PROSE, comment, gutenberg_book, gzip_members, html_page, http_response, png_with_text,
                            submission, warc_record, zstd_ndjson)

DEEP = 100_000  # nesting that Python's JSON parser cannot follow (RecursionError)


@dataclass(frozen=True)
class Case:
    stage: str
    name: str
    #: Writes the input under the folder; returns its files and the good records (urls, thread ids,
    #: dialogue locators or the book's first words) that must come out.
    write: Callable[[Path], tuple[list[Path], set[str]]]
    #: False where the input is odd but readable (a bogus charset: the page is decoded by detection).
    counted_bad: bool = True


@dataclass(frozen=True)
class Outcome:
    case: Case
    survived: bool
    good: int
    lost: int
    bad_counted: int
    error: str = ""


# -- Common Crawl: two good pages around one hostile record -----------------------------------------
def _page(n: int) -> bytes:
    return warc_record("response", f"http://good{n}.example/", http_response(html_page(f"Good {n}", PROSE[n : n + 3])))


def _cc(name: str, hostile: bytes | Callable[[list[bytes]], bytes], counted_bad: bool = True) -> Case:
    def write(folder: Path) -> tuple[list[Path], set[str]]:
        path = folder / f"{name}.warc.gz"
        good = [_page(0), _page(3)]
        data = hostile(good) if callable(hostile) else gzip_members([good[0], hostile, good[1]])
        path.write_bytes(data)
        return [path], {"http://good0.example/", "http://good3.example/"}
    return Case("common_crawl", name, write, counted_bad)


def _gzip_bomb() -> bytes:
    body = gzip.compress(b"<html><body><p>" + b"a" * (24 << 20) + b"</p></body></html>", compresslevel=9)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\n\r\n"
    return warc_record("response", "http://bomb.example/", head + body)


CC_CASES = [
    _cc("meta_charset_rot13", counted_bad=False, hostile=warc_record("response", "http://rot.example/", http_response(
        '<html><head><meta charset="rot13"></head><body><p>Hello there, friend.</p></body></html>', "text/html"))),
    _cc("header_charset_hex", counted_bad=False, hostile=warc_record("response", "http://hex.example/", http_response(
        "<html><body><p>Hello there.</p></body></html>", "text/html; charset=hex"))),
    _cc("header_charset_zlib_codec", counted_bad=False, hostile=warc_record("response", "http://zlib.example/", http_response(
        "<p>Hi</p>", "text/html; charset=zlib_codec"))),
    _cc("status_superscript_digit", warc_record("response", "http://sup.example/", http_response("<p>x</p>", status="²00 OK"))),
    _cc("status_arabic_digits", warc_record("response", "http://ar.example/", http_response("<p>x</p>", status="٢٠٠ OK"))),
    _cc("gzip_bomb_body", _gzip_bomb()),
    _cc("bad_gzip_body", warc_record("response", "http://gz.example/", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                     b"Content-Encoding: gzip\r\n\r\n\x1f\x8b\x08garbage")),
    _cc("chunked_lies", counted_bad=False, hostile=warc_record("response", "http://chunk.example/", b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                    b"Transfer-Encoding: chunked\r\n\r\nffffffff\r\n<p>short</p>")),
    _cc("negative_content_length", warc_record("response", "http://neg.example/", b"x", content_length=-1)),
    _cc("huge_content_length", warc_record("response", "http://huge.example/", b"x", content_length=10**15)),
    _cc("header_without_end", b"WARC/1.0\r\nWARC-Type: response\r\n" + b"X-Junk: y\r\n" * 10_000),
    _cc("binary_html", counted_bad=False, hostile=warc_record("response", "http://bin.example/", http_response(bytes(range(256)) * 64, "text/html"))),
    _cc("garbage_between_members", lambda good: gzip.compress(good[0]) + b"\x00garbage" * 500 + gzip.compress(good[1])),
    _cc("in_frame_garbage", lambda good: gzip.compress(good[0] + b"WARC/1.0\r\nnonsense\r\n\r\n" + b"\xff" * 5000 + good[1])),
]


# -- Reddit: three good threads and one hostile line ------------------------------------------------
def _reddit(name: str, hostile: bytes | dict, good_override: dict | None = None, counted_bad: bool = True) -> Case:
    def write(folder: Path) -> tuple[list[Path], set[str]]:
        submissions = [submission(f"g{n}", f"Good thread {n}", selftext=PROSE[n], **(good_override or {}))
                       for n in range(3)]
        comments = [comment(f"c{n}", f"g{n}", f"t3_g{n}", PROSE[n + 5], f"user{n}") for n in range(3)]
        line = hostile if isinstance(hostile, bytes) else json.dumps(hostile).encode()
        (folder / "RS_2024-01.zst").write_bytes(zstd_ndjson(submissions, window_log=31))
        (folder / "RC_2024-01.zst").write_bytes(zstd_ndjson([comments[0], line, *comments[1:]], window_log=31))
        return [folder / "RS_2024-01.zst", folder / "RC_2024-01.zst"], {f"t3_g{n}" for n in range(3)}
    return Case("reddit", name, write, counted_bad)


def _hostile_comment(**fields) -> dict:
    return {**comment("h1", "g1", "t3_g1", "A hostile comment.", "mallory"), **fields}


REDDIT_CASES = [
    _reddit("nested_json", b"[" * DEEP + b"]" * DEEP),
    _reddit("nested_object_field", b'{"id": "h1", "body": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}"),
    _reddit("score_infinite", b'{"id": "h1", "link_id": "t3_g1", "parent_id": "t3_g1", "body": "x", "score": 1e999}'),
    _reddit("score_2_pow_70", _hostile_comment(score=2**70)),
    _reddit("score_as_list", _hostile_comment(score=[1])),
    _reddit("created_utc_1e15", _hostile_comment(created_utc=10**15)),
    _reddit("created_utc_negative_huge", _hostile_comment(created_utc=-(10**15))),
    _reddit("parent_id_integer", _hostile_comment(parent_id=12345)),
    _reddit("link_id_integer", _hostile_comment(link_id=7)),
    _reddit("author_object", _hostile_comment(author={"name": "x"})),
    _reddit("body_list", _hostile_comment(body=["a", "b"])),
    _reddit("over_18_garbage", _hostile_comment(over_18={"x": 1})),
    _reddit("lone_surrogate", b'{"id": "h1", "link_id": "t3_g1", "parent_id": "t3_g1", "body": "\\ud800", "author": "m"}', counted_bad=False),
    _reddit("invalid_utf8", b'{"id": "h1", "body": "\xff\xfe"}'),
    _reddit("over_18_string_false_is_kept", _hostile_comment(), good_override={"over_18": "false"}, counted_bad=False),
]


# -- Dialogue imports: a good chat next to one malformed file ----------------------------------------
GOOD_CHAT = [{"user_name": "Sam", "character_name": "Bella"},
             {"name": "Sam", "is_user": True, "mes": "Hi Bella, how are you today?"},
             {"name": "Bella", "is_user": False, "mes": "I'm great, Sam! Want to bake cookies?"}]


def _jsonl(lines: list) -> bytes:
    return b"\n".join(line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines) + b"\n"


def _card(data: dict) -> bytes:
    return json.dumps({"spec": "chara_card_v2", "data": {"name": "Bella", **data}}).encode()


def _dialogue(name: str, suffix: str, hostile: bytes, counted_bad: bool = True) -> Case:
    def write(folder: Path) -> tuple[list[Path], set[str]]:
        (folder / "good_chat.jsonl").write_bytes(_jsonl(GOOD_CHAT))
        (folder / f"{name}{suffix}").write_bytes(hostile)
        return [folder / "good_chat.jsonl", folder / f"{name}{suffix}"], {"good_chat.jsonl"}
    return Case("dialogue", name, write, counted_bad)


_NESTED = b'{"a":' * DEEP + b"1" + b"}" * DEEP
DIALOGUE_CASES = [
    _dialogue("card_first_mes_list", ".json", _card({"first_mes": ["hi", "there"]})),
    _dialogue("card_first_mes_int", ".json", _card({"first_mes": 42})),
    _dialogue("card_mes_example_int", ".json", _card({"first_mes": "Hi!", "mes_example": 7})),
    _dialogue("card_mes_example_dict", ".json", _card({"mes_example": {"a": 1}})),
    _dialogue("card_name_list", ".json", json.dumps({"data": {"name": ["Bella"]}}).encode()),
    _dialogue("card_nested_json", ".json", _NESTED),
    _dialogue("card_png_nested_chunk", ".png", png_with_text({"chara": base64.b64encode(_NESTED)})),
    _dialogue("card_png_bad_base64", ".png", png_with_text({"chara": b"!!!not base64!!!"})),
    _dialogue("card_png_truncated", ".png", png_with_text({"chara": base64.b64encode(_card({"first_mes": "Hi"}))})[:60]),
    _dialogue("card_png_card_is_a_list", ".png", png_with_text({"chara": base64.b64encode(b"[1, 2]")})),
    _dialogue("sillytavern_nested_line", ".jsonl", _jsonl([GOOD_CHAT[0], _NESTED, GOOD_CHAT[2]])),
    _dialogue("sillytavern_int_user_name", ".jsonl", _jsonl([{**GOOD_CHAT[0], "user_name": 7}, *GOOD_CHAT[1:]]),
              counted_bad=False),
    _dialogue("sillytavern_lone_surrogate", ".jsonl", _jsonl([GOOD_CHAT[0], b'{"is_user": true, "mes": "hi \\ud800"}',
                                                              GOOD_CHAT[2]]), counted_bad=False),
    _dialogue("sillytavern_list_character_name", ".jsonl", _jsonl([{**GOOD_CHAT[0], "character_name": ["B"]}, *GOOD_CHAT[1:]])),
    _dialogue("sillytavern_header_is_a_list", ".jsonl", _jsonl([[1, 2], *GOOD_CHAT[1:]])),
    _dialogue("sillytavern_mes_int", ".jsonl", _jsonl([GOOD_CHAT[0], {**GOOD_CHAT[1], "mes": 5}, GOOD_CHAT[2]])),
    _dialogue("characterai_text_int", ".json", json.dumps({"info": {"character": {"name": "Bella"}}, "histories": {
        "histories": [{"msgs": [{"src": {"is_human": True, "name": "Sam"}, "text": 5},
                                {"src": {"is_human": False}, "text": "Hello!"}]}]}}).encode()),
    _dialogue("characterai_name_int", ".json", json.dumps({"info": {"character": {"name": 5}}, "histories": {
        "histories": [{"msgs": [{"src": {"is_human": False}, "text": "Hi"}]}]}}).encode()),
    _dialogue("characterai_human_name_list", ".json", json.dumps({"info": {"character": {"name": "Bella"}}, "histories": {
        "histories": [{"msgs": [{"src": {"is_human": True, "name": ["x"]}, "text": "Hi"},
                                {"src": {"is_human": False}, "text": "Hello!"}]}]}}).encode()),
    _dialogue("characterai_histories_dict", ".json", json.dumps({"info": {"character": {"name": "Bella"}},
                                                                 "histories": {"histories": {"a": 1}}}).encode()),
    _dialogue("not_utf8", ".json", b"\xff\xfe\x00garbage"),
]


# -- Books: one book in an encoding or state a plain open() gets wrong ------------------------------
_BOOK = gutenberg_book("The Quiet Town", "A. Writer", [PROSE[:4], PROSE[4:8]])
_FIRST_WORDS = PROSE[0][:40]


def _book(name: str, data: bytes | Callable[[], bytes], good: bool = True) -> Case:
    """A book that must come out whole (``good``), or a file that must be refused as not a book."""
    def write(folder: Path) -> tuple[list[Path], set[str]]:
        path = folder / f"{name}.txt"
        path.write_bytes(data() if callable(data) else data)
        return [path], {_FIRST_WORDS} if good else set()
    return Case("books", name, write, counted_bad=not good)


BOOK_CASES = [
    _book("utf16_le_bom", _BOOK.encode("utf-16")),
    _book("utf16_be_bom", codecs.BOM_UTF16_BE + _BOOK.encode("utf-16-be")),
    _book("utf16_le_no_bom", _BOOK.encode("utf-16-le")),
    _book("utf16_be_no_bom", _BOOK.encode("utf-16-be")),
    _book("utf32_bom", _BOOK.encode("utf-32")),
    _book("utf8_bom", codecs.BOM_UTF8 + _BOOK.encode()),
    _book("binary_with_nuls", bytes(range(256)) * 200, good=False),
    _book("one_endless_line", lambda: b"word " * 300_000, good=False),
]

CASES = CC_CASES + REDDIT_CASES + DIALOGUE_CASES + BOOK_CASES


def _documents(out: Path) -> list[dict]:
    path = out / "documents.parquet"
    return pq.read_table(path).to_pylist() if path.exists() else []


def _read(case: Case, paths: list[Path], folder: Path) -> tuple[set[str], int]:
    """(good records that came out, bad records counted) for the case's input files."""
    out, quarantine = folder / "out", folder / "quarantine.jsonl"
    if case.stage == "common_crawl":
        reader = CommonCrawlReader()
        result = run_step(lambda: reader.read(paths[0]), inputs=paths, out_dir=out, schemas={"documents": DOCUMENT_SCHEMA},
                          quarantine_path=quarantine, options={})
        found = {d["url"] for d in _documents(out)}
    elif case.stage == "reddit":
        pushshift = PushshiftReader()
        result = run_step(lambda: pushshift.read_month(paths, folder / "work"), inputs=paths, out_dir=out,
                          schemas={"documents": DOCUMENT_SCHEMA, "dialogue_candidates": DIALOGUE_SCHEMA},
                          quarantine_path=quarantine, options={})
        found = {json.loads(d["meta"])["link_id"] for d in _documents(out)}
    elif case.stage == "books":
        books = GutenbergReader()
        result = run_step(lambda: books.read(paths[0]), inputs=paths, out_dir=out, schemas={"documents": DOCUMENT_SCHEMA},
                          quarantine_path=quarantine, options={})
        texts = [d["text"] for d in _documents(out)]
        assert not any("\x00" in t or "FULL LICENSE" in t for t in texts), "NULs or the licence reached a document"
        found = {_FIRST_WORDS for t in texts if t.startswith("CHAPTER 1") and _FIRST_WORDS in t}
    else:
        from rosie_pipeline.dialogue.importers import Imported, PersonaRegistry, read_landing_file
        from rosie_pipeline.ingest.records import Rejected

        registry = PersonaRegistry(folder / "personas.json")
        items = [item for path in paths for item in read_landing_file(path, registry)]
        found = {i.locator for i in items if isinstance(i, Imported)}
        return found, sum(isinstance(i, Rejected) and i.bad for i in items)
    return found, result.stats.bad_total


def run_case(case: Case, folder: Path) -> Outcome:
    folder.mkdir(parents=True, exist_ok=True)
    paths, wanted = case.write(folder)
    try:
        found, bad = _read(case, paths, folder)
    except Exception as exc:  # noqa: BLE001 — what the table reports as "did not survive"
        return Outcome(case, False, len(wanted), len(wanted), 0, f"{type(exc).__name__}: {str(exc)[:120]}")
    good_found = {w for w in wanted if w in found}
    return Outcome(case, True, len(wanted), len(wanted) - len(good_found), bad)


def table(outcomes: list[Outcome]) -> str:
    """Markdown: per stage, inputs tried / survived / good records lost, then the failures by name."""
    lines = ["| stage | inputs tried | survived | good records lost | bad records counted |", "|---|---:|---:|---:|---:|"]
    for stage in dict.fromkeys(o.case.stage for o in outcomes):
        mine = [o for o in outcomes if o.case.stage == stage]
        lines.append(f"| {stage} | {len(mine)} | {sum(o.survived for o in mine)} | "
                     f"{sum(o.lost for o in mine)} of {sum(o.good for o in mine)} | {sum(o.bad_counted for o in mine)} |")
    failures = [o for o in outcomes if not o.survived or o.lost]
    if failures:
        lines.append("")
    lines += [f"- `{o.case.stage}/{o.case.name}`: {o.error or f'lost {o.lost} good records'}" for o in failures]
    return "\n".join(lines)


def as_dict(outcome: Outcome) -> dict:
    return {**dataclasses.asdict(outcome), "case": f"{outcome.case.stage}/{outcome.case.name}"}
