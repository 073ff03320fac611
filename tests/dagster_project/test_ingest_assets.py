import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl

from dagster_project.assets.ingest import INGEST_ASSETS
from dagster_project.definitions import build_definitions, defs
from dagster_project.resources import RosieHomeResource
from dagster_project.schedules import DATA_REFRESH_SCHEDULES
from dagster_project.sensors import landing_sensor
from tests.fixtures import zstd_ndjson

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_load_with_expected_graph():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {
        "cc_documents", "book_documents", "reddit_threads", "filtered_documents", "deduplicated_documents",
        "curation_report", "rosie_tokenizer", "pretrain_shards", "personality_dialogues", "emotion_dialogues",
        "memory_dialogues", "dialogue_shards", "bootstrap_tokenizer", "bootstrap_dialogue_shards", "base_model",
        "personality_model", "rosie_model", "model_evaluation", "registered_model", "bootstrap_personality_model",
        "bootstrap_rosie_model", "bootstrap_evaluation", "bootstrap_registered_model", "scorecard_comparison"}
    assert {k.name for k in graph.asset_check_keys} == {
        "bad_record_share", "schema", "non_empty", "duplicate_rate", "round_trip", "token_counts", "integrity",
        "no_empty_turns", "label_distribution", "no_leakage", "truncation", "persona", "knowledge", "memory",
        "emotion_fit", "events", "fluency", "leaked_tokens", "rosie_tokens"}
    assert defs.resolve_sensor_def("landing_sensor")
    assert {s.name for s in DATA_REFRESH_SCHEDULES} == {"data_refresh_common_crawl", "data_refresh_books",
                                                         "data_refresh_reddit"}


def test_workspace_loads_in_the_dagster_cli(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "ROSIE_HOME": str(tmp_path / "rosie")}
    done = subprocess.run([Path(sys.executable).with_name("dagster"), "definitions", "validate", "-w",
                           "workspace.yaml"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _sensor(instance, home):
    context = dg.build_sensor_context(instance=instance, resources={"rosie": RosieHomeResource(path=str(home.root))})
    return landing_sensor(context)


def _materialize(instance, home, asset, partition, config=None):
    return dg.materialize(
        INGEST_ASSETS, selection=[asset], partition_key=partition, instance=instance,
        resources={"rosie": RosieHomeResource(path=str(home.root))},
        run_config={"ops": {asset.key.to_user_string(): {"config": config}}} if config else None,
    )


def _checks(result):
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_sensor_adds_partitions_and_runs_then_assets_materialize(home, instance):
    result = _sensor(instance, home)
    added = {r.partitions_def_name: list(r.partition_keys) for r in result.dynamic_partitions_requests}
    assert added == {"cc_files": ["iana.warc.gz"], "book_files": ["pg-rosie.txt"], "reddit_months": ["2023-11"]}
    assert sorted((r.job_name, r.partition_key) for r in result.run_requests) == [
        ("ingest_books", "pg-rosie.txt"), ("ingest_common_crawl", "iana.warc.gz"), ("ingest_reddit", "2023-11")]
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))

    for run in result.run_requests:
        asset_name = {"ingest_books": "book_documents", "ingest_common_crawl": "cc_documents",
                      "ingest_reddit": "reddit_threads"}[run.job_name]
        asset = next(a for a in INGEST_ASSETS if a.key.to_user_string() == asset_name)
        outcome = _materialize(instance, home, asset, run.partition_key)
        assert outcome.success
        assert _checks(outcome) == {"bad_record_share": True, "schema": True, "non_empty": True}
        metadata = outcome.asset_materializations_for_node(asset.key.to_user_string())[0].metadata
        documents = pl.read_parquet(metadata["path"].value)
        assert documents.height == metadata["documents"].value > 0
        assert "| kind | reason | records |" in metadata["skipped_by_reason"].value or documents.height
        assert metadata["sample"].value.startswith("| title |")

    threads = pl.read_parquet(home.lake / "reddit_threads" / "2023-11" / "dialogue_candidates.parquet")
    assert threads.height == 1
    # an ingested, unchanged landing folder (by these runs, or by `rosie demo` outside the sensor) asks for nothing
    assert _sensor(instance, home).run_requests == []


def test_replaced_file_gets_a_new_run_key(home, instance):
    before = {r.partition_key: r.run_key for r in _sensor(instance, home).run_requests}
    book = home.landing_dir("books") / "pg-rosie.txt"
    book.write_text(book.read_text() + "\nA new last line.\n")
    os.utime(book, ns=(10**18, 10**18))
    after = {r.partition_key: r.run_key for r in _sensor(instance, home).run_requests}
    assert after["pg-rosie.txt"] != before["pg-rosie.txt"] and after["iana.warc.gz"] == before["iana.warc.gz"]


def test_mostly_bad_input_succeeds_with_warning_but_fails_the_check(home, instance):
    bad_month = home.landing_dir("reddit") / "RC_2023-12.zst"
    bad_month.write_bytes(zstd_ndjson([b"{broken"] * 9 + [{"id": "c1", "link_id": "t3_x", "parent_id": "t3_x",
                                                           "body": "fine", "author": "a", "score": 3}]))
    instance.add_dynamic_partitions("reddit_months", ["2023-12"])
    asset = next(a for a in INGEST_ASSETS if a.key.to_user_string() == "reddit_threads")
    outcome = _materialize(instance, home, asset, "2023-12", {"max_bad_share": 0.5})
    assert outcome.success  # the asset itself succeeds: bad records are skipped and counted
    assert _checks(outcome)["bad_record_share"] is False
    metadata = outcome.asset_materializations_for_node("reddit_threads")[0].metadata
    assert metadata["bad_records"].value == 9 and "quarantine" in metadata["warning"].value
    assert len((home.quarantine / "reddit_threads" / "2023-12.jsonl").read_text().splitlines()) == 9


def test_schedules_request_only_what_is_not_current(home, instance):
    # `with`: the context sets the instance's state storage for what runs inside it, and must unset it after
    with dg.build_schedule_context(instance=instance, resources={"rosie": RosieHomeResource(path=str(home.root))}) as context:
        schedules = {s.name.removeprefix("data_refresh_"): s for s in DATA_REFRESH_SCHEDULES}
        assert [r.partition_key for r in schedules["common_crawl"](context)] == ["iana.warc.gz"]
        assert set(instance.get_dynamic_partitions("cc_files")) == {"iana.warc.gz"}  # registered by the schedule
        asset = next(a for a in INGEST_ASSETS if a.key.to_user_string() == "cc_documents")
        assert _materialize(instance, home, asset, "iana.warc.gz").success
        assert schedules["common_crawl"](context) == []
        assert [r.partition_key for r in schedules["reddit"](context)] == ["2023-11"]


def test_build_definitions_points_at_a_home(home):
    built = build_definitions(str(home.root))
    assert built.resources["rosie"].home == home
