"""`rosie chat`, `rosie memory` and `rosie web` driven as a user would: a terminal through pexpect, the
web page through headless Chromium."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pexpect

from tests.servers import Browser, chromium_or_skip, free_port, wait_for

ROOT = Path(__file__).resolve().parents[3]
REPLY = r"rosie \((\w+) [^)]*\)> "


def rosie_command(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "dagster_project.cli", "--home", str(home), *args]


def spawn_chat(home: Path, model: Path) -> pexpect.spawn:
    command = rosie_command(home, "chat", "--model", str(model), "--seed", "0", "--max-tokens", "16")
    child = pexpect.spawn(command[0], command[1:], cwd=str(ROOT), encoding="utf-8", timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    child.expect("you> ")
    return child


def test_terminal_chat_reads_bytes_that_are_not_utf8(chat_model_dir, tmp_path):
    command = rosie_command(tmp_path / "home", "chat", "--model", str(chat_model_dir), "--seed", "0", "--max-tokens", "8")
    done = subprocess.run(command, input=b"caf\xe9 \xff\xfe hello\n/quit\n", capture_output=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert b"rosie (" in done.stdout and b"Traceback" not in done.stderr


def test_terminal_chat_streams_shows_emotions_takes_events_and_remembers(chat_model_dir, tmp_path):
    home = tmp_path / "home"
    child = spawn_chat(home, chat_model_dir)
    child.sendline("Hello Rosie!")
    child.expect(REPLY)
    assert child.match.group(1) in json.loads((chat_model_dir / "config.json").read_text())["emotions"]
    child.expect("you> ")
    child.sendline("/poke")
    child.expect(REPLY)
    child.expect("you> ")
    child.sendline("My name is Sam and I live in Oslo.")
    child.expect(r"remembered: The user's name is Sam\.; The user lives in Oslo\.")
    child.expect("you> ")
    child.sendline("/juggle")
    child.expect("unknown command /juggle")
    child.expect("you> ")
    child.sendline("x" * 5000)
    child.expect(r"rosie: the message has [\d,]+ characters; Rosie reads at most 4,000")
    child.expect("you> ")
    child.sendline("/reset")
    child.expect("new conversation")
    child.expect("you> ")
    child.sendline("/quit")
    child.expect("bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0

    restarted = spawn_chat(home, chat_model_dir)  # a new process: the memory is on disk
    restarted.sendline("/memory")
    restarted.expect(r"\[(\d+)\] fact  The user's name is Sam\.")
    name_id = restarted.match.group(1)
    restarted.expect("you> ")
    restarted.sendline(f"/forget {name_id}")
    restarted.expect("forgot 1 memory")
    restarted.expect("you> ")
    restarted.sendeof()
    restarted.expect(pexpect.EOF)
    restarted.close()
    assert restarted.exitstatus == 0

    listed = subprocess.run(rosie_command(home, "memory", "list", "--user", "local"), capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert "fact  The user lives in Oslo." in listed.stdout and "The user's name is Sam." not in listed.stdout
    forgot = subprocess.run(rosie_command(home, "memory", "forget", "--all"), capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert forgot.returncode == 0 and "forgot" in forgot.stdout
    listed = subprocess.run(rosie_command(home, "memory", "list"), capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "rosie: 0 memories" in listed.stdout


def test_terminal_retry_and_ratings_become_preference_data(chat_model_dir, tmp_path):
    from rosie_model.serving.feedback import FeedbackStore

    home = tmp_path / "home"
    child = spawn_chat(home, chat_model_dir)
    child.sendline("/good")
    child.expect("no reply to rate yet")
    child.expect("you> ")
    child.sendline("Tell me a joke!")
    child.expect(REPLY)
    child.expect("you> ")
    child.sendline("/retry")  # greedy settings: the retry samples, so it is another reply
    child.expect(REPLY)
    child.expect("you> ")
    child.sendline("/good")
    child.expect("noted")
    child.expect("you> ")
    child.sendline("Haha, another one?")  # going on from the retried reply keeps it
    child.expect(REPLY)
    child.expect("you> ")
    child.sendline("/bad")
    child.expect("noted")
    child.expect("you> ")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()

    store = FeedbackStore(home / "feedback" / "feedback.db")
    first, second = [store.feedback()[i].completion_id for i in (0, 2)]
    joke = store.completion(first)
    assert joke["messages"] == [{"role": "user", "content": "Tell me a joke!"}] and joke["user"] == "local"
    assert [c["index"] for c in joke["choices"]] == [0, 1]
    assert [(f.completion_id, f.choice, f.rating, f.kept) for f in store.feedback()] == [
        (first, 1, 1, False), (first, 1, None, True), (second, 0, -1, False)]
    followed = store.completion(second)["messages"]
    assert followed[1] == {"role": "rosie", "content": joke["choices"][1]["text"], "emotion": joke["choices"][1]["emotion"]}


def test_chat_with_a_missing_model_or_alias_says_so_without_a_traceback(tmp_path):
    for model, expected in ((str(tmp_path / "nowhere"), "no model folder at"),
                            ("models:/rosie@champion", "no registered model 'rosie'")):
        done = subprocess.run(rosie_command(tmp_path / "home", "chat", "--model", model), capture_output=True,
                              text=True, cwd=ROOT, timeout=120, input="")
        assert done.returncode == 2, done.stderr
        assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr


def _post(url: str, payload: dict) -> tuple[int, list[dict]]:
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, [json.loads(line) for line in response.read().decode().splitlines()]
    except urllib.error.HTTPError as error:
        return error.code, [json.loads(error.read())]


def test_web_chat_in_headless_chromium(chat_model_dir, tmp_path):
    chromium = chromium_or_skip()
    port = free_port()
    server = subprocess.Popen(rosie_command(tmp_path / "home", "web", "--model", str(chat_model_dir), "--port",
                                            str(port), "--seed", "0", "--max-tokens", "16"),
                              cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=(tmp_path / "server.log").open("wb"))  # a file: a full pipe cannot stall it
    browser = None
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/api/info", 120)
        browser = Browser(chromium, tmp_path / "profile")
        browser.text_after(f"{base}/", ["Rosie", "/poke"], 60)
        browser.evaluate("document.getElementById('message').value = 'My name is Robin!';"
                         "document.getElementById('send').click()")
        deadline, done = time.monotonic() + 60, None
        while time.monotonic() < deadline and not done:
            done = browser.evaluate("(() => { const b = document.querySelector('.rosie[data-done]');"
                                    " return b && {emotion: b.dataset.emotion, text: b.querySelector('.text').textContent,"
                                    " face: document.getElementById('emotion').textContent}; })()")
            time.sleep(0.5)
        assert done, "no reply appeared on the page"
        info = json.loads(urllib.request.urlopen(f"{base}/api/info", timeout=10).read())
        assert done["emotion"] in info["emotions"] and done["face"] == done["emotion"]
        assert done["text"] and "<|" not in done["text"]
        assert info["model"] == str(chat_model_dir)
        browser.text_after(f"{base}/", ["Rosie", info["model"]], 60)  # the header is filled once /api/info answers
        assert browser.evaluate("document.getElementById('model').textContent") == info["model"]  # names what was asked for
        memory = json.loads(urllib.request.urlopen(f"{base}/api/memory", timeout=10).read())
        assert "The user's name is Robin." in [m["text"] for m in memory["memories"]]

        status, lines = _post(f"{base}/api/chat", {"session": "s", "event": "pet"})
        assert status == 200 and lines[0]["emotion"] and lines[-1]["done"]
        for payload, problem in (({"session": "s", "message": ""}, "empty"),
                                 ({"session": "s", "message": "y" * 100_000}, "100,000 characters"),
                                 ({"session": "s", "event": "juggle"}, "unknown event"),
                                 ({"session": "s"}, "either a 'message' or an 'event'")):
            status, lines = _post(f"{base}/api/chat", payload)
            assert status == 400 and problem in lines[0]["error"], lines
    finally:
        if browser is not None:
            browser.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert b"Traceback" not in (tmp_path / "server.log").read_bytes()
