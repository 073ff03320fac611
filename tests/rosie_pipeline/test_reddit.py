import dataclasses
import json
import zstandard

import polars as pl

from rosie_pipeline.documents import DOCUMENT_SCHEMA
from rosie_pipeline.ingest.reddit import DIALOGUE_SCHEMA, PushshiftReader, RedditOptions, dump_month
from rosie_pipeline.step import run_step
from tests.fixtures import comment, submission, zstd_ndjson

SUBMISSIONS = [
    submission("s1", "What is your cat's favourite toy?", selftext="Mine loves string."),
    submission("s2", "Spicy", over_18=True),
    submission("s3", "Blocked one", subreddit="badplace"),
    submission("s4", "Downvoted", score=-5),
]
COMMENTS = [
    comment("c1", "s1", "t3_s1", "A cardboard box, always.", "alice"),
    comment("c2", "s1", "t1_c1", "Boxes are undefeated.", "bob"),
    comment("c3", "s1", "t1_c2", "Until the laser pointer shows up.", "alice"),
    comment("c4", "s1", "t3_s1", "[removed]", "carol"),
    comment("c5", "s1", "t1_c4", "Reply to a removed comment.", "dave"),
    comment("c6", "s1", "t3_s1", "Mine ignores toys.", "erin", score=-3),
    comment("c7", "s2", "t3_s2", "nsfw reply", "frank"),
    comment("c8", "s9", "t3_s9", "Thread whose submission is elsewhere.", "gina"),
    comment("c9", "s9", "t1_c8", "Still a conversation.", "hal"),
]


def _land(tmp_path, comments_extra=b""):
    (tmp_path / "RS_2023-11.zst").write_bytes(zstd_ndjson(SUBMISSIONS, window_log=31))
    (tmp_path / "RC_2023-11.zst").write_bytes(zstd_ndjson(COMMENTS, window_log=31) + comments_extra)
    return [tmp_path / "RS_2023-11.zst", tmp_path / "RC_2023-11.zst"]


def _ingest(tmp_path, dumps, **options):
    reader = PushshiftReader(RedditOptions(subreddit_blocklist=("BadPlace",), **options))
    return run_step(lambda: reader.read_month(dumps, tmp_path / "work"), inputs=dumps, out_dir=tmp_path / "out",
                      schemas={"documents": DOCUMENT_SCHEMA, "dialogue_candidates": DIALOGUE_SCHEMA},
                      quarantine_path=tmp_path / "q.jsonl", options=dataclasses.asdict(reader.options))


def test_threads_rebuilt_and_filtered(tmp_path):
    result = _ingest(tmp_path, _land(tmp_path))
    docs = pl.read_parquet(result.tables["documents"]).sort("url")
    assert docs.height == 2
    s1 = docs.filter(pl.col("title") == "What is your cat's favourite toy?").row(0, named=True)
    assert s1["text"].split("\n\n") == [
        "What is your cat's favourite toy?", "Mine loves string.", "A cardboard box, always.",
        "Boxes are undefeated.", "Until the laser pointer shows up.", "Reply to a removed comment.",
    ]
    assert s1["url"] == "https://www.reddit.com/r/cats/comments/s1/x/"
    assert json.loads(s1["meta"])["subreddit"] == "cats"
    orphan = docs.filter(pl.col("title").is_null()).row(0, named=True)
    assert orphan["text"] == "Thread whose submission is elsewhere.\n\nStill a conversation."
    stats = result.stats
    assert stats.skipped == {"over_18": 2, "blocklisted_subreddit": 1, "low_score": 2, "deleted_or_removed": 1}
    assert stats.bad_total == 0 and stats.records_in == len(SUBMISSIONS) + len(COMMENTS)


def test_dialogue_chains_are_anonymised(tmp_path):
    result = _ingest(tmp_path, _land(tmp_path))
    chains = pl.read_parquet(result.tables["dialogue_candidates"]).sort("id").to_dicts()
    turns = sorted([[(t["speaker"], t["text"]) for t in c["turns"]] for c in chains])
    assert turns == [
        [("speaker_1", "A cardboard box, always."), ("speaker_2", "Boxes are undefeated."),
         ("speaker_1", "Until the laser pointer shows up.")],
        [("speaker_1", "Thread whose submission is elsewhere."), ("speaker_2", "Still a conversation.")],
    ]
    raw = (tmp_path / "out" / "dialogue_candidates.parquet").read_bytes()
    assert b"alice" not in raw and b"bob" not in raw


def test_dialogue_chains_carry_no_contact_details(tmp_path):
    private = "Mail bob@mail.example, call +49 30 1234567, my box is 10.0.0.7, ask u/alice_w."
    dumps = [tmp_path / "RS_2023-12.zst", tmp_path / "RC_2023-12.zst"]
    dumps[0].write_bytes(zstd_ndjson([submission("p1", "Contact thread")]))
    dumps[1].write_bytes(zstd_ndjson([comment("k1", "p1", "t3_p1", private, "alice"),
                                      comment("k2", "p1", "t1_k1", "Thanks, will do!", "bob")]))
    result = _ingest(tmp_path, dumps)
    [chain] = pl.read_parquet(result.tables["dialogue_candidates"]).to_dicts()
    text = chain["turns"][0]["text"]
    assert not any(p in text for p in ("bob@mail.example", "1234567", "10.0.0.7", "u/alice_w")), text


def test_bad_lines_and_corrupt_frame_are_quarantined(tmp_path):
    extra_frame = zstandard.ZstdCompressor().compress(
        b'{"id": "x1", "link_id": "t3_s1", "parent_id": "t1_c3", "body": "late frame", "author": "zed", "score": 9}\n'
        b"{not json\n" + b"\xff\xfe\xfd\n" + b'"just a string"\n' + b'{"id": "big", "body": "' + b"y" * (10 << 20) + b'"}\n'
    )
    broken_frame = bytearray(zstandard.ZstdCompressor().compress(b'{"id": "lost"}\n' * 1000))
    broken_frame[12:30] = b"\x00" * 18
    dumps = _land(tmp_path, bytes(broken_frame) + extra_frame)
    result = _ingest(tmp_path, dumps)
    assert result.stats.bad == {"corrupt_zstd": 1, "invalid_json": 1, "invalid_utf8": 1, "missing_fields": 1,
                                "oversized_line": 1}
    docs = pl.read_parquet(result.tables["documents"])
    assert docs.filter(pl.col("text").str.contains("late frame")).height == 1  # the frame after the damage is kept
    entries = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    assert {e["file"] for e in entries} == {"RC_2023-11.zst"}
    assert max(len(e["sample"] or "") for e in entries) <= 2_000


def test_many_buckets_same_output(tmp_path):
    dumps = _land(tmp_path)
    one = _ingest(tmp_path / "a", dumps)
    many = _ingest(tmp_path / "b", dumps, bucket_target_bytes=64)
    for table in ("documents", "dialogue_candidates"):
        left = pl.read_parquet(one.tables[table]).sort("id")
        right = pl.read_parquet(many.tables[table]).sort("id")
        assert left.equals(right)


def test_a_dump_that_compresses_better_than_guessed_still_builds_threads_in_bounded_memory(tmp_path, monkeypatch):
    """400 threads of repeated text: zstd packs them ~100x, so the 8x guess makes one bucket; the buckets are then
    split by what was measured, and no bucket holds more than the target (plus one thread) in memory."""
    from rosie_pipeline.ingest import reddit

    subs = [submission(f"t{i}", f"Thread {i}", selftext="same words again " * 20) for i in range(400)]
    replies = [comment(f"r{i}", f"t{i}", f"t3_t{i}", "a reply that repeats itself " * 10, "ann") for i in range(400)]
    (tmp_path / "RS_2024-02.zst").write_bytes(zstd_ndjson(subs))
    (tmp_path / "RC_2024-02.zst").write_bytes(zstd_ndjson(replies))
    dumps = [tmp_path / "RS_2024-02.zst", tmp_path / "RC_2024-02.zst"]
    assert sum(p.stat().st_size for p in dumps) * reddit.EXPANSION_ESTIMATE < 40_000   # one bucket by the guess
    held, threads = [], reddit.PushshiftReader._threads
    monkeypatch.setattr(reddit.PushshiftReader, "_threads",
                        lambda self, records: held.append(sum(map(reddit._record_bytes, records))) or threads(self, records))
    bounded = _ingest(tmp_path / "bounded", dumps, bucket_target_bytes=40_000)
    one_thread = 1_000  # a submission and its reply, as measured
    assert sum(held) > 200_000 and len(held) >= 5 and max(held) <= 40_000 + one_thread
    held.clear()
    whole = _ingest(tmp_path / "whole", dumps)
    assert len(held) == 1   # the default target holds the month in one bucket
    for table in ("documents", "dialogue_candidates"):
        assert pl.read_parquet(bounded.tables[table]).sort("id").equals(pl.read_parquet(whole.tables[table]).sort("id"))


def test_dump_month():
    from pathlib import Path

    assert dump_month(Path("RS_2024-01.zst")) == "2024-01" and dump_month(Path("RC_2024-01.zst")) == "2024-01"
    assert dump_month(Path("notes.zst")) is None


def test_a_corrupt_frame_counts_the_records_it_hides(tmp_path):
    import random

    rng = random.Random(0)
    comments = [comment(f"k{n}", "p1", "t3_p1", " ".join(f"{rng.getrandbits(40):x}" for _ in range(8)), f"user{n}")
                for n in range(4000)]  # text that does not compress away: the frame spans many reads
    data = bytearray(zstd_ndjson(comments, window_log=31))  # one frame, as Pushshift writes a month
    middle = len(data) // 2
    data[middle : middle + 64] = b"\xff" * 64  # garbage inside the frame: everything after it is unreadable
    dumps = [tmp_path / "RS_2023-10.zst", tmp_path / "RC_2023-10.zst"]
    dumps[0].write_bytes(zstd_ndjson([submission("p1", "Boxes")]))
    dumps[1].write_bytes(bytes(data))
    stats = _ingest(tmp_path, dumps).stats
    assert stats.bad["corrupt_zstd"] == 1  # (and the line it cut in two is invalid JSON)
    assert 0.2 < stats.lost_bytes / stats.input_bytes < 0.8
    assert 1000 < stats.estimated_lost_records < 4000  # about half of the month, not one record
    assert stats.bad_share > 0.2
