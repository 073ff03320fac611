"""Pushshift monthly dumps (``RS_YYYY-MM.zst`` submissions, ``RC_YYYY-MM.zst`` comments) to threads.

Dumps are zstd-compressed ndjson with a 2**31 window and are far larger than memory, so threads are
rebuilt in two passes: every kept record is written to one of N on-disk hash buckets by its thread id
(``link_id``), then each bucket, small enough for memory, is grouped into threads. Output: one
document per thread, plus dialogue candidates (root-to-leaf comment chains with speakers anonymised)
for the personality phase.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import re
import shutil
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from rosie_pipeline.curate.filters import Doc, PIIRedactor
from rosie_pipeline.documents import document_id, make_document
from rosie_pipeline.ingest.records import Rejected, Row, bad, skipped
from rosie_pipeline.ingest.streams import iter_decompressed, iter_lines
from rosie_pipeline.parquet import ParquetSink

SOURCE = "reddit"
_PII = PIIRedactor()
DUMP_NAME = re.compile(r"^(?P<kind>RS|RC)_(?P<month>[0-9A-Za-z_-]+)\.zst$")
REMOVED_TEXT = {"[deleted]", "[removed]"}
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
#: Bounds of a believable record (an int64 column, a datetime before the year 10000).
MAX_SCORE = 2**53
MAX_EPOCH = 253_402_300_799
#: zstd on Reddit ndjson compresses about this much; used only for the first count of hash buckets (a bucket
#: that then holds more than ``bucket_target_bytes`` of records, as a dump that compressed better makes, is split).
EXPANSION_ESTIMATE = 8
#: Bytes a record costs beside its strings, in the measure buckets are sized by.
RECORD_OVERHEAD = 64

DIALOGUE_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("thread_id", pa.string(), nullable=False),
        pa.field("subreddit", pa.string()),
        pa.field("title", pa.string()),
        pa.field("turns", pa.list_(pa.struct([("speaker", pa.string()), ("text", pa.string())]))),
        pa.field("created", pa.timestamp("us", tz="UTC")),
    ]
)

_BUCKET_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),  # "submission" | "comment"
        ("id", pa.string()),
        ("link_id", pa.string()),
        ("parent_id", pa.string()),
        ("author", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("subreddit", pa.string()),
        ("permalink", pa.string()),
        ("score", pa.int64()),
        ("created_utc", pa.int64()),
        ("over_18", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class RedditOptions:
    min_score: int = 1
    subreddit_blocklist: tuple[str, ...] = ()
    drop_over_18: bool = True
    max_line_bytes: int = 1 << 20
    min_chain_turns: int = 2
    max_chain_turns: int = 12
    max_chains_per_thread: int = 20
    #: The most record bytes (their strings, as parsed) one hash bucket holds in memory when its threads are built;
    #: measured while scattering, so RSS is bounded whatever the dump's compression ratio.
    bucket_target_bytes: int = 256 << 20


def _thread_hash(link_id: str, level: int) -> int:
    """The bucket hash of a thread; each ``level`` of splitting salts it anew (level 0 is the unsalted hash)."""
    return int(hashlib.blake2b(link_id.encode(), digest_size=4, salt=level.to_bytes(8, "little")).hexdigest(), 16)


def _record_bytes(record: dict[str, Any]) -> int:
    """What a record weighs in a bucket: its strings' lengths plus a fixed overhead."""
    return RECORD_OVERHEAD + sum(len(value) for value in record.values() if isinstance(value, str))


def dump_month(path: Path) -> str | None:
    """The month key of a Pushshift dump file name (``RC_2024-01.zst`` -> ``2024-01``)."""
    match = DUMP_NAME.match(path.name)
    return match.group("month") if match else None


def dump_kind(path: Path) -> str | None:
    match = DUMP_NAME.match(path.name)
    return {"RS": "submission", "RC": "comment"}[match.group("kind")] if match else None


class PushshiftReader:
    """Rebuilds the threads of one month from its RS_ and/or RC_ dump."""

    def __init__(self, options: RedditOptions | None = None) -> None:
        self.options = options or RedditOptions()
        self._blocklist = {name.lower() for name in self.options.subreddit_blocklist}

    def read_month(self, dumps: Iterable[Path], workdir: Path) -> Iterator[Row | Rejected]:
        dumps = sorted(dumps)
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        try:
            total = sum(path.stat().st_size for path in dumps) * EXPANSION_ESTIMATE
            n_buckets = max(1, math.ceil(total / self.options.bucket_target_bytes))
            with contextlib.ExitStack() as open_sinks:
                buckets = [
                    open_sinks.enter_context(ParquetSink(workdir / f"bucket-{i:04d}.parquet", _BUCKET_SCHEMA))
                    for i in range(n_buckets)
                ]
                sizes = [0] * n_buckets
                for path in dumps:
                    yield from self._scatter(path, buckets, sizes)
            for sink, size in zip(buckets, sizes):
                yield from self._bucket(sink.path, size, level=0)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    # pass 1: parse, filter, and scatter into buckets by thread ------------------------------------
    def _scatter(self, path: Path, buckets: list[ParquetSink], sizes: list[int]) -> Iterator[Rejected]:
        kind = dump_kind(path)
        if kind is None:
            yield bad("unknown_dump_name", None, f"{path.name} is not RS_*.zst or RC_*.zst")
            return
        problems: list[Rejected] = []
        chunks = iter_decompressed(path, lambda reason, off, detail, lost: problems.append(bad(reason, off, detail, lost_bytes=lost)))
        lines = iter_lines(
            chunks,
            self.options.max_line_bytes,
            lambda off, head: problems.append(bad("oversized_line", off, f"> {self.options.max_line_bytes:,} bytes", head)),
        )
        for line in lines:
            yield from (dataclasses.replace(problem, file=path.name) for problem in problems)
            problems.clear()
            if not line.data.strip():
                continue
            record = self._parse(line.data, line.offset, kind)
            if isinstance(record, Rejected):
                yield dataclasses.replace(record, file=path.name)
                continue
            bucket = _thread_hash(record["link_id"], 0) % len(buckets)
            buckets[bucket].write(record)
            sizes[bucket] += _record_bytes(record)
        yield from (dataclasses.replace(problem, file=path.name) for problem in problems)

    def _parse(self, data: bytes, offset: int, kind: str) -> dict[str, Any] | Rejected:
        try:
            raw = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            return bad("invalid_utf8", offset, str(exc), data)
        except json.JSONDecodeError as exc:
            return bad("invalid_json", offset, str(exc), data)
        except RecursionError:
            return bad("invalid_json", offset, "nested too deeply", data)
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
            return bad("missing_fields", offset, "not an object with a string 'id'", data)
        if _ESCAPED_SURROGATE.search(data):  # "\ud800" alone parses to a str that no UTF-8 writer takes
            raw = _without_surrogates(raw)
        try:
            record = _slim(raw, kind)
        except (TypeError, ValueError, OverflowError) as exc:
            return bad("bad_field_type", offset, str(exc), data)
        reason = self._rule(record)
        return skipped(reason) if reason else record

    def _rule(self, record: dict[str, Any]) -> str | None:
        """Why a record is dropped on purpose, or None to keep it."""
        if (record["subreddit"] or "").lower() in self._blocklist:
            return "blocklisted_subreddit"
        if record["kind"] == "comment" and (record["text"] or "").strip() in REMOVED_TEXT:
            return "deleted_or_removed"
        if record["kind"] == "submission" and (record["text"] or "").strip() in REMOVED_TEXT:
            record["text"] = ""  # a removed self-text; the title and the comments can still make a thread
        if record["score"] is not None and record["score"] < self.options.min_score:
            return "low_score"
        return None

    # pass 2: one bucket in memory, grouped into threads --------------------------------------------
    def _bucket(self, path: Path, size: int, level: int, splits: bool = True) -> Iterator[Row | Rejected]:
        """The threads of one bucket file holding ``size`` record bytes. One larger than ``bucket_target_bytes`` is
        first split by thread (the next bits of a salted hash) into parts that fit, streamed from disk, and each
        part is taken the same way; a part that did not split (all one thread) is read whole (a thread is built in
        memory)."""
        parts = math.ceil(size / self.options.bucket_target_bytes)
        if parts <= 1 or not splits:
            yield from self._threads(pq.read_table(path).to_pylist())
            path.unlink()
            return
        sizes = [0] * parts
        with contextlib.ExitStack() as open_sinks:
            sinks = [open_sinks.enter_context(ParquetSink(path.with_name(f"{path.stem}-{i}.parquet"), _BUCKET_SCHEMA))
                     for i in range(parts)]
            for batch in pq.ParquetFile(path).iter_batches(batch_size=2_000):
                for record in batch.to_pylist():
                    part = _thread_hash(record["link_id"], level + 1) % parts
                    sinks[part].write(record)
                    sizes[part] += _record_bytes(record)
        path.unlink()
        for sink, part_size in zip(sinks, sizes):
            yield from self._bucket(sink.path, part_size, level + 1, splits=part_size < size)

    def _threads(self, records: list[dict[str, Any]]) -> Iterator[Row | Rejected]:
        by_thread: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in records:
            by_thread[record["link_id"]].append(record)
        for link_id in sorted(by_thread):
            records = by_thread[link_id]
            try:
                built = list(self._thread(link_id, records))
            except Exception as exc:  # noqa: BLE001 — one thread that breaks the builder costs that thread
                detail = f"{type(exc).__name__}: {str(exc)[:200]}"
                built = [dataclasses.replace(bad("thread_failed", None, detail, json.dumps(r, default=str)), file=None)
                         for r in records]
            yield from built

    def _thread(self, link_id: str, records: list[dict[str, Any]]) -> Iterator[Row | Rejected]:
        submission = next((r for r in records if r["kind"] == "submission"), None)
        comments = [r for r in records if r["kind"] == "comment"]
        if submission is not None and submission["over_18"] and self.options.drop_over_18:
            for _ in records:
                yield skipped("over_18")
            return
        thread = _Thread(submission, comments)
        text = thread.text()
        if not text:
            yield skipped("empty_thread")
            return
        doc = make_document(
            source=SOURCE,
            locator=link_id,
            text=text,
            url=thread.url(link_id),
            title=submission["title"] if submission else None,
            created=thread.created(),
            meta={
                "subreddit": thread.subreddit(),
                "score": submission["score"] if submission else None,
                "comments": len(comments),
                "link_id": link_id,
                "has_submission": submission is not None,
            },
        )
        yield Row("documents", doc, consumed=len(records))
        for chain in thread.chains(self.options):
            yield Row(
                "dialogue_candidates",
                {
                    "id": document_id(SOURCE, f"{link_id}/{chain[-1]['id']}"),
                    "source": SOURCE,
                    "thread_id": doc["id"],
                    "subreddit": thread.subreddit(),
                    "title": doc["title"],
                    "turns": _anonymise(chain),
                    "created": _timestamp(chain[0]["created_utc"]),
                },
                consumed=0,
            )


class _Thread:
    """A submission and its comment tree, children ordered by score (best first)."""

    def __init__(self, submission: dict[str, Any] | None, comments: list[dict[str, Any]]) -> None:
        self.submission = submission
        self.comments = comments
        ids = {c["id"] for c in comments}
        self.children: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.top_level: list[dict[str, Any]] = []
        self.orphans: list[dict[str, Any]] = []  # replies whose parent was dropped or is not in the dump
        for comment in comments:
            parent = comment["parent_id"] or ""
            if parent.startswith("t3_") or not parent:
                self.top_level.append(comment)
            elif parent[3:] in ids:
                self.children[parent[3:]].append(comment)
            else:
                self.orphans.append(comment)
        order = lambda c: (-(c["score"] or 0), c["created_utc"] or 0, c["id"])  # noqa: E731
        self.top_level.sort(key=order)
        self.orphans.sort(key=order)
        for replies in self.children.values():
            replies.sort(key=order)

    def _walk(self, comment: dict[str, Any]) -> Iterator[dict[str, Any]]:
        stack = [comment]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(self.children.get(node["id"], [])))

    def text(self) -> str:
        parts: list[str] = []
        if self.submission:
            parts += [self.submission["title"] or "", self.submission["text"] or ""]
        for root in self.top_level + self.orphans:
            parts += [c["text"] for c in self._walk(root)]
        return "\n\n".join(p.strip() for p in parts if p and p.strip())

    def chains(self, options: RedditOptions) -> Iterator[list[dict[str, Any]]]:
        """Root-to-leaf paths from each top-level comment, best-scored first, with two speakers or more."""
        produced = 0
        stack: list[list[dict[str, Any]]] = [[root] for root in reversed(self.top_level)]
        while stack and produced < options.max_chains_per_thread:
            path = stack.pop()
            replies = self.children.get(path[-1]["id"], [])
            if replies and len(path) < options.max_chain_turns:
                stack.extend(path + [reply] for reply in reversed(replies))
                continue
            if len(path) >= options.min_chain_turns and len({c["author"] for c in path}) >= 2:
                produced += 1
                yield path

    def subreddit(self) -> str | None:
        source = self.submission or (self.comments[0] if self.comments else None)
        return source["subreddit"] if source else None

    def url(self, link_id: str) -> str:
        permalink = self.submission["permalink"] if self.submission else None
        return f"https://www.reddit.com{permalink}" if permalink else f"https://www.reddit.com/comments/{link_id[3:]}"

    def created(self) -> datetime | None:
        stamps = [r["created_utc"] for r in ([self.submission] if self.submission else []) + self.comments]
        stamps = [s for s in stamps if s is not None]
        return _timestamp(min(stamps)) if stamps else None


def _anonymise(chain: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Speakers become ``speaker_1``, ``speaker_2``… in order of appearance; names never leave, nor do the
    e-mails, phone numbers, addresses and ``u/name`` mentions in what they wrote (these chains reach the
    tokenizer and the dialogue builders without passing curation)."""
    aliases: dict[str, str] = {}
    turns = []
    for comment in chain:
        alias = aliases.setdefault(comment["author"] or f"?{comment['id']}", f"speaker_{len(aliases) + 1}")
        doc = Doc(comment["text"].strip())
        _PII(doc)
        turns.append({"speaker": alias, "text": doc.text})
    return turns


def _slim(raw: dict[str, Any], kind: str) -> dict[str, Any]:
    """The fields the thread builder needs, with Pushshift's loose types normalised."""
    record_id = raw["id"]
    if kind == "submission":
        link_id, parent_id, text = f"t3_{record_id}", None, raw.get("selftext")
    else:
        link_id, parent_id, text = raw.get("link_id"), _str_or_none(raw.get("parent_id")), raw.get("body")
        if not isinstance(link_id, str) or not link_id:
            raise ValueError("comment without link_id")
    return {
        "kind": kind,
        "id": record_id,
        "link_id": link_id,
        "parent_id": parent_id,
        "author": _str_or_none(raw.get("author")),
        "title": _str_or_none(raw.get("title")),
        "text": _str_or_none(text) or "",
        "subreddit": _str_or_none(raw.get("subreddit")),
        "permalink": _str_or_none(raw.get("permalink")),
        "score": _whole_number(raw.get("score"), "score", -MAX_SCORE, MAX_SCORE),
        "created_utc": _whole_number(raw.get("created_utc"), "created_utc", 0, MAX_EPOCH),
        "over_18": _flag(raw.get("over_18")),
    }


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    return value


def _whole_number(value: Any, name: str, low: int, high: int) -> int | None:
    """Pushshift's numbers arrive as ints, floats or strings; anything outside [low, high] is a bad record."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{name} is a {type(value).__name__}, not a number")
    number = float(value) if not isinstance(value, int) else value
    if not (isinstance(number, int) or math.isfinite(number)) or not low <= number <= high:
        raise ValueError(f"{name} {str(value)[:40]} is outside [{low}, {high}]")
    return int(number)


def _flag(value: Any) -> bool:
    """``over_18`` as Pushshift wrote it over the years: true/false, 0/1, "true"/"false"."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", ""):
        return value.strip().lower() in ("true", "1")
    raise ValueError(f"over_18 {str(value)[:40]!r} is not true or false")


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _timestamp(epoch: int | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=timezone.utc)
