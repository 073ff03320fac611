import dataclasses
import os

import pytest

from rosie_pipeline.documents import DOCUMENT_SCHEMA, make_document
from rosie_pipeline.ingest.books import BookOptions
from rosie_pipeline.ingest.records import Row, bad
from rosie_pipeline.step import Record, committed_outputs, is_current, matches, run_step


def _rows(n, fail_at=None):
    for i in range(n):
        if i == fail_at:
            raise KeyboardInterrupt("killed")
        yield Row("documents", make_document(source="test", locator=str(i), text=f"document {i}"))
    yield bad("invalid_json", 7, "detail", b"{oops")


def _run(tmp_path, read, force=False):
    source = tmp_path / "input.txt"
    if not source.exists():
        source.write_text("input")
    return run_step(read, inputs=[source], out_dir=tmp_path / "out", schemas={"documents": DOCUMENT_SCHEMA},
                      quarantine_path=tmp_path / "q" / "input.jsonl", options=dataclasses.asdict(BookOptions()), force=force)


def test_second_run_is_a_no_op_until_the_input_changes(tmp_path):
    first = _run(tmp_path, lambda: _rows(5))
    assert not first.unchanged and first.stats.records_out == 5 and first.stats.bad_total == 1
    assert is_current(tmp_path / "out", [tmp_path / "input.txt"])
    second = _run(tmp_path, lambda: pytest.fail("an unchanged input must not be read again"))
    assert second.unchanged and second.stats.to_dict() == first.stats.to_dict()
    os.utime(tmp_path / "input.txt", ns=(1, 1))
    assert not is_current(tmp_path / "out", [tmp_path / "input.txt"])
    assert not _run(tmp_path, lambda: _rows(3)).unchanged
    assert _run(tmp_path, lambda: _rows(2), force=True).stats.records_out == 2


def test_killed_run_leaves_no_partial_output_and_reruns_cleanly(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, lambda: _rows(10_000, fail_at=6_000))
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not (tmp_path / "out" / "documents.parquet").exists()
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # no temp file left behind
    result = _run(tmp_path, lambda: _rows(10_000))
    assert result.stats.records_out == 10_000 and not result.unchanged


def test_a_record_vouches_only_for_what_it_names_and_only_once_committed(tmp_path):
    record, output = Record(tmp_path / "build.json"), tmp_path / "out.parquet"
    wanted = {"inputs": ["a"], "options": {"seq_len": 64}}
    assert record.current(wanted) is None  # nothing committed yet
    output.write_text("table")
    record.commit({**wanted, "rows": 3})
    assert record.current(wanted, [output]) == {**wanted, "rows": 3}
    assert record.current({**wanted, "options": {"seq_len": 128}}, [output]) is None  # other options
    assert record.current(wanted, [output, tmp_path / "missing.parquet"]) is None  # an output is gone
    (tmp_path / "build.json").write_text("{half a rec")  # a damaged record is no record
    assert record.current(wanted) is None and not matches(None, {})


def test_temp_files_of_dead_writers_are_cleared_and_live_ones_kept(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".documents.parquet.tmp-{int(dead.stdout)}"  # left by a SIGKILLed ingest
    live = out / f".documents.parquet.tmp-{os.getppid()}"  # a writer that is still running
    stale.write_bytes(b"half")
    live.write_bytes(b"busy")
    _run(tmp_path, lambda: _rows(3))
    assert not stale.exists() and live.exists()


def test_a_kill_between_the_table_renames_leaves_nothing_vouched_for(tmp_path, monkeypatch):
    import rosie_pipeline.parquet as parquet
    from rosie_pipeline.ingest.reddit import DIALOGUE_SCHEMA

    source = tmp_path / "input.txt"
    source.write_text("input")

    def rows(n):
        for i in range(n):
            yield Row("documents", make_document(source="t", locator=str(i), text=f"doc {i}"))
            yield Row("side", {"id": str(i), "source": "t", "thread_id": str(i), "turns": []}, consumed=0)

    def run(n):
        return run_step(lambda: rows(n), inputs=[source], out_dir=tmp_path / "parts" / "p1", quarantine_path=tmp_path / "q.jsonl",
                        schemas={"documents": DOCUMENT_SCHEMA, "side": DIALOGUE_SCHEMA}, options={})

    run(2)
    source.write_text("a new version of the input")
    renames = []

    def dying_replace(src, dst):
        renames.append(dst)
        if len(renames) == 2:
            raise KeyboardInterrupt("killed between the renames")
        os.replace(src, dst)

    monkeypatch.setattr(parquet.os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        run(5)
    monkeypatch.undo()
    # documents.parquet is new, side.parquet old: no record vouches for the mix, so no stage downstream reads it
    assert committed_outputs(tmp_path / "parts") == {}
    assert run(5).stats.records_out == 5 and list(committed_outputs(tmp_path / "parts")) == ["p1"]
