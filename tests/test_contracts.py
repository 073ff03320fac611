"""The token-shard contract between the packages: shards written by rosie_pipeline train in rosie_model."""

import json
import os
import subprocess
import sys

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
    done = subprocess.run([sys.executable, "-m", "rosie_model.train", "--phase", phase, *args], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pipeline_shards_train_all_three_phases(tmp_path):
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
    _train(tmp_path, "base", tmp_path / "pretrain")
    phase2 = _train(tmp_path, "personality", tmp_path / "dialogue" / "personality")
    phase3 = _train(tmp_path, "emotion_memory", tmp_path / "dialogue" / "emotion_memory")
    assert phase2["final_loss"] > 0 and phase3["weights"].endswith("final.safetensors")
