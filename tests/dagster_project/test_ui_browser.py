"""The Dagster web UI as a user opens it: `dagster dev` on this workspace, read by headless Chromium."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {seconds:.0f} s")


class Browser:
    """Headless Chromium driven over the DevTools protocol: navigate, then read the page's text."""

    def __init__(self, chromium: str, profile: Path) -> None:
        port = _free_port()
        self.process = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--remote-debugging-port={port}",
                                         f"--user-data-dir={profile}", "--window-size=1600,2000", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_for(f"http://127.0.0.1:{port}/json/version", 60)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as response:
            page = next(t for t in json.load(response) if t["type"] == "page")
        from websockets.sync.client import connect

        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None)
        self.next_id = 0

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                return message.get("result", {})

    def text_after(self, url: str, wanted: list[str], seconds: float) -> str:
        self.call("Page.navigate", url=url)
        deadline, text = time.monotonic() + seconds, ""
        while time.monotonic() < deadline:
            text = self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                             returnByValue=True).get("result", {}).get("value", "")
            if all(name in text for name in wanted):
                break
            time.sleep(1)
        return text

    def close(self) -> None:
        self.socket.close()
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


GROUPS = {
    "ingest": ["cc_documents", "book_documents", "reddit_threads"],
    "curate": ["filtered_documents", "deduplicated_documents", "curation_report"],
    "dialogue": ["personality_dialogues", "emotion_dialogues", "memory_dialogues"],
    "tokenize": ["rosie_tokenizer", "pretrain_shards", "dialogue_shards"],
    "train": ["base_model", "personality_model", "rosie_model"],
    "evaluate": ["model_evaluation", "registered_model"],
}


def test_dagster_ui_shows_the_asset_graph(tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("ROSIE_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required (ROSIE_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("Chromium not installed (CI installs Debian's chromium)")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path / "dagster"), "ROSIE_HOME": str(tmp_path / "rosie")}
    (tmp_path / "dagster").mkdir()
    (tmp_path / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    server = subprocess.Popen([str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml",
                               "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    browser = None
    try:
        _wait_for(f"http://127.0.0.1:{port}/server_info", 240)
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
