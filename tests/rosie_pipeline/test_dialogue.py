import base64
import json
import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rosie_pipeline.chat_format import EMOTIONS, Turn, as_messages, render_text
from rosie_pipeline.curate.dedup import DedupIndex, DedupOptions
from rosie_pipeline.dialogue.emotion import read_dailydialog, read_empathetic, read_goemotions, weak_label
from rosie_pipeline.dialogue.importers import (
    Imported,
    PersonaRegistry,
    chitchat_conversations,
    read_characterai,
    read_card,
    read_landing_file,
    read_sillytavern,
)
from rosie_pipeline.dialogue.datasets import with_background_memory
from rosie_pipeline.dialogue.memory import FACT_KINDS, NOT_TOLD, memory_dialogues, random_fact
from rosie_pipeline.dialogue.personality import load_seed, personality_dialogues
from rosie_pipeline.dialogue.schema import content_hash, make_dialogue, turns_of
from rosie_pipeline.ingest.records import Rejected
from rosie_pipeline.tokenize.dialogue_shards import DialogueEncoder, DialogueShardOptions, write_dialogue_shards
from rosie_pipeline.tokenize.tokenizer import TokenizerOptions, load_tokenizer, save_tokenizer, train_tokenizer
from tests.fixtures import png_with_text

SYSTEM, SEED = load_seed()
CONVERSATION = [Turn("system", "You are Rosie."), Turn("user", "Hello!"), Turn("rosie", "Hey there! ✨", "happy"),
                Turn("event", "drag"), Turn("rosie", "Eep! Where are we going?", "surprised")]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tok")
    rows = list(personality_dialogues(SYSTEM, SEED, 300, 50))
    texts = [render_text(turns_of(r)) for r in rows]
    save_tokenizer(train_tokenizer(iter(texts), TokenizerOptions(vocab_size=800)), folder, TokenizerOptions())
    return folder


def test_chat_template_renders_exactly_like_the_python_renderer(tokenizer_dir):
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
    for memory, prompt in [(None, False), (["The user's name is Sam."], False), (None, True)]:
        expected = render_text(CONVERSATION, memory, add_generation_prompt=prompt)
        rendered = hf.apply_chat_template(as_messages(CONVERSATION), tokenize=False, add_generation_prompt=prompt,
                                          memory=memory)
        assert rendered == expected
    assert expected.endswith("<|rosie|>")
    with pytest.raises(ValueError):
        Turn("rosie", "hi", "grumpy")
    with pytest.raises(ValueError):
        Turn("event", "juggle")


def test_a_pretrained_tokenizer_keeps_its_own_chat_markup(tmp_path):
    """A tokenizer whose model was tuned on ChatML gets Rosie's tokens inside ChatML: her template renders exactly
    as the shard writer does, and her emotion token comes before <|im_start|>assistant so her words start where
    the pretrained model's replies always did."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from rosie_pipeline.chat_format import CHATML_FORMAT, SPECIAL_TOKENS
    from rosie_pipeline.tokenize.tokenizer import chat_format_of, save_tokenizer, use_native_chat_format

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator([render_text(CONVERSATION)] * 20, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|im_start|>", "<|im_end|>", *SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    save_tokenizer(tokenizer, tmp_path, TokenizerOptions())
    assert chat_format_of(tmp_path).name == "rosie"
    assert use_native_chat_format(tmp_path) == CHATML_FORMAT == chat_format_of(tmp_path)
    hf = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    for memory, prompt in [(None, False), (["The user's name is Sam."], False), (None, True)]:
        expected = render_text(CONVERSATION, memory, add_generation_prompt=prompt, fmt=CHATML_FORMAT)
        assert hf.apply_chat_template(as_messages(CONVERSATION), tokenize=False, add_generation_prompt=prompt,
                                      memory=memory) == expected
    assert "<|im_end|>\n<|emotion:happy|><|im_start|>assistant\nHey there!" in expected
    assert "*drags you across the screen*" in expected  # events read as what the user did
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["rosie_reply_start"] == "<|im_start|>assistant\n" and "<|im_end|>" in config["rosie_stop_tokens"]


def test_personality_expansion_is_varied_and_split():
    rows = list(personality_dialogues(SYSTEM, SEED, 2_000, 50))
    assert len(rows) == 2_000 and len(SEED) >= 70
    index = DedupIndex(None, DedupOptions())  # an independent pass: no near-duplicate pairs survive
    assert all(index.check(r["id"], "\n".join(t["text"] or t["event"] for t in r["turns"][1:])).kind == "unique" for r in rows)
    emotions = {t["emotion"] for r in rows for t in r["turns"] if t["speaker"] == "rosie"}
    assert emotions == set(EMOTIONS)
    share = sum(r["split"] == "val" for r in rows) / len(rows)
    assert 0.02 < share < 0.09
    seed_text = SEED[0].turns[-1].text
    assert any(t["text"] == seed_text for r in rows for t in r["turns"])


def test_sillytavern_log(tmp_path):
    log = tmp_path / "chat.jsonl"
    log.write_text("\n".join([
        json.dumps({"user_name": "Dana", "character_name": "Bella", "create_date": "2024-01-01"}),
        json.dumps({"name": "Dana", "is_user": True, "mes": "Hi Bella, mail me at dana@example.org!"}),
        json.dumps({"name": "Bella", "is_user": False, "mes": "Hello Dana! I'm so happy to see you!"}),
        "{broken",
        json.dumps({"name": "Bella", "is_user": False}),
    ]))
    items = list(read_sillytavern(log))
    dialogues = [i for i in items if isinstance(i, Imported)]
    assert sorted(i.reason for i in items if isinstance(i, Rejected)) == ["invalid_json", "missing_fields"]
    [dialogue] = dialogues
    assert dialogue.turns[0] == Turn("user", "Hi Rosie, mail me at user@example.com!")
    assert dialogue.turns[1] == Turn("rosie", "Hello You! I'm so happy to see you!", "happy")


def test_first_names_of_renamed_speakers_do_not_survive(tmp_path):
    log = tmp_path / "chat.jsonl"
    log.write_text("\n".join(json.dumps(line) for line in [
        {"user_name": "Dana Scully", "character_name": "Bella Swan"},
        {"is_user": True, "mes": "Bella, it's Dana. Call +44 20 7946 0958 or find u/dana_s."},
        {"is_user": False, "mes": "Dana Scully! Bella Swan is here, Dana."}]))
    [dialogue] = [i for i in read_sillytavern(log) if isinstance(i, Imported)]
    text = " ".join(t.text for t in dialogue.turns)
    assert not any(part in text for part in ("Dana", "Bella", "Scully", "Swan", "7946", "dana_s")), text
    assert dialogue.turns[1].text == "You! Rosie is here, You."


def test_character_cards_json_and_png(tmp_path):
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {
        "name": "Captain Fizz", "first_mes": "Ahoy! I'm Captain Fizz.",
        "mes_example": "<START>\n{{user}}: What do you do?\n{{char}}: I sail the seas, of course!"}}
    (tmp_path / "fizz.json").write_text(json.dumps(card))
    (tmp_path / "fizz.png").write_bytes(png_with_text({"chara": base64.b64encode(json.dumps(card).encode())}))
    (tmp_path / "plain.png").write_bytes(png_with_text({"Comment": b"just a picture"}))
    registry = PersonaRegistry(tmp_path / "personas.json")
    from_json = [i for i in read_card(tmp_path / "fizz.json", registry) if isinstance(i, Imported)]
    from_png = [i for i in read_card(tmp_path / "fizz.png", registry) if isinstance(i, Imported)]
    assert [t.text for i in from_json for t in i.turns] == [t.text for i in from_png for t in i.turns] == [
        "Ahoy! I'm Rosie.", "What do you do?", "I sail the seas, of course!"]
    assert {i.persona for i in from_json} == {1} and registry.ids == {"Rosie": 0, "Captain Fizz": 1}
    [problem] = list(read_card(tmp_path / "plain.png", registry))
    assert problem.reason == "png_without_card"


def test_cards_as_real_tools_write_them_compressed_or_not_v1_to_v3(tmp_path):
    """Pillow writes the text chunks the way card editors do: tEXt, zTXt (``zip=True``) and compressed iTXt.
    A V3 card's ``ccv3`` chunk is read before its V2 copy in ``chara``; a zip bomb in a chunk is no card."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    def card_png(name: str, chunks: list[tuple[str, dict | bytes, str]]) -> Path:
        info = PngInfo()
        for keyword, card, how in chunks:
            value = card if isinstance(card, bytes) else base64.b64encode(json.dumps(card).encode())
            if how == "itxt":
                info.add_itxt(keyword, value.decode("latin-1"), zip=True)
            else:
                info.add_text(keyword, value.decode("latin-1"), zip=how == "ztxt")
        path = tmp_path / name
        Image.new("RGB", (4, 6), (255, 200, 220)).save(path, pnginfo=info)
        return path

    v1 = {"name": "Old Tom", "first_mes": "Hello from Old Tom.", "mes_example": ""}
    v2 = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "Juno", "first_mes": "Hi, I'm Juno (v2)."}}
    v3 = {"spec": "chara_card_v3", "spec_version": "3.0", "data": {"name": "Juno", "first_mes": "Hi, I'm Juno (v3).",
                                                                    "group_only_greetings": [], "assets": []}}
    registry = PersonaRegistry(tmp_path / "personas.json")

    def greeting(path: Path) -> str:
        [imported] = [i for i in read_card(path, registry) if isinstance(i, Imported)]
        return imported.turns[0].text

    assert greeting(card_png("v1.png", [("chara", v1, "text")])) == "Hello from Rosie."
    assert greeting(card_png("v2z.png", [("chara", v2, "ztxt")])) == "Hi, I'm Rosie (v2)."
    assert greeting(card_png("v2i.png", [("chara", v2, "itxt")])) == "Hi, I'm Rosie (v2)."
    assert greeting(card_png("v3.png", [("chara", v2, "text"), ("ccv3", v3, "itxt")])) == "Hi, I'm Rosie (v3)."
    assert greeting(card_png("v3bad.png", [("ccv3", b"not base64 json", "text"), ("chara", v2, "text")])) == \
        "Hi, I'm Rosie (v2)."  # a broken V3 chunk falls back to the V2 copy
    info = PngInfo()
    info.add_text("chara", "A" * (64 << 20), zip=True)  # 64 MiB once inflated, a few KB on disk
    Image.new("RGB", (1, 1)).save(tmp_path / "bomb.png", pnginfo=info)
    assert (tmp_path / "bomb.png").stat().st_size < 1 << 20
    [problem] = list(read_card(tmp_path / "bomb.png", registry))
    assert problem.reason == "png_without_card"


def test_characterai_dump_and_dispatch(tmp_path):
    dump = {"info": {"character": {"name": "Sage"}}, "histories": {"histories": [{"msgs": [
        {"src": {"name": "Kim", "is_human": True}, "text": "Hey Sage, I'm Kim."},
        {"src": {"name": "Sage", "is_human": False}, "text": "Hi Kim! Lovely to meet you, thanks for coming."},
        {"src": {}, "text": "no speaker"}]}]}}
    path = tmp_path / "cai.json"
    path.write_text(json.dumps(dump))
    (tmp_path / "junk.json").write_text("not json")
    registry = PersonaRegistry(tmp_path / "personas.json")
    items = list(read_landing_file(path, registry))
    [dialogue] = [i for i in items if isinstance(i, Imported)]
    assert [t.text for t in dialogue.turns] == ["Hey Rosie, I'm You.", "Hi You! Lovely to meet you, thanks for coming."]
    assert [i.reason for i in items if isinstance(i, Rejected)] == ["missing_fields"]
    assert [i.reason for i in read_landing_file(tmp_path / "junk.json", registry)] == ["invalid_json"]
    again = [i for i in read_characterai(path, registry) if isinstance(i, Imported)]
    assert [i.persona for i in again] == [1] and registry.ids == {"Rosie": 0, "Sage": 1}  # the same persona id


def test_chitchat_is_real_and_alternates():
    conversations = list(chitchat_conversations(limit=50))
    assert len(conversations) == 50
    for item in conversations:
        assert item.turns[0].role == "user" and all(t.text for t in item.turns)


def test_emotion_readers_map_labels_and_count_bad_rows(tmp_path):
    (tmp_path / "goemotions.tsv").write_text("I love this so much!\t18\tc1\nWhat is going on?\t6,27\tc2\n"
                                             "bad line without labels\nWeird\t99\tc3\n")
    items = list(read_goemotions(tmp_path / "goemotions.tsv"))
    assert [(i.turns[0].text, i.turns[0].emotion) for i in items if not isinstance(i, Rejected)] == [
        ("I love this so much!", "love"), ("What is going on?", "curious")]
    assert sorted(i.reason for i in items if isinstance(i, Rejected)) == ["goemotions_bad_line", "unknown_label"]

    (tmp_path / "dialogues_text.txt").write_text("Hi . __eou__ Oh no , I lost my keys ! __eou__\nA __eou__\n")
    (tmp_path / "dialogues_emotion.txt").write_text("0 5\n0 0\n")
    items = list(read_dailydialog(tmp_path / "dialogues_text.txt", tmp_path / "dialogues_emotion.txt"))
    assert items[0].turns == [Turn("user", "Hi ."), Turn("rosie", "Oh no , I lost my keys !", "sad")]
    assert items[1].reason == "dailydialog_mismatch"

    (tmp_path / "train.csv").write_text(
        "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags\n"
        "hit:1,1,terrified,x,1,I heard a noise at night_comma_ so scary,,\n"
        "hit:1,2,terrified,x,2,Oh no! Are you okay?,,\n"
        "hit:2,1,bewildered,x,1,Huh,,\n")
    items = list(read_empathetic(tmp_path / "train.csv"))
    assert items[0].turns[0].text == "I heard a noise at night, so scary"
    assert items[0].turns[1] == Turn("rosie", "Oh no! Are you okay?", "scared")
    assert items[1].reason == "unknown_label"


def test_weak_labeller_abstains_when_unsure():
    assert weak_label("Yay, this is awesome!").emotion == "happy"
    assert weak_label("I'm so scared and worried").emotion == "scared"
    assert weak_label("The table is brown.").emotion is None
    assert weak_label("happy but also sad").emotion is None


def test_memory_dialogues_keep_facts_out_of_the_turns_and_among_others():
    distractors = list(chitchat_conversations(limit=30))
    rows = list(memory_dialogues(SYSTEM, distractors, 300, 100))
    assert len(rows) == 300
    mixed = not_told = 0
    for row in rows:
        text = " ".join(t["text"] for t in row["turns"])
        facts = [line for line in row["memory"] if not line.startswith("The user said: ")]
        assert facts and not any(fact in text for fact in row["memory"])  # only the memory block can answer
        assert row["turns"][-2]["speaker"] == "user" and row["turns"][-1]["speaker"] == "rosie"
        questions = [t["text"] for t in row["turns"] if t["speaker"] == "user" and t["text"].endswith("?")]
        mixed += len(row["memory"]) > len(questions)  # more in the block than is asked: she has to pick
        not_told += row["turns"][-1]["text"] in NOT_TOLD
    assert mixed > 100 and 10 < not_told < 60
    from rosie_model.serving.memory_store import extract_facts

    for row in rows:  # as the store recalls: never a fact beside the turn that told it
        lines = set(row["memory"])
        for line in row["memory"]:
            told = extract_facts(line.removeprefix("The user said: ")) if line.startswith("The user said: ") else []
            assert not told or not all(f.text in lines for f in told)
    assert any("grandma" in fact for row in rows for fact in row["memory"] if not fact.startswith("The user said"))
    assert all("my grandma" not in fact for row in rows for fact in row["memory"]
               if not fact.startswith("The user said"))  # their grandma, not Rosie's
    assert {r["split"] for r in rows} == {"train", "val"}


def test_memory_training_facts_are_written_as_the_memory_store_writes_them():
    """What the model reads in training is what recall hands it in a chat: the same line for the same fact."""
    from rosie_model.serving.memory_store import extract_facts

    rng = random.Random(0)
    facts = [random_fact(rng, kind) for kind in FACT_KINDS for _ in range(40)]
    written = [fact for fact in facts if fact.memory in {f.text for f in extract_facts(fact.statement)}]
    assert len(written) >= 0.99 * len(facts)
    names = {f.memory for f in facts if f.kind == "name"}
    assert len(names) > 30  # names no list holds, so recall copies instead of guessing a familiar one


def test_background_memory_rides_on_a_share_of_other_dialogues():
    said = ["I went hiking on Sunday.", "Pizza or pasta?"]
    rows = [make_dialogue("test", f"d{i}", CONVERSATION, split="train") for i in range(400)]
    carried = [with_background_memory(row, said, 300) for row in rows]
    share = sum(bool(r["memory"]) for r in carried) / len(rows)
    assert 0.2 < share < 0.4
    assert carried == [with_background_memory(row, said, 300) for row in rows]  # the same on a rebuild
    gold = make_dialogue("test", "g", CONVERSATION, split="gold")
    assert all(not with_background_memory(gold, said, 1000)["memory"] for _ in range(3))  # evaluation rows stay bare


def test_dialogue_shards_mask_one_rosie_turn_per_row(tokenizer_dir, tmp_path):
    tokenizer = load_tokenizer(tokenizer_dir)
    dialogue = make_dialogue("test", "d1", CONVERSATION, persona=2, memory=["The user's name is Sam."], split="train")
    rows = DialogueEncoder(tokenizer, 64).encode(dialogue)
    assert len(rows) == 2
    masked = [tokenizer.decode([t for t, m in zip(r.tokens, r.loss_mask) if m], skip_special_tokens=False)
              for r in rows]
    assert masked == ["<|emotion:happy|>Hey there! ✨\n<|event:drag|>", "<|emotion:surprised|>Eep! Where are we going?\n<|endoftext|>"]
    assert [EMOTIONS[r.emotion] for r in rows] == ["happy", "surprised"] and rows[0].persona == 2
    assert tokenizer.decode(rows[0].memory[0]) == "The user's name is Sam."
    whole = tokenizer.encode(render_text(CONVERSATION), add_special_tokens=False).ids
    assert [t for t in rows[1].tokens if t != tokenizer.token_to_id("<|pad|>")] == whole  # same ids as one string

    longest = max(len(tokenizer.encode(t.text, add_special_tokens=False).ids) for t in CONVERSATION if t.role == "rosie")
    short = DialogueEncoder(tokenizer, longest).encode(dialogue)  # too long: context dropped, then the turn cut
    assert all(len(r.tokens) == longest + 1 for r in short) and any(r.truncated for r in short)

    rows = [make_dialogue("t", str(i), CONVERSATION[:3] if i % 2 else CONVERSATION, split=("train", "val")[i % 2])
            for i in range(20)]
    manifests = write_dialogue_shards({"personality": rows}, tokenizer, "sha", tmp_path / "ds",
                                      DialogueShardOptions(seq_len=48))["personality"]
    assert manifests["train"]["rows"] == 20 and manifests["val"]["rows"] == 10
    table = pq.read_table(tmp_path / "ds" / "personality" / "train" / manifests["train"]["shards"][0]["file"])
    assert table.column_names == ["tokens", "loss_mask", "emotion", "persona", "memory", "dialogue_id"]
    assert content_hash(CONVERSATION) != content_hash(CONVERSATION[:3])
    assert Path(tmp_path / "ds" / "personality" / "val" / "manifest.json").exists()


def test_bootstrap_shards_render_facts_in_the_context_and_keep_them_longest(tokenizer_dir):
    tokenizer = load_tokenizer(tokenizer_dir)
    facts = ["The user's name is Sam."]
    dialogue = make_dialogue("test", "d1", [Turn("system", SYSTEM), *CONVERSATION[1:]], memory=facts, split="train")
    memory_id = tokenizer.token_to_id("<|memory|>")
    wide = DialogueEncoder(tokenizer, 256, memory_in_context=True).encode(dialogue)
    assert all(memory_id in row.tokens for row in wide) and all(memory_id not in row.tokens
                                                                for row in DialogueEncoder(tokenizer, 256).encode(dialogue))
    text = tokenizer.decode(wide[0].tokens, skip_special_tokens=False)
    assert "<|memory|>The user's name is Sam.\n" in text and text.index("<|system|>") < text.index("<|memory|>")
    narrow = DialogueEncoder(tokenizer, 40, memory_in_context=True).encode(dialogue)[-1]  # no room for the system block
    narrow_text = tokenizer.decode(narrow.tokens, skip_special_tokens=False)
    assert "<|system|>" not in narrow_text and "<|memory|>The user's name is Sam." in narrow_text
