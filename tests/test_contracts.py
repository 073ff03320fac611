"""The contracts between the packages: token shards written by rosie_pipeline train in rosie_model, and the
model folder the trainer writes is the one every reader (chat, evaluation, registry, export, Dagster) reads."""

import json
import os
import subprocess
import sys

import pytest

from rosie_pipeline.chat_format import render_text
from rosie_pipeline.dialogue.importers import chitchat_conversations
from rosie_pipeline.dialogue.memory import memory_dialogues
from rosie_pipeline.dialogue.personality import load_seed, personality_dialogues
from rosie_pipeline.dialogue.schema import turns_of
from rosie_pipeline.tokenize.dialogue_shards import DialogueShardOptions, write_dialogue_shards
from rosie_pipeline.tokenize.shards import ShardOptions, write_shards
from rosie_pipeline.tokenize.tokenizer import TokenizerOptions, save_tokenizer, train_tokenizer


def _train(tmp_path, phase, data, steps=3):
    settings = {"train_data": str(data / "train"), "tokenizer": str(tmp_path / "tok"), "out_dir": str(tmp_path / "m"),
                "steps": steps, "batch_size": 4, "log_every": 1, "model_overrides": {"max_seq_len": 64}}
    args = [a for key, value in settings.items() for a in ("--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}")]
    env = {**os.environ, "ROSIE_HOME": str(tmp_path / "home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run([sys.executable, "-m", "rosie_model", "train", "--phase", phase, *args], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def phases(tmp_path_factory):
    """Shards made by the data library, then the three phases trained on them: (folder, phase results)."""
    tmp_path = tmp_path_factory.mktemp("contract")
    system, seed = load_seed()
    personality = list(personality_dialogues(system, seed, 200, 50))
    memory = list(memory_dialogues(system, list(chitchat_conversations(limit=20)), 60, 100))
    dialogues = personality + memory
    texts = [(d["id"], render_text(turns_of(d))) for d in dialogues]
    tokenizer = train_tokenizer((t for _, t in texts), TokenizerOptions(vocab_size=500))
    sha = save_tokenizer(tokenizer, tmp_path / "tok", TokenizerOptions())
    write_shards(texts, tokenizer, sha, tmp_path / "pretrain", ShardOptions(seq_len=63))
    write_dialogue_shards({"personality": personality, "emotion_memory": memory}, tokenizer, sha,
                          tmp_path / "dialogue", DialogueShardOptions(seq_len=63))
    results = [_train(tmp_path, "base", tmp_path / "pretrain"),
               _train(tmp_path, "personality", tmp_path / "dialogue" / "personality"),
               _train(tmp_path, "emotion_memory", tmp_path / "dialogue" / "emotion_memory")]
    return tmp_path / "m", results


def test_pipeline_shards_train_all_three_phases(phases):
    _, (base, personality, final) = phases
    assert base["steps"] == personality["steps"] == final["steps"] == 3
    assert personality["final_loss"] > 0 and final["final_loss"] > 0


def test_the_model_folder_holds_what_every_reader_reads(phases, tmp_path):
    from dagster_project.lake import FINAL_WEIGHTS
    from rosie_model.export.hf import export_hf
    from rosie_model.core.layout import PHASES, ModelFolder
    from rosie_model.evaluation.registry import bootstrap_tags
    from rosie_model.serving.generate import load_rosie

    root, results = phases
    folder = ModelFolder(root)
    written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "checkpoints" not in p.parts}
    expected = {str(p.relative_to(root)) for p in (folder.config, *folder.tokenizer_files,
                                                   *(folder.weights(phase) for phase in PHASES))}
    assert expected <= written  # (plus the tokenizer's training record)
    assert [r["weights"] for r in results] == [str(folder.weights(phase)) for phase in PHASES]
    assert all(list(folder.checkpoints(phase).glob("step-*/model.safetensors")) for phase in PHASES)
    assert (root / FINAL_WEIGHTS) == folder.weights(PHASES[-1])  # what Dagster takes for "trained"
    assert load_rosie(root).weights == folder.latest_weights() == folder.weights("emotion_memory")  # chat, evaluation
    assert load_rosie(root, weights="base.safetensors").weights == folder.weights("base")
    assert (export_hf(root, tmp_path / "hf", "final") / "model.safetensors").is_file()
    assert not folder.is_bootstrap and bootstrap_tags(root) == {}
