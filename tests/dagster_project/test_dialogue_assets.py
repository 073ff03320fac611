"""The dialogue group and dialogue_shards materialized for real into a temporary Dagster home."""

import base64
import json

import dagster as dg

from dagster_project.definitions import build_definitions
from tests.fixtures import png_with_text

SMALL = {
    "personality_dialogues": {"config": {"target": 400, "chitchat_limit": 60}},
    "emotion_dialogues": {"config": {"chitchat_limit": 200, "gold_permille": 300}},
    "memory_dialogues": {"config": {"count": 120, "distractor_conversations": 40}},
    "rosie_tokenizer": {"config": {"vocab_size": 600}},
    "pretrain_shards": {"config": {"seq_len": 32, "val_permille": 300}},
    "dialogue_shards": {"config": {"seq_len": 128}},
}


def test_dialogue_group_and_shards(home, instance):
    landing = home.landing_dir("dialogue")
    card = {"spec": "chara_card_v2", "data": {"name": "Pip", "first_mes": "Hi! I'm Pip, so happy to meet you!"}}
    (landing / "pip.png").write_bytes(png_with_text({"chara": base64.b64encode(json.dumps(card).encode())}))
    (landing / "photo.png").write_bytes(png_with_text({"Comment": b"holiday"}))  # no card: skipped, counted
    (landing / "log.jsonl").write_text(json.dumps({"user_name": "Ann", "character_name": "Pip"}) + "\n{oops\n")
    (landing / "goemotions.tsv").write_text("".join(f"Example {i} makes me so happy!\t17\tc{i}\n" for i in range(30))
                                            + "".join(f"Why is sample {i} like this?\t7\td{i}\n" for i in range(30)))
    defs = build_definitions(str(home.root))
    for partitions, key in [("cc_files", "iana.warc.gz"), ("book_files", "pg-rosie.txt"), ("reddit_months", "2023-11")]:
        instance.add_dynamic_partitions(partitions, [key])
    ingest = [("cc_documents", "iana.warc.gz"), ("book_documents", "pg-rosie.txt"), ("reddit_threads", "2023-11")]
    for asset, partition in ingest:
        assert dg.materialize(defs.assets, selection=[asset], partition_key=partition, instance=instance,
                              resources=defs.resources).success
    selection = ["filtered_documents", "deduplicated_documents", "curation_report", "personality_dialogues",
                 "emotion_dialogues", "memory_dialogues", "rosie_tokenizer", "pretrain_shards", "dialogue_shards"]
    result = dg.materialize(defs.assets, selection=selection, instance=instance, resources=defs.resources,
                            run_config={"ops": SMALL})
    assert result.success
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    failed = [key for key, passed in checks.items() if not passed]
    assert not failed, failed

    personality = result.asset_materializations_for_node("personality_dialogues")[0].metadata
    assert "png_without_card" in personality["skipped_by_reason"].value and "invalid_json" in personality["skipped_by_reason"].value
    personas = json.loads(((home.lake / "personality_dialogues") / "personas.json").read_text())
    assert personas == {"Rosie": 0, "Pip": 1}
    emotion = result.asset_materializations_for_node("emotion_dialogues")[0].metadata
    assert "gold" in emotion["splits"].value
    shards = result.asset_materializations_for_node("dialogue_shards")[0].metadata
    assert shards["dagster/row_count"].value > 400
    root = (home.lake / "dialogue_shards")
    gold = json.loads((root / "emotion_memory" / "gold" / "manifest.json").read_text())
    assert gold["emotions"].keys() <= {"happy", "curious"} and gold["rows"] > 0
    for phase in ("personality", "emotion_memory"):
        assert json.loads((root / phase / "train" / "manifest.json").read_text())["rows"] > 0
