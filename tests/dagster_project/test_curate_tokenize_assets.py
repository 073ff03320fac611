"""The curate and tokenize groups materialized for real into a temporary Dagster home."""

import json

import dagster as dg
import polars as pl

from dagster_project.assets.curate import CURATE_ASSETS
from dagster_project.assets.dialogue import DIALOGUE_ASSETS
from dagster_project.assets.ingest import INGEST_ASSETS
from dagster_project.assets.tokenize import TOKENIZE_ASSETS
from dagster_project.resources import RosieHomeResource
from rosie_pipeline.tokenize.tokenizer import load_tokenizer

ALL = [*INGEST_ASSETS, *CURATE_ASSETS, *TOKENIZE_ASSETS, *DIALOGUE_ASSETS]
SMALL = {"ops": {"rosie_tokenizer": {"config": {"vocab_size": 400}},
                 "pretrain_shards": {"config": {"seq_len": 15, "val_permille": 300}}}}


def _materialize(instance, home, selection, partition=None, run_config=None):
    return dg.materialize(ALL, selection=selection, partition_key=partition, instance=instance,
                          resources={"rosie": RosieHomeResource(path=str(home.root))}, run_config=run_config)


def _ingest_everything(instance, home):
    for name, partitions, key in [("cc_documents", "cc_files", "iana.warc.gz"),
                                  ("book_documents", "book_files", "pg-rosie.txt"),
                                  ("reddit_threads", "reddit_months", "2023-11")]:
        instance.add_dynamic_partitions(partitions, [key])
        assert _materialize(instance, home, [name], key).success


def test_curate_and_tokenize_groups(home, instance):
    _ingest_everything(instance, home)
    selection = [a.key.to_user_string() for a in CURATE_ASSETS] + ["rosie_tokenizer", "pretrain_shards"]
    result = _materialize(instance, home, selection, run_config=SMALL)
    assert result.success
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert checks and all(checks.values()), checks

    def metadata(asset):
        return result.asset_materializations_for_node(asset)[0].metadata

    filtered = metadata("filtered_documents")
    assert 0 < filtered["documents_kept"].value < filtered["documents_in"].value
    assert "| kind | reason | records |" in filtered["drop_reasons"].value
    assert "| language |" in filtered["filters"].value and "docs/s" in filtered["filters"].value  # per-filter stats
    kept = pl.read_parquet(home.lake / "filtered_documents" / "*" / "*" / "documents.parquet")
    assert set(kept["source"]) == {"web", "books", "reddit"} and kept["lang"].to_list().count("en") == kept.height

    dedup = metadata("deduplicated_documents")
    assert dedup["documents_kept"].value == filtered["documents_kept"].value  # nothing in the sample repeats
    report = json.loads((home.lake / "curation_report" / "report.json").read_text())
    assert report["totals"]["final"] == dedup["documents_kept"].value
    assert "| source | ingested |" in metadata("curation_report")["report"].value

    tokenizer = load_tokenizer(home.tokenizer)
    assert tokenizer.get_vocab_size() == metadata("rosie_tokenizer")["vocab_size"].value <= 400
    shards = metadata("pretrain_shards")
    assert shards["train_tokens"].value > 0 and shards["val_tokens"].value > 0
    columns = {c.name: c.type for c in shards["dagster/column_schema"].value.columns}  # as written: 16 + 1 ids
    assert list(columns) == ["tokens"] and columns["tokens"] == "fixed_size_list<element: uint16>[16]"

    # a second run over the same lake changes nothing
    again = _materialize(instance, home, selection, run_config=SMALL)
    assert again.asset_materializations_for_node("deduplicated_documents")[0].metadata["new_documents"].value == 0
    assert again.asset_materializations_for_node("pretrain_shards")[0].metadata["rebuilt"].value is False
    assert again.asset_materializations_for_node("rosie_tokenizer")[0].metadata["trained_now"].value is False
