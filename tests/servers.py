"""Helpers for tests that start servers and read them as a user would: free ports, waiting for a URL,
and headless Chromium (Debian's package, installed by .ci/run) driven over the DevTools protocol."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving_in_thread(app, port: int) -> Iterator[None]:
    """An ASGI app on 127.0.0.1:``port`` under uvicorn in a thread of this process, so a test can reach the
    server's own objects (its model worker, its queue) while clients talk to it over real sockets."""
    import uvicorn

    running = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    while not running.started and thread.is_alive():
        time.sleep(0.05)
    try:
        yield
    finally:
        running.should_exit = True
        thread.join(timeout=30)


def wait_for(url: str, seconds: float) -> None:
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
        port = free_port()
        self.process = subprocess.Popen([chromium, *CHROMIUM_FLAGS, f"--remote-debugging-port={port}",
                                         f"--user-data-dir={profile}", "--window-size=1600,2000", "about:blank"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(f"http://127.0.0.1:{port}/json/version", 60)
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

    def evaluate(self, expression: str) -> object:
        """The value of a JavaScript expression in the page (promises awaited)."""
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return answer.get("result", {}).get("value")

    def text_after(self, url: str, wanted: list[str], seconds: float) -> str:
        self.call("Page.navigate", url=url)
        deadline, text = time.monotonic() + seconds, ""
        while time.monotonic() < deadline:
            text = self.evaluate("document.body ? document.body.innerText : ''") or ""
            if all(name in text for name in wanted):
                break
            time.sleep(1)
        return text

    def close(self) -> None:
        self.socket.close()
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def chromium_or_skip() -> str:
    """Chromium's path; a skip without it, a failure when CI requires it (ROSIE_REQUIRE_BROWSER)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("ROSIE_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required (ROSIE_REQUIRE_BROWSER is set) but not installed")
        pytest.skip("Chromium not installed (CI installs Debian's chromium)")
    return chromium


@contextmanager
def dagster_dev(env: dict[str, str], cwd: Path) -> Iterator[str]:
    """``dagster dev`` on this workspace with ``env`` (DAGSTER_HOME, ROSIE_HOME); yields its base URL once it
    answers, stops the whole process group after."""
    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("dagster")), "dev", "-w", "workspace.yaml",
                               "-h", "127.0.0.1", "-p", str(port)], cwd=cwd, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info", 240)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
