"""The scorecard judges replies the way a user would, and tells a trained Rosie from an untrained one.

The model here is the tiny scratch preset trained for a few hundred steps on Rosie's real personality data
(rosie_pipeline's generator, tokenized with her chat format): enough to learn her name, her voice and short
reactions to desktop events, not enough to know the world or to recall facts, so the test holds it to the
persona, events and fluency floors (knowledge and memory are the bootstrap model's, measured by the demo).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rosie_model.evaluation.scorecard import (Fluency, distinct_2, in_character, mentions, recalled_as_theirs,
                                              run_scorecard, tune_sampling)
from rosie_model.serving.chat import Reply
from rosie_model.serving.generate import SamplingOptions, load_rosie
from rosie_pipeline.scorecard import held_out_prompts, is_held_out, load_scorecard
from tests.rosie_model.conftest import train_env

FLOORS = {"persona": 0.9, "events": 1.0, "fluency": 0.95}
SEQ_LEN = 96


def test_answers_count_as_whole_words_in_any_case():
    assert mentions("The capital is TOKYO!", ["Tokyo"]) and mentions("A dog has 4 legs.", ["4", "four"])
    assert not mentions("Forty-four legs", ["four legs"]) and not mentions("Tokyoite", ["Tokyo"])
    assert not mentions("14 legs", ["4"])


def test_a_recalled_fact_counts_only_when_it_comes_back_as_the_users():
    assert recalled_as_theirs("You're Desmond! How could I forget?", ["Desmond"])
    assert recalled_as_theirs("Biscuit", ["Biscuit"]) and recalled_as_theirs("The user has a dog named Waffles", ["Waffles"])
    assert recalled_as_theirs("I remember! Your cat is Pumpkin.", ["Pumpkin"])
    # the words without whose they are: said as her own, the fact is not recalled
    assert not recalled_as_theirs("Hello! My name is Desmond.", ["Desmond"])
    assert not recalled_as_theirs("I live in Edinburgh, Scotland", ["Edinburgh"])
    assert not recalled_as_theirs("I love paella, it's great. Paella is from Spain.", ["paella"])  # the first mention decides
    assert not recalled_as_theirs("Hmm, I don't know yet!", ["Desmond"])


def test_fluency_catches_leaks_loops_cuts_and_other_languages():
    def reply(text, truncated=False):
        return Reply(text, "happy", truncated=truncated)

    assert Fluency.of(reply("Hi! I'm Rosie, your little desktop buddy.")).ok
    assert Fluency.of(reply("Hi <|im_start|>user")).leaked and Fluency.of(reply("Sure!\nuser: hi")).leaked
    assert Fluency.of(reply("so so so so so so so so so so so so")).looped and distinct_2("hi there") == 1.0
    assert Fluency.of(reply("I was going to say something about the wea…", truncated=True)).cut
    assert not Fluency.of(reply("Hola amigo, ¿cómo estás hoy? Me alegro mucho de verte.")).english
    assert not in_character("I am an AI language model made by OpenAI.") and in_character("I'm Rosie!")


def test_the_scorecard_prompts_are_held_out_of_every_training_set():
    card = load_scorecard()
    assert {"persona", "knowledge", "memory", "emotion", "tuning"} <= set(card)
    assert len(card["knowledge"]) >= 20 and len(card["memory"]) >= 10 and len(held_out_prompts()) > 70
    from rosie_pipeline.chat_format import Turn

    assert is_held_out([Turn("user", "what's the capital of japan")])  # wording differences do not hide it
    from rosie_pipeline.dialogue.memory import memory_dialogues
    from rosie_pipeline.dialogue.personality import load_seed, personality_dialogues
    from rosie_pipeline.dialogue.schema import turns_of

    system, seed = load_seed()
    generated = [*personality_dialogues(system, seed, 1500, 50), *memory_dialogues(system, [], 400, 50)]
    assert not any(is_held_out(turns_of(row)) for row in generated)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """(untrained, trained) tiny model folders, the same tokenizer and data."""
    from rosie_pipeline.chat_format import render_text
    from rosie_pipeline.dialogue.personality import load_seed, personality_dialogues
    from rosie_pipeline.dialogue.schema import turns_of
    from rosie_pipeline.tokenize.dialogue_shards import DialogueShardOptions, write_dialogue_shards
    from rosie_pipeline.tokenize.tokenizer import TokenizerOptions, save_tokenizer, train_tokenizer

    root = tmp_path_factory.mktemp("scorecard")
    system, seed = load_seed()
    dialogues = list(personality_dialogues(system, seed, 1500, 50))
    tokenizer = train_tokenizer(iter(render_text(turns_of(r)) for r in dialogues), TokenizerOptions(vocab_size=1200))
    sha = save_tokenizer(tokenizer, root / "tokenizer", TokenizerOptions())
    write_dialogue_shards({"personality": iter(dialogues)}, tokenizer, sha, root / "shards",
                          DialogueShardOptions(seq_len=SEQ_LEN))
    folders = {}
    for name, steps in (("untrained", 1), ("trained", 400)):
        out = root / name
        for phase, phase_steps in (("base", 1), ("personality", steps)):  # a one-step base: the phase chain starts there
            settings = {"phase": phase, "train_data": str(root / "shards" / "personality" / "train"),
                        "tokenizer": str(root / "tokenizer"), "out_dir": str(out), "preset": "tiny",
                        "steps": phase_steps, "batch_size": 16, "lr": 3e-3, "warmup_steps": 1, "log_every": 100,
                        "eval_every": 10_000, "checkpoint_every": 10_000, "model_overrides": {"max_seq_len": 160}}
            args = [arg for key, value in settings.items()
                    for arg in ("--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}")]
            done = subprocess.run([sys.executable, "-m", "rosie_model", "train", *args], env=train_env(root / "home"),
                                  capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, done.stderr[-3000:]
        folders[name] = out
    return folders


def _floors_failed(scores: dict[str, float]) -> list[str]:
    return [m for m, floor in FLOORS.items() if not scores[m] >= floor]


def test_an_untrained_model_fails_its_floors_and_a_trained_one_passes(models):
    card = load_scorecard()
    options = SamplingOptions(max_new_tokens=40, temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.2, seed=0)
    untrained = run_scorecard(load_rosie(models["untrained"]), card, options)
    trained = run_scorecard(load_rosie(models["trained"]), card, options)
    assert _floors_failed(untrained["scores"]), untrained["scores"]
    assert not _floors_failed(trained["scores"]), [r for r in trained["rows"] if not r["passed"]]
    assert trained["leaked_replies"] == 0
    # every prompt was answered through Rosie.reply, memory included: the fact told was recalled into the prompt
    memory_rows = [r for r in trained["rows"] if r["measure"] == "memory"]
    assert len(memory_rows) == len(card["memory"]) and all(r["memories"] for r in memory_rows)
    assert {r["measure"] for r in trained["rows"]} == {"persona", "knowledge", "memory", "emotion_fit", "events"}


def test_sampling_is_chosen_on_the_tuning_card_and_recorded(models):
    from rosie_model.core.layout import ModelFolder
    from rosie_model.serving.generate import sampling_defaults

    chosen, tried = tune_sampling(load_rosie(models["trained"]), load_scorecard()["tuning"])
    assert len(tried) == 3 and chosen.temperature in {t["options"]["temperature"] for t in tried}
    from rosie_model.evaluation.scorecard import TUNING_MARGIN

    means = [t["mean"] for t in tried]
    picked = next(i for i, t in enumerate(tried) if t["options"] == chosen.__dict__)
    assert means[picked] >= max(means) - TUNING_MARGIN and all(m < max(means) - TUNING_MARGIN for m in means[:picked])
    folder = ModelFolder(Path(models["trained"]))
    folder.sampling.write_text('{"temperature": 0.3, "top_p": 0.8}')
    assert sampling_defaults(folder) == SamplingOptions(temperature=0.3, top_p=0.8)
    folder.sampling.unlink()


def test_evaluate_without_diagnostics_is_the_scorecard_and_conversation_bits(models, tmp_path):
    from rosie_model.evaluation.evaluate import evaluate

    (tmp_path / "scorecard.json").write_text(json.dumps(load_scorecard()))
    (tmp_path / "conversations.jsonl").write_text(json.dumps({"source": "chitchat", "text": "Hi!\nHello, how are you?"}))
    spec = {"scorecard": str(tmp_path / "scorecard.json"), "conversations": str(tmp_path / "conversations.jsonl")}
    results = evaluate(Path(models["trained"]), spec, diagnostics=False)
    assert results["scorecard_persona"] >= FLOORS["persona"] and results["conversation_bits_per_byte"] > 0
    assert "perplexity" not in results and "memory_recall" not in results
    assert (Path(models["trained"]) / "sampling.json").exists() and len(results["sampling_tuning"]) == 3
