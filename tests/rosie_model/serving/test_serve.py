"""`rosie serve` as the frontends meet it: the official `openai` package against a live server on 127.0.0.1."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.rosie_model.serving.test_chat_interfaces import ROOT, rosie_command
from tests.servers import free_port, wait_for


def start_serve(home: Path, model: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(rosie_command(home, "serve", "--model", str(model), "--port", str(port), "--seed", "0",
                                             "--max-tokens", "12", *extra),
                               cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{base}/health", 120)
    except TimeoutError:
        stop(process)
        raise AssertionError(process.stderr.read().decode() if process.stderr else "rosie serve did not start")
    return process, base


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def served(chat_model_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("serve") / "home"
    process, base = start_serve(home, chat_model_dir)
    try:
        yield openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120), base, home
    finally:
        stop(process)


def test_models_are_listed_by_the_names_a_client_may_ask_for(served):
    client, _, _ = served
    assert "rosie" in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])


def test_a_chat_completion_carries_her_emotion_memories_and_usage(served, chat_model_dir):
    client, _, _ = served
    emotions = json.loads((chat_model_dir / "config.json").read_text())["emotions"]
    done = client.chat.completions.create(model="rosie", user="robin", messages=[
        {"role": "system", "content": "You are a pirate."},  # a frontend's prompt: ignored unless asked for
        {"role": "user", "content": "My name is Robin!"}])
    [choice] = done.choices
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert "<|" not in choice.message.content and choice.finish_reason in ("stop", "length")
    extras = choice.model_extra["rosie"]
    assert extras["emotion"] in emotions and "The user's name is Robin." in extras["learned"]
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    again = client.chat.completions.create(model="rosie", user="robin",
                                           messages=[{"role": "user", "content": "Do you remember me?"}])
    assert "The user's name is Robin." in again.choices[0].model_extra["rosie"]["memories"]  # a new conversation


def test_streaming_sends_the_emotion_first_then_the_text_then_done(served):
    client, _, _ = served
    chunks = list(client.chat.completions.create(model="rosie", stream=True, stream_options={"include_usage": True},
                                                 messages=[{"role": "user", "content": "Tell me a story"}]))
    first, last_choice = chunks[0].choices[0], [c for c in chunks if c.choices][-1].choices[0]
    assert first.delta.role == "assistant" and first.model_extra["rosie"]["emotion"]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and last_choice.finish_reason in ("stop", "length") and "memories" in last_choice.model_extra["rosie"]
    assert chunks[-1].usage.completion_tokens > 0 and not chunks[-1].choices
    plain = client.chat.completions.create(model="rosie", messages=[{"role": "user", "content": "Tell me a story"}])
    assert text.strip() == plain.choices[0].message.content  # the same seed, the same words, streamed or not


def test_stop_strings_and_alternatives(served):
    client, _, _ = served
    whole = client.chat.completions.create(model="rosie", messages=[{"role": "user", "content": "Hello there"}])
    text = whole.choices[0].message.content
    word = text.split()[1] if len(text.split()) > 1 else text[1:3]
    cut = client.chat.completions.create(model="rosie", stop=[word], messages=[{"role": "user", "content": "Hello there"}])
    assert cut.choices[0].message.content == text[:text.index(word)].strip() and cut.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="rosie", stop=[word], stream=True, messages=[{"role": "user", "content": "Hello there"}]) if c.choices)
    assert streamed.strip() == cut.choices[0].message.content
    two = client.chat.completions.create(model="rosie", n=2, seed=7, messages=[{"role": "user", "content": "Hi!"}])
    assert [c.index for c in two.choices] == [0, 1] and all(c.model_extra["rosie"]["emotion"] for c in two.choices)


def test_text_completions_for_text_mode_frontends_stream_too(served):
    client, _, _ = served
    whole = client.completions.create(model="rosie", prompt="Hello there", max_tokens=12)
    assert whole.object == "text_completion" and whole.choices[0].text and whole.usage.completion_tokens > 0
    chunks = list(client.completions.create(model="rosie", prompt="Hello there", max_tokens=12, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[0].choices[0].text == "" and chunks[0].choices[0].model_extra["rosie"]["emotion"]  # emotion first
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.choices[0].text  # same greedy reply
    assert chunks[-2].choices[0].finish_reason in ("stop", "length") and chunks[-1].usage.total_tokens > 0


def test_a_text_mode_prompt_in_her_markup_is_read_as_its_turns(served):
    """What SillyTavern's text-completion mode sends with Rosie's instruct preset (``rosie card``): her markup
    read back into turns (the frontend's system block dropped, she keeps hers); other text is one message."""
    client, _, home = served
    prompt = ("<|system|>You are a pirate.\n<|user|>My name is Sam.\nI like <|boats|>.\n<|rosie|>Hi Sam!\n"
              "<|event:poke|>\n<|user|>What is my name?\n<|rosie|>")
    done = client.completions.create(model="rosie", prompt=prompt, max_tokens=8)
    plain = client.completions.create(model="rosie", prompt="Hello there", max_tokens=8)
    with sqlite3.connect(home / "feedback" / "feedback.db") as db:
        stored = {i: json.loads(m) for i, m in db.execute("SELECT id, messages FROM completions WHERE id IN (?, ?)",
                                                          (done.id, plain.id))}
    assert stored[done.id] == [{"role": "user", "content": "My name is Sam.\nI like <|boats|>."},
                               {"role": "rosie", "content": "Hi Sam!"}, {"role": "event", "content": "poke"},
                               {"role": "user", "content": "What is my name?"}]
    assert stored[plain.id] == [{"role": "user", "content": "Hello there"}]


def test_an_event_rides_in_the_extra_field(served):
    client, _, _ = served
    poked = client.chat.completions.create(model="rosie", messages=[], extra_body={"rosie": {"event": "poke"}})
    assert poked.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="unknown event 'juggle'"):
        client.chat.completions.create(model="rosie", messages=[], extra_body={"rosie": {"event": "juggle"}})


def test_feedback_is_stored_with_the_conversation_it_rates(served):
    client, base, home = served
    done = client.chat.completions.create(model="rosie", n=2, messages=[{"role": "user", "content": "Sing!"}])
    thumbs = httpx.post(f"{base}/v1/feedback", json={"id": done.id, "choice": 1, "rating": "up", "kept": True})
    assert thumbs.status_code == 200 and thumbs.json()["kept"] is True
    with sqlite3.connect(home / "feedback" / "feedback.db") as db:
        [(messages, choices)] = db.execute("SELECT messages, choices FROM completions WHERE id = ?", (done.id,)).fetchall()
        assert db.execute("SELECT choice, rating, kept FROM feedback WHERE completion_id = ?", (done.id,)).fetchall() == [
            (1, 1, 1)]
    assert json.loads(messages) == [{"role": "user", "content": "Sing!"}] and len(json.loads(choices)) == 2
    unknown = httpx.post(f"{base}/v1/feedback", json={"id": "chatcmpl-none", "rating": "down"})
    assert unknown.status_code == 404 and "no completion" in unknown.json()["error"]["message"]
    assert httpx.post(f"{base}/v1/feedback", json={"id": done.id, "choice": 5, "rating": "up"}).status_code == 400


def test_a_regenerate_adds_an_alternative_to_the_completion_it_redoes(served):
    """A swipe in a frontend: the same conversation again with ``alternative_of``; the reply joins the earlier
    completion (same id, the next alternative), so a rating or a kept swipe can name it."""
    client, base, home = served
    asked = [{"role": "user", "content": "Tell me about the sea."}]
    first = client.chat.completions.create(model="rosie", messages=asked)
    again = client.chat.completions.create(model="rosie", messages=asked, extra_body={"rosie": {"alternative_of": first.id}})
    assert again.id == first.id and again.choices[0].model_extra["rosie"]["alternative"] == 1
    streamed = list(client.chat.completions.create(model="rosie", messages=asked, stream=True,
                                                   extra_body={"rosie": {"alternative_of": first.id}}))
    assert {c.id for c in streamed} == {first.id}
    assert [c for c in streamed if c.choices][-1].choices[0].model_extra["rosie"]["alternative"] == 2
    kept = httpx.post(f"{base}/v1/feedback", json={"id": first.id, "choice": 2, "kept": True})
    assert kept.status_code == 200
    with sqlite3.connect(home / "feedback" / "feedback.db") as db:
        [(choices,)] = db.execute("SELECT choices FROM completions WHERE id = ?", (first.id,)).fetchall()
    replies = json.loads(choices)
    assert [c["index"] for c in replies] == [0, 1, 2] and replies[0]["text"] == first.choices[0].message.content
    assert replies[1]["text"] == again.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="answered another conversation"):
        client.chat.completions.create(model="rosie", messages=[{"role": "user", "content": "Something else"}],
                                       extra_body={"rosie": {"alternative_of": first.id}})
    with pytest.raises(openai.NotFoundError, match="no completion"):
        client.chat.completions.create(model="rosie", messages=asked, extra_body={"rosie": {"alternative_of": "chatcmpl-x"}})


def test_her_memories_of_a_user_can_be_listed_and_forgotten(served):
    client, base, _ = served
    client.chat.completions.create(model="rosie", user="kim", messages=[{"role": "user", "content": "I live in Oslo."}])
    client.chat.completions.create(model="rosie", user="kim", messages=[{"role": "user", "content": "My name is Kim."}])
    listed = httpx.get(f"{base}/api/memories", params={"user": "kim"}).json()["memories"]
    oslo = [m for m in listed if "Oslo" in m["text"]]
    assert oslo and any("Kim" in m["text"] for m in listed)
    assert httpx.delete(f"{base}/api/memories/{oslo[0]['id']}", params={"user": "kim"}).json()["forgotten"] == 1
    assert httpx.delete(f"{base}/api/memories/{oslo[0]['id']}", params={"user": "kim"}).status_code == 404
    left = httpx.get(f"{base}/api/memories", params={"user": "kim"}).json()["memories"]
    assert [m for m in listed if m["id"] != oslo[0]["id"]] == left
    assert httpx.delete(f"{base}/api/memories", params={"user": "kim"}).json()["forgotten"] == len(left)
    assert httpx.get(f"{base}/api/memories", params={"user": "kim"}).json()["memories"] == []
    assert httpx.get(f"{base}/api/memories").status_code == 400  # whose memories: a user is required


def test_errors_come_in_openais_shape_never_as_a_traceback(served):
    client, base, _ = served
    with pytest.raises(openai.BadRequestError, match="the message is empty"):
        client.chat.completions.create(model="rosie", messages=[{"role": "user", "content": "  "}])
    with pytest.raises(openai.BadRequestError, match="temperature"):
        client.chat.completions.create(model="rosie", temperature=5, messages=[{"role": "user", "content": "Hi"}])
    big = httpx.post(f"{base}/v1/chat/completions", content=b"{" + b" " * (2 << 20) + b"}",
                     headers={"Content-Type": "application/json"})
    assert big.status_code == 413 and set(big.json()["error"]) == {"message", "type", "param", "code"}
    broken = httpx.post(f"{base}/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert broken.status_code == 400 and "Traceback" not in broken.text
    rebound = httpx.get(f"{base}/v1/models", headers={"Host": "evil.example:80"})
    assert rebound.status_code == 403  # a DNS-rebound page of another site
    page = httpx.get(f"{base}/v1/models", headers={"Origin": "http://evil.example"})
    assert page.status_code == 403


def test_tokenize_detokenize_and_classify(served, chat_model_dir):
    _, base, _ = served
    counted = httpx.post(f"{base}/tokenize", json={"prompt": "Hello <|user|> there"}).json()
    assert counted["count"] == len(counted["tokens"]) > 3 and counted["max_model_len"] == 256
    assert httpx.post(f"{base}/detokenize", json={"tokens": counted["tokens"]}).json()["prompt"] == "Hello <|user|> there"
    chat = httpx.post(f"{base}/tokenize", json={"messages": [{"role": "user", "content": "Hi"}]}).json()
    hi = httpx.post(f"{base}/tokenize", json={"prompt": "Hi"}).json()["count"]
    assert chat["count"] > hi  # the template's markup around the message
    emotions = json.loads((chat_model_dir / "config.json").read_text())["emotions"]
    ranked = httpx.post(f"{base}/api/classify", json={"text": "My cat died today."}).json()["classification"]
    assert {r["label"] for r in ranked} == set(emotions) and abs(sum(r["score"] for r in ranked) - 1) < 1e-3


def test_exposing_the_server_requires_an_api_key(chat_model_dir, tmp_path):
    refused = subprocess.run(rosie_command(tmp_path / "home", "serve", "--model", str(chat_model_dir), "--host", "0.0.0.0"),
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--api-key" in refused.stderr
    process, base = start_serve(tmp_path / "home", chat_model_dir, "--api-key", "sesame")
    try:
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).models.list()
        assert [m.id for m in openai.OpenAI(base_url=f"{base}/v1", api_key="sesame").models.list()][0] == "rosie"
    finally:
        stop(process)


def test_an_acknowledged_rating_survives_a_kill(tmp_path):
    """Feedback written one transaction at a time: kill -9 the writer, and every acknowledged row is there."""
    writer = subprocess.Popen([sys.executable, "-c", """
import sys
from pathlib import Path
from rosie_model.serving.feedback import FeedbackStore
store = FeedbackStore(Path(sys.argv[1]))
store.add_completion("c1", "rosie", None, [{"role": "user", "content": "hi"}], [{"index": 0, "text": "hey"}])
for n in range(100000):
    store.add_feedback("c1", 0, 1 if n % 2 else -1, False)
    print(n + 1, flush=True)
""", str(tmp_path / "feedback.db")], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    acknowledged = 0
    for line in writer.stdout:
        acknowledged = int(line)
        if acknowledged >= 50:
            writer.kill()
            break
    writer.wait(timeout=30)
    from rosie_model.serving.feedback import FeedbackStore

    assert len(FeedbackStore(tmp_path / "feedback.db").feedback()) >= acknowledged
