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


def _until(browser: Browser, expression: str, seconds: float = 60) -> object:
    """The first truthy value of a page expression, polled; fails when none comes within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if value := browser.evaluate(expression):
            return value
        time.sleep(0.3)
    raise AssertionError(f"the page never gave {expression!r}")


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_web_chat_in_headless_chromium(chat_model_dir, tmp_path):
    """The page on the OpenAI API: a streamed reply with her face, regenerate and swipe, a rating, an event,
    and her memories listed and forgotten, all as a user clicks them."""
    from rosie_model.serving.feedback import FeedbackStore

    chromium = chromium_or_skip()
    port, home = free_port(), tmp_path / "home"
    server = subprocess.Popen(rosie_command(home, "web", "--model", str(chat_model_dir), "--port", str(port),
                                            "--seed", "0", "--max-tokens", "16"),
                              cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=(tmp_path / "server.log").open("wb"))  # a file: a full pipe cannot stall it
    browser = None
    base = f"http://127.0.0.1:{port}"
    newest = "[...document.querySelectorAll('.rosie[data-done]')].at(-1)"
    try:
        wait_for(f"{base}/api/info", 120)
        info = _get(f"{base}/api/info")
        event = info["events"][0]
        browser = Browser(chromium, tmp_path / "profile")
        browser.text_after(f"{base}/", ["Rosie", f"/{event}", info["label"]], 60)
        assert browser.evaluate("document.getElementById('model').textContent") == info["label"] == str(chat_model_dir)
        assert browser.evaluate("document.getElementById('user').textContent") == info["user"] == "local"

        browser.evaluate("document.getElementById('message').value = 'My name is Robin!';"
                         "document.getElementById('send').click()")
        first = _until(browser, f"(() => {{ const b = {newest}; return b && {{emotion: b.dataset.emotion, "
                                "text: b.querySelector('.text').textContent, count: b.querySelector('.count').textContent, "
                                "face: document.getElementById('emotion').textContent}; })()")
        assert first["emotion"] in info["emotions"] and first["face"] == first["emotion"]
        assert first["text"] and "<|" not in first["text"] and first["count"] == "1/1"
        _until(browser, "[...document.querySelectorAll('#memories li')].some(li => li.textContent.includes('Robin'))")

        browser.evaluate(f"{newest}.querySelector('.regenerate').click()")  # a swipe: another reply to the same turn
        _until(browser, f"{newest}.querySelector('.count').textContent === '2/2'")
        browser.evaluate(f"{newest}.querySelector('.prev').click()")
        assert browser.evaluate(f"{newest}.querySelector('.count').textContent") == "1/2"
        assert browser.evaluate(f"{newest}.querySelector('.text').textContent") == first["text"]
        browser.evaluate(f"{newest}.querySelector('.up').click()")
        _until(browser, f"{newest}.querySelector('.up').getAttribute('aria-pressed') === 'true'")

        browser.evaluate(f"document.getElementById('event-{event}').click()")  # going on keeps the shown reply
        _until(browser, "document.querySelectorAll('.rosie[data-done]').length === 2")
        assert browser.evaluate("document.querySelector('.rosie .regenerate').disabled")  # only the newest swipes

        store = FeedbackStore(home / "feedback" / "feedback.db")
        rated = store.feedback()[0].completion_id
        assert [(f.completion_id, f.choice, f.rating, f.kept) for f in store.feedback()] == [
            (rated, 0, 1, False), (rated, 0, None, True)]
        swiped = store.completion(rated)
        assert swiped["messages"] == [{"role": "user", "content": "My name is Robin!"}]
        assert [c["index"] for c in swiped["choices"]] == [0, 1] and swiped["choices"][0]["text"] == first["text"]
        (poked,) = [store.completion(c) for c in store.completion_ids() if c != rated]
        assert poked["messages"][1]["content"] == first["text"] and poked["messages"][-1] == {"role": "event",
                                                                                              "content": event}

        fact = "The user's name is Robin."
        listed = "[...document.querySelectorAll('#memories li')].map(li => li.textContent)"
        browser.evaluate(f"[...document.querySelectorAll('#memories li')].find(li => li.textContent.startsWith({fact!r}))"
                         ".querySelector('.forget').click()")
        _until(browser, f"!{listed}.some(text => text.startsWith({fact!r}))")
        left = [m["text"] for m in _get(f"{base}/api/memories?user=local")["memories"]]
        assert fact not in left and left  # that one fact, not the rest
        browser.evaluate("window.confirm = () => true; document.getElementById('forget-all').click()")
        _until(browser, f"{listed}.length === 0")
        assert _get(f"{base}/api/memories?user=local")["memories"] == []
    finally:
        if browser is not None:
            browser.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert b"Traceback" not in (tmp_path / "server.log").read_bytes()
