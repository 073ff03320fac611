"""An exported Hugging Face Llama folder as one GGUF file, for llama.cpp, KoboldCpp, Ollama and LM Studio.

Written with the ``gguf`` package's writer from the folder :mod:`rosie_model.export.hf` makes, so the
two carry the same weights. llama.cpp's layout differs from transformers' in one place: its rotary
embedding rotates adjacent pairs of a head's dimensions, transformers' rotates the first half against
the second, so the rows of the query and key projections are reordered within each head. The tokenizer
travels as a byte-level BPE (``gpt2``) vocabulary with its merges and token types (Rosie's markup tokens
are control tokens, which user text can never spell), with the chat template and the stop tokens:
end of text as ``eos`` and the token that opens the next turn as ``eot``, both of which llama.cpp stops at.

    python -m rosie_model export SOURCE OUT_DIR --gguf [--quant f16|q8_0]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from rosie_model.core.errors import RosieError

#: What ``--quant`` may say: the 2-D weights' type (norms and biases stay float32, as llama.cpp keeps them).
QUANTS = ("f16", "q8_0")

_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "mlp.gate_proj.bias": "ffn_gate.bias",
    "mlp.up_proj.bias": "ffn_up.bias",
    "mlp.down_proj.bias": "ffn_down.bias",
}
_TOP_NAMES = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
              "lm_head.weight": "output.weight"}


def gguf_name(hf_name: str) -> str:
    """llama.cpp's name for a transformers Llama tensor."""
    if hf_name in _TOP_NAMES:
        return _TOP_NAMES[hf_name]
    prefix, layer, rest = hf_name.split(".", 3)[1:] if hf_name.startswith("model.layers.") else ("", "", "")
    if prefix != "layers" or rest not in _LAYER_NAMES:
        raise RosieError(f"no GGUF name for tensor {hf_name!r}; only Llama folders export to GGUF")
    return f"blk.{layer}.{_LAYER_NAMES[rest]}"


def to_pairwise_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a q/k projection from transformers' half-split rotary order to llama.cpp's adjacent pairs:
    within each head, row i of the first half and row i of the second half become rows 2i and 2i+1."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def pre_tokenizer_name(tokenizer: dict[str, Any]) -> str:
    """llama.cpp's name for the way the tokenizer splits text before BPE (it must split the same way)."""
    pre = tokenizer.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    steps = pre.get("steps", []) if pre.get("type") == "Sequence" else []
    if [s.get("type") for s in steps] == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    raise RosieError(f"the tokenizer splits text with {json.dumps(pre)[:200]}, which llama.cpp has no name for; "
                     "GGUF export supports byte-level BPE tokenizers (GPT-2 or SmolLM splitting)")


def vocabulary(tokenizer: dict[str, Any], size: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens by id, their GGUF token types, merges as "a b") for a byte-level BPE ``tokenizer.json``."""
    import gguf

    model = tokenizer["model"]
    if model.get("type") != "BPE":
        raise RosieError(f"GGUF export needs a BPE tokenizer, not {model.get('type')}")
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [int(gguf.TokenType.UNUSED)] * size
    for text, index in model["vocab"].items():
        if index < size:
            tokens[index], types[index] = text, int(gguf.TokenType.NORMAL)
    for added in tokenizer.get("added_tokens", []):
        if added["id"] < size:
            tokens[added["id"]] = added["content"]
            types[added["id"]] = int(gguf.TokenType.CONTROL if added["special"] else gguf.TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    return tokens, types, merges


def _tensor_data(array: np.ndarray, quant: str) -> tuple[np.ndarray, Any]:
    """(array to write, its quantization type or None) for one tensor."""
    import gguf

    array = array.astype(np.float32)
    if array.ndim == 1:
        return array, None
    if quant == "q8_0" and array.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        kind = gguf.GGMLQuantizationType.Q8_0
        return gguf.quants.quantize(array, kind), kind
    return array.astype(np.float16), None


def export_gguf(hf_dir: Path, out_file: Path, quant: str = "f16") -> Path:
    """Write the Llama folder ``hf_dir`` as ``out_file`` (atomically) with its 2-D weights in ``quant``."""
    import gguf
    from safetensors.numpy import load_file

    if quant not in QUANTS:
        raise RosieError(f"--quant is one of {', '.join(QUANTS)}, not {quant!r}")
    hf_dir, out_file = Path(hf_dir), Path(out_file)
    config = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "llama":
        raise RosieError(f"{hf_dir} holds a {config.get('model_type')} model; GGUF export writes Llama models")
    tokenizer = json.loads((hf_dir / "tokenizer.json").read_text(encoding="utf-8"))
    settings = json.loads((hf_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = (hf_dir / "chat_template.jinja").read_text(encoding="utf-8")
    weights = load_file(str(hf_dir / "model.safetensors"))
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    vocab_size = config["vocab_size"]
    tokens, types, merges = vocabulary(tokenizer, vocab_size)
    ids = {text: i for i, text in enumerate(tokens)}
    stops = [s for s in settings.get("rosie_stop_tokens", []) if s in ids]
    reply_start = settings.get("rosie_reply_start", "")
    turn_end = next((s for s in stops if s != settings["eos_token"] and s not in reply_start), None)

    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(f".{out_file.name}.tmp-{os.getpid()}")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    try:
        writer.add_name("Rosie")
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quant == "q8_0" else gguf.LlamaFileType.MOSTLY_F16)
        writer.add_context_length(config["max_position_embeddings"])
        writer.add_embedding_length(config["hidden_size"])
        writer.add_block_count(config["num_hidden_layers"])
        writer.add_feed_forward_length(config["intermediate_size"])
        writer.add_head_count(heads)
        writer.add_head_count_kv(kv_heads)
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(float(config.get("rope_theta") or (config.get("rope_parameters") or {})
                                        .get("rope_theta", 10000.0)))
        writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
        writer.add_vocab_size(vocab_size)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre(pre_tokenizer_name(tokenizer))
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        writer.add_eos_token_id(ids[settings["eos_token"]])
        if turn_end is not None:
            writer.add_eot_token_id(ids[turn_end])
        if settings.get("pad_token") in ids:
            writer.add_pad_token_id(ids[settings["pad_token"]])
        writer.add_add_bos_token(False)
        writer.add_add_space_prefix(False)
        writer.add_chat_template(template)
        tied = config.get("tie_word_embeddings", True)
        for name, tensor in weights.items():
            if name == "lm_head.weight" and tied:
                continue  # llama.cpp reads the embedding when there is no output layer
            if name.endswith("q_proj.weight"):
                tensor = to_pairwise_rotary(tensor, heads)
            elif name.endswith("k_proj.weight"):
                tensor = to_pairwise_rotary(tensor, kv_heads)
            data, kind = _tensor_data(tensor, quant)
            writer.add_tensor(gguf_name(name), data, raw_dtype=kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out_file)
    finally:
        writer.close()
        tmp.unlink(missing_ok=True)
    return out_file
