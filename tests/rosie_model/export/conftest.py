"""Model folders to export: the scratch model and the bootstrap model with trained-looking weights (random,
persona 0 and the LoRA adapters non-zero, so that what the export folds in shows in every logit)."""

import json
from pathlib import Path

import pytest
import torch

from rosie_model.core.checkpoint import save_weights
from tests.pretrained import save_small_llama

#: Conversations the exports are checked on: plain, with Rosie's own earlier turn, with an event.
CONVERSATIONS = [
    [{"role": "user", "content": "Hi! Who are you?"}],
    [{"role": "user", "content": "My cat is called Biscuit."},
     {"role": "assistant", "content": "What a lovely name!", "emotion": "happy"},
     {"role": "user", "content": "What is my cat called?"}],
    [{"role": "event", "content": "poke"}],
    [{"role": "system", "content": "You are Rosie. Be brief."}, {"role": "user", "content": "How many legs has a spider?"}],
]


def _randomise(model: torch.nn.Module) -> None:
    torch.manual_seed(1)
    with torch.no_grad():
        model.persona.weight.normal_(std=0.5)
        for name, param in model.named_parameters():
            if "lora_B" in name or name.startswith("emotion_head"):
                param.normal_(std=0.2)


def _copy_tokenizer(source: Path, folder: Path) -> None:
    (folder / "tokenizer").mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / "tokenizer" / name).write_bytes((source / name).read_bytes())


@pytest.fixture(scope="package")
def scratch_folder(corpus, tmp_path_factory):
    """The tiny scratch preset with memory layers, final weights and tuned sampling settings."""
    from tokenizers import Tokenizer

    from rosie_model.core.config import preset
    from rosie_model.core.model import RosieTransformer

    folder = tmp_path_factory.mktemp("scratch_model")
    vocab = Tokenizer.from_file(str(corpus["tokenizer"] / "tokenizer.json")).get_vocab_size()
    config = preset("tiny", vocab_size=vocab, max_seq_len=256, n_kv_heads=2)
    torch.manual_seed(0)
    model = RosieTransformer(config)
    _randomise(model)
    config.save(folder / "config.json")
    save_weights(model.state_dict(), folder / "weights" / "final.safetensors")
    _copy_tokenizer(corpus["tokenizer"], folder)
    (folder / "sampling.json").write_text(json.dumps({"max_new_tokens": 24, "temperature": 0.0, "top_k": 0,
                                                      "top_p": 1.0, "repetition_penalty": 1.2}))
    return folder


def _bootstrap_folder(corpus, root: Path, **settings) -> Path:
    from rosie_model.core.bootstrap import BootstrapRosie, BootstrapSettings, prepare_tokenizer

    chosen = BootstrapSettings(str(save_small_llama(root / "pretrained")), lora_r=4, **settings)
    folder = root / "model"
    prepare_tokenizer(chosen, corpus["tokenizer"], folder / "tokenizer")
    model = BootstrapRosie(chosen, folder / "tokenizer", max_seq_len=256)
    _randomise(model)
    model.config.save(folder / "config.json")
    chosen.save(folder / "bootstrap.json")
    save_weights(model.trained_state(), folder / "weights" / "final.safetensors")
    return folder


@pytest.fixture(scope="package")
def bootstrap_root(tmp_path_factory):
    return tmp_path_factory.mktemp("bootstrap")


@pytest.fixture(scope="package", params=["scratch", "persona_at_embeddings", "persona_at_layer_1"])
def model_folder(request, corpus, scratch_folder, bootstrap_root):
    """Each kind of model the export folds differently: the scratch model; a bootstrap model whose persona joins
    at the embeddings (token rows train); one whose persona joins before layer 1 (LoRA on the top layer only,
    rows frozen, as the demo trains SmolLM2)."""
    if request.param == "scratch":
        return scratch_folder
    pytest.importorskip("peft")
    settings = {} if request.param == "persona_at_embeddings" else {"lora_layers": 1, "train_token_rows": False}
    return _bootstrap_folder(corpus, bootstrap_root / request.param, **settings)


@pytest.fixture(scope="package")
def exported(model_folder, tmp_path_factory):
    """``model_folder`` exported once to a Hugging Face folder (tests that change the output write their own)."""
    from rosie_model.export.hf import export_hf

    return export_hf(model_folder, tmp_path_factory.mktemp("exported") / "hf")
