"""New data flows downstream by declarative automation: curation, tokenization, then training."""

import datetime

import dagster as dg

from dagster_project.definitions import build_definitions


def test_new_data_flows_downstream_through_declarative_automation(home, instance):
    defs = build_definitions(str(home.root))
    afternoon = datetime.datetime(2026, 11, 21, 15, 0, tzinfo=datetime.timezone.utc)
    idle = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=afternoon)
    assert idle.total_requested == 0  # an empty deployment starts nothing
    instance.add_dynamic_partitions("cc_files", ["iana.warc.gz"])
    assert dg.materialize(defs.assets, selection=["cc_documents"], partition_key="iana.warc.gz", instance=instance,
                          resources=defs.resources).success
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=idle.cursor,
                                              evaluation_time=afternoon + datetime.timedelta(minutes=1))
    requested = {key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()
                 if first.get_num_requested(key)}
    # the whole affected chain at once, pretraining included; dialogue_shards (and the phases after it)
    # wait until the dialogue datasets exist
    assert requested == {"filtered_documents", "deduplicated_documents", "curation_report", "rosie_tokenizer",
                         "pretrain_shards", "base_model", "bootstrap_tokenizer"}

    for name in ("personality_dialogues", "emotion_dialogues", "memory_dialogues", "filtered_documents",
                 "deduplicated_documents", "curation_report", "rosie_tokenizer", "pretrain_shards"):
        instance.report_runless_asset_event(dg.AssetMaterialization(name))
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor,
                                              evaluation_time=afternoon + datetime.timedelta(minutes=5))
    # once the dialogue datasets exist, their shards follow (base_model was already handled in the first tick)
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()
            if after.get_num_requested(k)} == {"dialogue_shards"}


def test_automation_rebuilds_nothing_that_is_current(home, instance):
    """What `rosie demo` leaves behind (materialized outside any sensor) is current: the automation sensor's
    first tick, when `make ui` starts it, requests nothing."""
    defs = build_definitions(str(home.root))
    instance.add_dynamic_partitions("cc_files", ["iana.warc.gz"])
    assert dg.materialize(defs.assets, selection=["cc_documents"], partition_key="iana.warc.gz", instance=instance,
                          resources=defs.resources).success
    assert dg.materialize(defs.assets, selection=["filtered_documents", "deduplicated_documents"], instance=instance,
                          resources=defs.resources).success
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                              evaluation_time=datetime.datetime(2026, 11, 22, tzinfo=datetime.timezone.utc))
    requested = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys() if first.get_num_requested(k)}
    assert not requested & {"cc_documents", "filtered_documents", "deduplicated_documents"}
