"""``rosie run`` as a user runs it: a subprocess over a landing folder, in a temporary home."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl

ROSIE = str(Path(sys.executable).with_name("rosie"))


def _rosie(home, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "ROSIE_HOME")}
    return subprocess.run([ROSIE, "--home", str(home.root), *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_rosie_run_step_group(home):
    done = _rosie(home, "run", "group:ingest")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 runs succeeded" in done.stdout
    assert "[1/3] " in done.stdout and "[3/3] " in done.stdout  # which run of how many, as it starts
    for asset, partition in [("cc_documents", "iana.warc.gz"), ("book_documents", "pg-rosie.txt"),
                             ("reddit_threads", "2023-11")]:
        frame = pl.read_parquet(home.lake / asset / partition / "documents.parquet")
        assert frame.height > 0 and frame["id"].n_unique() == frame.height
    # the runs live in the home's own Dagster instance, where the web UI shows them
    with dg.DagsterInstance.from_config(str(home.dagster)) as instance:
        assert len(instance.get_runs()) == 3
        assert set(instance.get_dynamic_partitions("cc_files")) == {"iana.warc.gz"}
    again = _rosie(home, "run", "group:ingest")
    assert again.returncode == 0 and "unchanged since the last run" in again.stderr


def test_rosie_run_launches_a_named_job_with_a_run_config_file(home, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("ops:\n  book_documents:\n    config:\n      min_text_chars: 1000000000\n")
    done = _rosie(home, "run", "--job", "ingest_books", "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    # the job's selection only, with the file's setting: every book is now too short, and the check says so
    assert "1 runs succeeded" in done.stdout and "checks failed: book_documents:non_empty" in done.stdout
    assert not (home.lake / "cc_documents").exists()
    unknown = _rosie(home, "run", "--job", "no_such_job")
    assert unknown.returncode == 2 and "bootstrap_training" in unknown.stderr
    config.write_text("- not run config\n")
    assert "is not run config" in _rosie(home, "run", "key:book_documents", "--config", str(config)).stderr


def test_rosie_run_rejects_an_unknown_selection(home):
    done = _rosie(home, "run", "key:no_such_asset")
    assert done.returncode == 2 and "matches no asset" in done.stderr


def test_rosie_run_data_groups(home):
    """Every data stage headless; training, evaluation and registry are covered in test_train_evaluate."""
    done = _rosie(home, "run", "group:ingest or group:curate or group:dialogue or group:tokenize")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "runs succeeded" in done.stdout and "FAIL" not in done.stdout
    assert (home.tokenizer / "tokenizer.json").exists() and (home.tokenizer / "tokenizer_config.json").exists()
    assert (home.lake / "curation_report" / "report.md").read_text().startswith("| source | ingested |")
    assert (home.lake / "pretrain_shards" / "train" / "manifest.json").exists()
    assert (home.lake / "dialogue_shards" / "personality" / "train" / "manifest.json").exists()
    # the default 2048-token rows are longer than this tiny sample: the failed check is named, not hidden
    assert "checks failed: pretrain_shards:token_counts" in done.stdout


def test_a_killed_run_does_not_block_the_gpu_pool(home, instance):
    import subprocess as sp

    from dagster_project.headless import RUN_PID_TAG, release_abandoned_runs

    gone = sp.Popen(["true"])
    gone.wait()
    abandoned = instance.add_run(dg.DagsterRun(job_name="__ephemeral_asset_job__", run_id="abandoned0001",
                                               status=dg.DagsterRunStatus.STARTED,
                                               tags={RUN_PID_TAG: str(gone.pid)}))
    instance.event_log_storage.set_concurrency_slots("gpu", 1)
    instance.event_log_storage.claim_concurrency_slot("gpu", abandoned.run_id, "base_model")
    assert instance.event_log_storage.get_concurrency_info("gpu").active_slot_count == 1
    assert release_abandoned_runs(instance) == [abandoned.run_id]
    assert instance.get_run_by_id(abandoned.run_id).status == dg.DagsterRunStatus.FAILURE
    assert instance.event_log_storage.get_concurrency_info("gpu").active_slot_count == 0
    # a claim left by a run that no longer exists at all (its process died mid-write) is freed too
    instance.event_log_storage.claim_concurrency_slot("gpu", "no-such-run", "base_model")
    assert release_abandoned_runs(instance) == ["no-such-run"]
    assert instance.event_log_storage.get_concurrency_info("gpu").active_slot_count == 0
    # a kill between creating a run and launching it: NOT_STARTED forever, unless released
    never = instance.add_run(dg.DagsterRun(job_name="__ephemeral_asset_job__", run_id="neverstarted1",
                                           status=dg.DagsterRunStatus.NOT_STARTED, tags={RUN_PID_TAG: str(gone.pid)}))
    assert release_abandoned_runs(instance) == [never.run_id]
    assert instance.get_run_by_id(never.run_id).status == dg.DagsterRunStatus.FAILURE
