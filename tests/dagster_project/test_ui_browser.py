"""The Dagster web UI as a user opens it: `dagster dev` on this workspace, read by headless Chromium."""

import os
from pathlib import Path

from tests.servers import Browser, chromium_or_skip, dagster_dev

ROOT = Path(__file__).resolve().parents[2]


GROUPS = {
    "ingest": ["cc_documents", "book_documents", "reddit_threads"],
    "curate": ["filtered_documents", "deduplicated_documents", "curation_report"],
    "dialogue": ["personality_dialogues", "emotion_dialogues", "memory_dialogues"],
    "tokenize": ["rosie_tokenizer", "pretrain_shards", "dialogue_shards", "bootstrap_tokenizer",
                 "bootstrap_dialogue_shards"],
    "train": ["base_model", "personality_model", "rosie_model", "bootstrap_personality_model", "bootstrap_rosie_model"],
    "evaluate": ["model_evaluation", "registered_model", "bootstrap_evaluation", "bootstrap_registered_model",
                 "scorecard_comparison"],
}


def test_dagster_ui_shows_the_asset_graph(tmp_path):
    chromium = chromium_or_skip()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster"), "ROSIE_HOME": str(tmp_path / "rosie")}
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dagster_dev(env, ROOT) as base:
        browser = Browser(chromium, tmp_path / "profile")
        try:
            lineage = browser.text_after(f"{base}/asset-groups", list(GROUPS), 180)
            assert all(group in lineage for group in GROUPS), lineage[:2000]
            assets = [name for names in GROUPS.values() for name in names]
            catalog = browser.text_after(f"{base}/assets", assets, 120)
            missing = [name for name in assets if name not in catalog]
            assert not missing, f"the asset catalog lacks {missing}"
        finally:
            browser.close()
