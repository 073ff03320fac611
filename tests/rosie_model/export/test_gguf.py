"""GGUF export, checked offline by a round trip: transformers reads the file back (`gguf_file=`) and decodes
what the safetensors folder decodes (f16: the same greedy tokens; q8_0: at least 95% of them), and the
`gguf` reader lists what llama.cpp needs to run it: architecture, sizes, tokenizer, stop tokens, template."""

import numpy as np
import pytest
import torch

from rosie_model.core.errors import RosieError
from rosie_model.export.gguf import export_gguf, to_pairwise_rotary
from rosie_model.export.hf import export_hf
from rosie_model.serving.generate import load_rosie
from tests.rosie_model.export.conftest import CONVERSATIONS
from tests.rosie_model.export.test_hf_folder import transformers_reply, with_system

pytest.importorskip("gguf")


def round_trip(folder, exported, tmp_path, quant):
    """(the exported folder's greedy tokens, the GGUF's, per conversation) and the GGUF's path."""
    from transformers import AutoModelForCausalLM

    path = export_gguf(exported, tmp_path / f"rosie-{quant}.gguf", quant)
    model = AutoModelForCausalLM.from_pretrained(str(exported)).eval()
    # GGUF metadata has no switch for MLP biases; a persona folded into one needs it said when loading
    extra = {"mlp_bias": True} if model.config.mlp_bias else {}
    read_back = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=path.name, dtype=torch.float32,
                                                     **extra).eval()
    read_back.generation_config = model.generation_config
    rosie = load_rosie(folder)
    pairs = []
    for messages in CONVERSATIONS:
        prompt = rosie.render(with_system(rosie, messages))
        pairs.append((transformers_reply(model, prompt), transformers_reply(read_back, prompt)))
    return pairs, path


def test_f16_gguf_decodes_the_same_tokens_as_the_folder(model_folder, exported, tmp_path):
    pairs, _ = round_trip(model_folder, exported, tmp_path, "f16")
    assert all(folder_tokens == gguf_tokens for folder_tokens, gguf_tokens in pairs), pairs


def test_q8_0_gguf_agrees_on_at_least_95_percent_of_tokens(scratch_folder, tmp_path):
    exported = export_hf(scratch_folder, tmp_path / "hf")
    pairs, path = round_trip(scratch_folder, exported, tmp_path, "q8_0")
    same = sum(a == b for ours, theirs in pairs for a, b in zip(ours, theirs))
    total = sum(max(len(ours), len(theirs)) for ours, theirs in pairs)
    assert same / total >= 0.95, pairs
    f16 = export_gguf(exported, tmp_path / "rosie-f16.gguf", "f16")
    assert path.stat().st_size < 0.7 * f16.stat().st_size


def test_the_gguf_carries_what_llama_cpp_needs(scratch_folder, tmp_path):
    import gguf

    rosie = load_rosie(scratch_folder)
    path = export_gguf(export_hf(scratch_folder, tmp_path / "hf"), tmp_path / "rosie.gguf")
    reader = gguf.GGUFReader(str(path))
    field = {name: value.contents() for name, value in reader.fields.items()}
    config = rosie.model.config
    assert field["general.architecture"] == "llama" and field["llama.block_count"] == config.n_layers
    assert field["llama.embedding_length"] == config.d_model and field["llama.attention.head_count_kv"] == config.kv_heads
    assert field["llama.context_length"] == config.max_seq_len and field["llama.rope.dimension_count"] == config.head_dim
    assert field["tokenizer.ggml.model"] == "gpt2" and field["tokenizer.ggml.pre"] == "gpt-2"
    tokens = field["tokenizer.ggml.tokens"]
    assert len(tokens) == config.vocab_size and tokens[rosie.token_id("<|rosie|>")] == "<|rosie|>"
    kinds = field["tokenizer.ggml.token_type"]
    assert kinds[rosie.token_id("<|emotion:sad|>")] == gguf.TokenType.CONTROL  # never spelled by user text
    assert field["tokenizer.ggml.eos_token_id"] == rosie.token_id("<|endoftext|>")
    assert field["tokenizer.ggml.eot_token_id"] == rosie.token_id("<|user|>")  # the next speaker ends her turn
    assert "<|rosie|>" in field["tokenizer.chat_template"] and field["tokenizer.ggml.add_bos_token"] is False
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "output.weight", "output_norm.weight", "blk.0.attn_q.weight"} <= names
    # transformers' tokenizer made from the GGUF splits text as Rosie's does
    from transformers import AutoTokenizer

    text = "Hello there! My cat Biscuit is 3 years old."
    assert AutoTokenizer.from_pretrained(str(tmp_path), gguf_file=path.name).encode(text) == rosie.encode_text(text)


def test_rotary_rows_are_reordered_within_each_head():
    rows = np.arange(2 * 8).reshape(2 * 8, 1)  # 2 heads of 8 dimensions: halves [0..3] [4..7]
    assert to_pairwise_rotary(rows, heads=2)[:8, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    assert to_pairwise_rotary(rows, heads=2)[8:, 0].tolist() == [8, 12, 9, 13, 10, 14, 11, 15]


def test_a_folder_that_is_not_a_llama_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(RosieError, match="writes Llama models"):
        export_gguf(tmp_path, tmp_path / "x.gguf")
    with pytest.raises(RosieError, match="--quant"):
        export_gguf(tmp_path, tmp_path / "x.gguf", "q4_k")
