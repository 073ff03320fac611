"""Export the base language model to the Hugging Face Llama format (config.json + safetensors).

Rosie's trunk is a Llama: the same norms, rotary layout, SwiGLU and tied embeddings, so the export
renames tensors and splits Rosie's fused projections (q/k/v, gate/up) back into Llama's. ``transformers`` then loads it with no custom code, which opens vLLM,
llama.cpp and every HF tool to Rosie models. The emotion head, memory attention and personas are
Rosie's own and are not part of the export.

    python -m rosie_model export MODEL_DIR OUT_DIR [--weights base|personality|final]
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from rosie_model.core.checkpoint import load_weights, save_weights
from rosie_model.core.config import ModelConfig
from rosie_model.core.layout import ModelFolder

_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "mlp_norm.weight": "post_attention_layernorm.weight",
    "mlp.w2.weight": "mlp.down_proj.weight",
}


def llama_config(config: ModelConfig) -> dict[str, object]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "intermediate_size": config.d_ff,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.kv_heads,
        "head_dim": config.head_dim,
        "max_position_embeddings": config.max_seq_len,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "bos_token_id": None,
        "eos_token_id": config.eos_id,
        "pad_token_id": config.pad_id,
        "torch_dtype": "float32",
    }


def to_llama_state(weights: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    state = {"model.embed_tokens.weight": weights["tok_emb.weight"], "model.norm.weight": weights["norm.weight"]}
    q_rows, kv_rows = config.n_heads * config.head_dim, config.kv_heads * config.head_dim
    for layer in range(config.n_layers):
        ours, theirs = f"blocks.{layer}.", f"model.layers.{layer}."
        for name, hf_name in _LAYER_NAMES.items():
            state[theirs + hf_name] = weights[ours + name]
        q, k, v = weights[ours + "attn.wqkv.weight"].split([q_rows, kv_rows, kv_rows])  # fused in Rosie
        gate, up = weights[ours + "mlp.w13.weight"].chunk(2)
        state |= {theirs + "self_attn.q_proj.weight": q, theirs + "self_attn.k_proj.weight": k,
                  theirs + "self_attn.v_proj.weight": v, theirs + "mlp.gate_proj.weight": gate,
                  theirs + "mlp.up_proj.weight": up}
    return state


def export_hf(model_dir: Path, out_dir: Path, weights_name: str = "base") -> Path:
    folder = ModelFolder(model_dir)
    config = ModelConfig.load(folder.config)
    weights = load_weights(folder.weights_named(weights_name))
    out_dir.mkdir(parents=True, exist_ok=True)
    save_weights(to_llama_state(weights, config), out_dir / "model.safetensors", metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(llama_config(config), indent=2) + "\n", encoding="utf-8")
    for item in folder.tokenizer_files:
        if item.is_file():
            shutil.copy(item, out_dir / item.name)
    return out_dir
