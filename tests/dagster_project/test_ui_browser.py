"""The Dagster web UI as a user opens it: `dagster dev` on this workspace, read by headless Chromium."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.servers import Browser, chromium_or_skip, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


GROUPS = {
    "ingest": ["cc_documents", "book_documents", "reddit_threads"],
    "curate": ["filtered_documents", "deduplicated_documents", "curation_report"],
    "dialogue": ["personality_dialogues", "emotion_dialogues", "memory_dialogues"],
    "tokenize": ["rosie_tokenizer", "pretrain_shards", "dialogue_shards"],
    "train": ["base_model", "personality_model", "rosie_model"],
    "evaluate": ["model_evaluation", "registered_model"],
}


def test_dagster_ui_shows_the_asset_graph(tmp_path):
    chromium = chromium_or_skip()
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster"), "ROSIE_HOME": str(tmp_path / "rosie")}
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    server = subprocess.Popen([str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml",
                               "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info", 240)
        browser = Browser(chromium, tmp_path / "profile")
        lineage = browser.text_after(f"http://127.0.0.1:{port}/asset-groups", list(GROUPS), 180)
        assert all(group in lineage for group in GROUPS), lineage[:2000]
        assets = [name for names in GROUPS.values() for name in names]
        catalog = browser.text_after(f"http://127.0.0.1:{port}/assets", assets, 120)
        missing = [name for name in assets if name not in catalog]
        assert not missing, f"the asset catalog lacks {missing}"
    finally:
        if browser is not None:
            browser.close()
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
