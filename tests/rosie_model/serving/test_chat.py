"""The chat API on a real (tiny, untrained) model folder: decoding, streaming, cleaning, memory, int8,
and the errors a user can cause."""

import dataclasses
import os
import sqlite3

import numpy as np
import pytest
import torch
from torch import nn

from rosie_model.serving.chat import (ChatError, ChatInputError, ModelNotFound, Rosie, clean_reply, cut_at_sentence_end,
                              quantize_int8)
from rosie_model.serving.generate import GREEDY, ReplyDecoder, SamplingOptions, load_rosie
from rosie_model.serving.memory_store import MemoryStore, MemoryStoreError, extract_facts

HELLO = [{"role": "user", "content": "Hello Rosie!"}]


@pytest.fixture()
def rosie(chat_model_dir, tmp_path):
    loaded = Rosie.load(chat_model_dir, memory_path=tmp_path / "memory.db",
                        options=SamplingOptions(max_new_tokens=24, seed=0))
    yield loaded
    loaded.close()


class Scripted(nn.Module):
    """An output layer that makes the model say a fixed token sequence (then keeps repeating the last)."""

    def __init__(self, ids: list[int], vocab: int) -> None:
        super().__init__()
        self.ids, self.vocab, self.step = ids, vocab, 0

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*hidden.shape[:-1], self.vocab)
        logits[..., self.ids[min(self.step, len(self.ids) - 1)]] = 10.0
        self.step += 1
        return logits


def scripted(rosie: Rosie, text: str, then: str | None) -> None:
    tokenizer = rosie.loaded.tokenizer
    ids = tokenizer.encode(text, add_special_tokens=False).ids + ([tokenizer.token_to_id(then)] if then else [])
    rosie.loaded.model.output_head = Scripted(ids, rosie.loaded.model.config.vocab_size)


def test_reply_has_text_and_an_emotion_from_the_head(rosie):
    reply = rosie.reply(HELLO)
    assert reply.emotion in rosie.loaded.model.config.emotions
    assert reply.text and "<|" not in reply.text and "\n" not in reply.text
    assert 0 < reply.tokens <= 24


def test_streamed_pieces_make_the_reply_and_seeds_repeat(rosie):
    stream = rosie.reply(HELLO, stream=True)
    emotion_before = stream.emotion
    pieces = list(stream)
    assert emotion_before == stream.result.emotion
    assert "".join(pieces).split() == stream.result.text.split()
    assert rosie.reply(HELLO).text == stream.result.text  # same seed, same reply


def test_reply_stops_at_the_next_speaker_and_keeps_the_sentence(rosie):
    scripted(rosie, "Hi there! I am Rosie.", "<|user|>")
    reply = rosie.reply(HELLO)
    assert reply.text == "Hi there! I am Rosie." and not reply.truncated


def test_leaked_speaker_labels_are_cut(rosie):
    scripted(rosie, "Rosie: Nice to see you. User: hello again", None)
    assert rosie.reply(HELLO).text == "Nice to see you."
    assert clean_reply("Sure thing!\n<|user|>what") == ("Sure thing!", True)
    assert clean_reply("Assistant: hi") == ("hi", False)
    assert clean_reply("The user: Waffles!") == ("The user: Waffles!", False)  # not a label: no sentence starts there


def test_a_reply_at_the_limit_is_cut_at_a_sentence_end_and_the_stream_agrees(rosie):
    words = "I love naps. They are cosy! And then I dream about big fluffy clouds and tiny"
    scripted(rosie, words + " more words" * 20, None)
    stream = rosie.reply(HELLO, stream=True, options=SamplingOptions(max_new_tokens=20, temperature=0))
    shown = "".join(stream)
    reply = stream.result
    assert reply.truncated and reply.tokens == 20
    assert reply.text.endswith((".", "!")), reply.text
    assert shown.split() == reply.text.split()
    assert cut_at_sentence_end("Yay! ✨ and then") == "Yay! ✨"
    assert cut_at_sentence_end("no end here") == "no end here…"


def test_greedy_decoding_matches_a_plain_forward_pass(chat_model_dir):
    loaded = load_rosie(chat_model_dir)
    prompt = loaded.render(HELLO)
    decoder = ReplyDecoder(loaded, prompt, dataclasses.replace(GREEDY, max_new_tokens=6), stops=set())
    produced = list(decoder)
    ids = prompt + [decoder.emotion_id]
    with torch.no_grad():
        for token in produced:  # no cache: the whole sequence again each time
            logits = loaded.model.lm_logits(loaded.model(torch.tensor([ids]), persona=torch.tensor([0])))
            assert int(logits[0, -1].argmax()) == token
            ids.append(token)


def test_long_term_memory_learns_recalls_and_survives_a_restart(chat_model_dir, tmp_path):
    store = tmp_path / "memory.db"
    first = Rosie.load(chat_model_dir, memory_path=store)
    reply = first.reply([{"role": "user", "content": "My name is Sam and my favourite colour is teal."}], user_id="sam")
    assert set(reply.learned) == {"The user's name is Sam.", "The user's favourite colour is teal."}
    first.close()

    again = Rosie.load(chat_model_dir, memory_path=store)  # a new process would see the same file
    reply = again.reply([{"role": "user", "content": "What's my favourite colour?"}], user_id="sam")
    assert reply.memories[0] == "The user's favourite colour is teal."
    other = again.reply([{"role": "user", "content": "What's my favourite colour?"}], user_id="alex")
    assert not other.memories  # memories are per user
    texts = [m.text for m in again.memory.list("sam")]
    assert "The user said: What's my favourite colour?" in texts
    again.reply([{"role": "user", "content": "Actually, my name is Samantha."}], user_id="sam")
    names = [m.text for m in again.memory.list("sam") if m.slot == "name"]
    assert names == ["The user's name is Samantha."]  # a slot keeps the newest fact
    count = len(again.memory.list("sam"))
    assert again.memory.forget("sam") == count and again.memory.list("sam") == []
    again.close()


def test_recall_leaves_out_a_turn_that_only_restates_a_recalled_fact(tmp_path):
    from rosie_model.serving.memory_store import MemoryStore, extract_facts

    store = MemoryStore(tmp_path / "m.db")
    for message in ("My name is Desmond.", "I went to the beach with my sister."):
        store.remember_facts("u", extract_facts(message))
        store.remember_turn("u", message)
    recalled = [m.text for m in store.recall("u", "What's my name, and where did I go?", k=3)]
    store.close()
    assert "The user's name is Desmond." in recalled
    assert "The user said: My name is Desmond." not in recalled          # the fact, not the first-person copy
    assert "The user said: I went to the beach with my sister." in recalled   # a turn with no rule's fact stays


def test_recalled_memories_reach_memory_attention(chat_model_dir, tmp_path):
    rosie = Rosie.load(chat_model_dir, memory_path=tmp_path / "m.db")
    for block in rosie.loaded.model.blocks:  # open the gates so the bank visibly changes the states
        if block.memory is not None:
            block.memory.gate.data.fill_(1.0)
    rosie.reply([{"role": "user", "content": "I live in Oslo."}], user_id="u")
    prompt = rosie.loaded.render(HELLO)
    with_memory = ReplyDecoder(rosie.loaded, prompt, GREEDY, memory=["The user lives in Oslo."])
    without = ReplyDecoder(rosie.loaded, prompt, GREEDY)
    assert with_memory.bank is not None and without.bank is None
    assert not torch.equal(with_memory.prompt_state, without.prompt_state)
    assert "The user lives in Oslo." in rosie.reply(HELLO, user_id="u").memories


def test_fact_rules_write_facts_as_the_training_data_does():
    facts = {f.text for f in extract_facts("Hi, I'm called Mo. I have a dog called Pepper and I live in Lima!")}
    assert facts == {"The user's name is Mo.", "The user has a dog named Pepper.", "The user lives in Lima."}
    assert extract_facts("I like you") == []
    assert extract_facts("what a day") == []
    # the ways people name a pet, and both spellings of one slot, make the same fact
    assert [f.text for f in extract_facts("My dog is called Biscuit.")] == ["The user has a dog named Biscuit."]
    assert [f.text for f in extract_facts("My guinea pig's name is Nibbles")] == ["The user has a guinea pig named Nibbles."]
    assert extract_facts("My favorite color is blue.") == extract_facts("My favourite colour is blue.")
    assert [f.text for f in extract_facts("I'm going to my grandma's house on Sunday")] == \
        ["The user is going to their grandma's house on Sunday."]  # hers, not Rosie's


@pytest.mark.parametrize("messages, event, problem", [
    ([{"role": "user", "content": ""}], None, "empty"),
    ([{"role": "user", "content": "   \n"}], None, "empty"),
    ([{"role": "user", "content": "x" * 100_000}], None, "100,000 characters"),
    ([], "juggle", "unknown event 'juggle'"),
    ([{"role": "robot", "content": "hi"}], None, "role 'robot'"),
    ([{"role": "user", "content": "hi"}, {"role": "rosie", "content": "hey"}], None, "nothing to reply to"),
    ([], None, "nothing to reply to"),
])
def test_bad_input_gets_a_clear_error(rosie, messages, event, problem):
    with pytest.raises(ChatInputError, match=problem):
        rosie.reply(messages, event=event, user_id="u")
    assert rosie.memory.list("u") == []  # nothing half-stored


def test_events_are_answered(rosie):
    reply = rosie.reply([], event="poke")
    assert reply.text and reply.emotion


def test_missing_or_corrupt_models_get_clear_errors(chat_model_dir, tmp_path):
    with pytest.raises(ModelNotFound, match="no model folder"):
        Rosie.load(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match="missing config.json"):
        Rosie.load(tmp_path / "empty")
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in chat_model_dir.rglob("*"):
        if item.is_file():
            (broken / item.relative_to(chat_model_dir)).parent.mkdir(parents=True, exist_ok=True)
            (broken / item.relative_to(chat_model_dir)).write_bytes(item.read_bytes())
    (broken / "weights" / "base.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ModelNotFound, match="cannot load .*base.safetensors"):
        Rosie.load(broken)
    (broken / "config.json").write_text("{ nope")
    with pytest.raises(ModelNotFound, match="config.json"):
        Rosie.load(broken)
    with pytest.raises(ModelNotFound, match="not a registry URI"):
        Rosie.load("models:/rosie")


def test_a_corrupt_memory_store_is_refused_and_left_alone(chat_model_dir, tmp_path):
    store = tmp_path / "memory.db"
    store.write_bytes(b"this is not sqlite" * 100)
    rosie = Rosie.load(chat_model_dir, memory_path=store)
    with pytest.raises(ChatError, match="not a readable SQLite database"):
        rosie.reply(HELLO, user_id="u")
    assert store.read_bytes() == b"this is not sqlite" * 100
    with pytest.raises(MemoryStoreError):
        MemoryStore(store)


def test_a_damaged_payload_is_re_embedded_or_reported_not_raised_raw(tmp_path):
    store = MemoryStore(tmp_path / "memory.db", embed=lambda texts: np.ones((len(texts), 4), np.float32) / 2,
                        model_tag="m")
    store.remember_facts("u", extract_facts("My name is Ada."))
    store.db.execute("UPDATE memories SET vector = ?", (b"\x00\x01\x02",))  # a truncated vector blob
    assert [m.text for m in store.recall("u", "what is my name?")] == ["The user's name is Ada."]
    store.db.execute("DROP TABLE memories")  # damage sqlite itself cannot hide
    with pytest.raises(MemoryStoreError, match="damaged .*move it aside"):
        store.list("u")


def test_listing_memories_leaves_a_healthy_store_as_it_was(tmp_path):
    path = tmp_path / "memory.db"
    writer = MemoryStore(path)
    writer.remember_facts("u", extract_facts("My name is Ada."))
    writer.close()
    sqlite3.connect(path).execute("PRAGMA journal_mode=DELETE").fetchone()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert [m.text for m in MemoryStore(path, read_only=True).list("u")] == ["The user's name is Ada."]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert MemoryStore(tmp_path / "none.db", read_only=True).list() == [] and not (tmp_path / "none.db").exists()


def test_a_killed_write_leaves_the_store_consistent(tmp_path):
    store = MemoryStore(tmp_path / "memory.db")
    store.remember_facts("u", extract_facts("My name is Ada."))
    store.db.execute("BEGIN IMMEDIATE")  # a writer that dies mid-transaction never commits
    store.db.execute("DELETE FROM memories")
    store.db.close()
    reopened = MemoryStore(tmp_path / "memory.db")
    assert [m.text for m in reopened.list("u")] == ["The user's name is Ada."]
    assert sqlite3.connect(tmp_path / "memory.db").execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_int8_quantization_keeps_the_logits_close(chat_model_dir):
    loaded = load_rosie(chat_model_dir)
    ids = torch.tensor([loaded.render(HELLO)])
    with torch.no_grad():
        reference = loaded.model.lm_logits(loaded.model(ids))
        quantized = quantize_int8(loaded.model)
        approx = quantized.lm_logits(quantized(ids))
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in quantized.modules())
    error = (approx - reference).norm() / reference.norm()
    assert error < 0.05, error
    assert Rosie.load(chat_model_dir, int8=True).reply(HELLO).text


def test_sampling_draws_only_from_the_top_k_and_top_p_nucleus():
    from rosie_model.serving.generate import pick_token

    logits = torch.tensor([4.0, 3.9, 3.0, 2.0, 1.0, 0.5, 0.0, -1.0])   # probabilities fall off
    options = SamplingOptions(temperature=1.0, top_k=5, top_p=0.8, repetition_penalty=1.0)
    scaled = torch.softmax(logits[:5], 0)
    nucleus = {i for i in range(5) if float(scaled[:i].sum()) < 0.8}   # the top-5's smallest set past 0.8
    generator = torch.Generator().manual_seed(0)
    drawn = {pick_token(logits.clone(), [], options, generator) for _ in range(400)}
    assert drawn == nucleus == {0, 1, 2}
    everything = SamplingOptions(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
    assert len({pick_token(logits.clone(), [], everything, generator) for _ in range(2000)}) == len(logits)


def test_a_long_conversation_keeps_its_newest_turns_in_a_few_renders(rosie, monkeypatch):
    turns = [{"role": "user" if i % 2 == 0 else "rosie", "content": f"message number {i} " * 6} for i in range(81)]
    renders, render = [], rosie.loaded.render
    monkeypatch.setattr(rosie.loaded, "render", lambda *args, **kw: renders.append(1) or render(*args, **kw))
    ids = rosie.prompt(turns, [], 32)
    room, system = rosie.loaded.prompt_room(32), [{"role": "system", "content": rosie.loaded.system_prompt}]
    kept = next(d for d in range(len(turns)) if len(render(system + turns[d:])) <= room)   # one turn at a time
    assert ids == render(system + turns[kept:]) and kept > 0
    assert len(renders) <= 9   # bisection over 80 turns, not one render per dropped turn


def test_sampling_options_are_checked():
    with pytest.raises(ValueError, match="top_p"):
        SamplingOptions(top_p=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingOptions(max_new_tokens=0)


def test_a_downloaded_mlflow_model_folder_loads(chat_model_dir, tmp_path):
    downloaded = tmp_path / "downloaded"
    (downloaded / "artifacts").mkdir(parents=True)
    (downloaded / "artifacts" / "rosie_model").symlink_to(chat_model_dir, target_is_directory=True)
    (downloaded / "MLmodel").write_text("flavors:\n  python_function:\n    artifacts:\n      model_dir:\n"
                                        "        path: artifacts/rosie_model\n")
    assert Rosie.load(downloaded).loaded.folder == downloaded / "artifacts" / "rosie_model"


#: What a registered version's MLmodel looked like before rosie_model moved into its rooms (the pyfunc was
#: rosie_model/pyfunc.py then); the model folder inside it is what every reader loads, so it still loads.
PRE_ROOMS_MLMODEL = """flavors:
  python_function:
    artifacts:
      model_dir:
        path: artifacts/model
        uri: /somewhere/models/rosie_model
    code: code
    loader_module: mlflow.pyfunc.loaders.code_model
    model_code_path: /somewhere/rosie_model/pyfunc.py
    python_version: 3.11.7
    streamable: false
mlflow_version: 3.17.2
"""


def test_a_version_registered_before_the_rooms_still_loads(chat_model_dir, tmp_path, monkeypatch):
    import shutil

    import mlflow

    monkeypatch.setenv("ROSIE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    logged = tmp_path / "logged"
    shutil.copytree(chat_model_dir, logged / "artifacts" / "model")
    (logged / "MLmodel").write_text(PRE_ROOMS_MLMODEL)
    from rosie_model.core.layout import tracking_uri

    client = mlflow.MlflowClient(tracking_uri())
    client.create_registered_model("rosie")
    version = client.create_model_version("rosie", source=logged.as_uri())
    client.set_registered_model_alias("rosie", "champion", version.version)
    rosie = Rosie.load("models:/rosie@champion", memory_path=tmp_path / "memory.db")
    assert "MLFLOW_TRACKING_URI" not in os.environ  # looking a model up does not repoint every later process
    assert rosie.loaded.folder.resolve() == (logged / "artifacts" / "model").resolve()
    assert rosie.label == f"models:/rosie@champion (version {version.version})"  # what rosie web and chat show
    from rosie_model.serving.api import served_ids

    assert served_ids(rosie) == ["rosie", "rosie@champion", f"rosie/{version.version}"]  # what /v1/models lists
    assert rosie.reply(HELLO).emotion


def test_the_same_fact_told_twice_is_kept_once(tmp_path):
    store = MemoryStore(tmp_path / "memory.db")
    for message in ("I love pizza.", "I love Pizza!", "My dog is called Rex.", "I have a dog called Rex."):
        store.remember_facts("u", extract_facts(message))
    assert [m.text for m in store.list("u")] == ["The user likes Pizza.", "The user has a dog named Rex."]
