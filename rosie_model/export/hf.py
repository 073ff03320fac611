"""A Rosie model as a complete Hugging Face Llama folder, the way ``save_pretrained`` writes it.

Rosie's trunk is a Llama (the same norms, rotary layout, SwiGLU), so the scratch model's tensors are renamed
and its fused projections (q/k/v, gate/up) split back into Llama's; the bootstrap model is its pretrained
base with the LoRA adapters merged in. Either way ``transformers`` loads the folder with no custom code, and
so do vLLM, llama.cpp (through :mod:`rosie_model.export.gguf`) and every tool of the Hub.

What a plain causal LM cannot hold travels beside it or is folded in:

* persona 0 (Rosie herself, what every front end talks to by default) is a vector added to the residual
  stream; it is folded into the weights, exactly: into the input embedding when it is added there (the
  output layer is untied for that), or as the down-projection bias of the layer below where it joins;
* the emotion head and the other personas ship in ``rosie_heads.safetensors`` (the card says how to apply
  them); memory attention (scratch) has no Llama counterpart, and plain generation runs without memory;
* ``generation_config.json`` stops where Rosie's decoder stops (end of text and the next speaker's token)
  and samples with the settings the evaluation tuned; ``chat_template.jinja`` renders like Rosie's own
  renderer, with her system prompt when a conversation brings none.

    python -m rosie_model export SOURCE OUT_DIR [--weights base|personality|final] [--gguf]
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rosie_model.core.bootstrap import EMOTION_WINDOW
from rosie_model.core.checkpoint import replace_folder, save_weights
from rosie_model.core.config import ModelConfig
from rosie_model.core.errors import RosieError
from rosie_model.core.layout import ModelFolder
from rosie_model.core.locate import resolve_model

#: The persona the exported weights speak as (the one every chat front end uses unless told otherwise).
PERSONA = 0
#: Rosie's emotion head and persona vectors, beside the weights.
HEADS_FILE = "rosie_heads.safetensors"

_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn.wo.weight": "self_attn.o_proj.weight",
    "mlp_norm.weight": "post_attention_layernorm.weight",
    "mlp.w2.weight": "mlp.down_proj.weight",
}


def llama_config(config: ModelConfig) -> dict[str, object]:
    """The Llama config of Rosie's scratch trunk."""
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
    }


def to_llama_state(weights: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Rosie's scratch tensors under Llama's names (the output layer is the tied embedding)."""
    state = {"model.embed_tokens.weight": weights["tok_emb.weight"], "model.norm.weight": weights["norm.weight"],
             "lm_head.weight": weights["tok_emb.weight"]}
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


def scratch_llama(model: nn.Module) -> Any:
    """The scratch model as a ``LlamaForCausalLM`` (persona 0 folded into the embedding)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config: ModelConfig = model.config
    state = {k: v.detach().clone() for k, v in to_llama_state(model.state_dict(), config).items()}
    settings = llama_config(config)
    persona = model.persona.weight[PERSONA].detach()
    if persona.any():  # the embedding carries the persona, the output layer stays the plain embedding
        state["model.embed_tokens.weight"] += persona
        settings["tie_word_embeddings"] = False
    llama = LlamaForCausalLM(LlamaConfig(**settings))
    llama.load_state_dict(state, strict=True)
    return llama.eval()


def bootstrap_llama(model: nn.Module) -> Any:
    """The bootstrap model's base with its adapters merged and persona 0 folded in."""
    merged = copy.deepcopy(model.lm).merge_and_unload()  # merging folds in place: the caller's model stays LoRA
    persona = model.persona.weight[PERSONA].detach()
    if not persona.any():
        return merged.eval()
    if model.persona_layer == 0:  # added to the input embeddings: add it to the rows, untie the output layer
        output = merged.get_output_embeddings()
        output.weight = nn.Parameter(output.weight.detach().clone())
        merged.config.tie_word_embeddings = False
        merged.get_input_embeddings().weight.data += persona
        return merged.eval()
    return _persona_as_bias(merged, persona, model.persona_layer)


def _persona_as_bias(merged: Any, persona: torch.Tensor, layer: int) -> Any:
    """A persona that joins before ``layer`` is what the layer below adds to the residual stream last: the
    bias of its down projection. Llama's config has biases only for all its MLPs at once, so the others are
    zeros."""
    from transformers import LlamaForCausalLM

    if merged.config.model_type != "llama":
        raise RosieError(f"persona 0 joins at layer {layer} of a {merged.config.model_type} model, which has no "
                         "bias to carry it; export a model whose persona joins at the embeddings (train_token_rows)")
    config = copy.deepcopy(merged.config)
    config.mlp_bias = True
    with_bias = LlamaForCausalLM(config)
    missing, unexpected = with_bias.load_state_dict(merged.state_dict(), strict=False)
    if unexpected or any(not name.endswith(".bias") for name in missing):
        raise RosieError(f"cannot rebuild the merged model with MLP biases: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}")
    with torch.no_grad():
        for block in with_bias.model.layers:
            for linear in (block.mlp.gate_proj, block.mlp.up_proj, block.mlp.down_proj):
                linear.bias.zero_()
        with_bias.model.layers[layer - 1].mlp.down_proj.bias.copy_(persona)
    return with_bias.eval()


def as_llama(rosie: Any) -> Any:
    """The loaded Rosie (``serving.generate.LoadedRosie``) as a plain transformers causal LM."""
    return bootstrap_llama(rosie.model) if ModelFolder(rosie.folder).is_bootstrap else scratch_llama(rosie.model)


def generation_config(rosie: Any) -> Any:
    """Stops at end of text and every token that opens another turn (not the ones that open hers, which
    the model writes itself after its emotion token); samples with the tuned settings of ``sampling.json``."""
    from transformers import GenerationConfig

    from rosie_model.serving.generate import sampling_defaults

    stops = sorted(rosie.stop_ids - set(rosie.reply_start_ids))
    options = sampling_defaults(ModelFolder(rosie.folder))
    sampling: dict[str, Any] = {"do_sample": False}
    if options.temperature > 0:
        sampling = {"do_sample": True, "temperature": options.temperature, "top_k": options.top_k,
                    "top_p": options.top_p}
    return GenerationConfig(eos_token_id=stops, pad_token_id=rosie.model.config.pad_id, bos_token_id=None,
                            max_new_tokens=options.max_new_tokens, repetition_penalty=options.repetition_penalty,
                            **sampling)


def default_system_template(template: str, system_prompt: str | None) -> str:
    """``template`` with Rosie's system prompt put first when a conversation has no system message, as her
    own chat does (a front end that sends one keeps it)."""
    if not system_prompt:
        return template
    prompt = json.dumps(system_prompt)  # a JSON string is a valid Jinja string literal
    return ("{%- if not messages or messages[0].role != 'system' -%}"
            f"{{%- set messages = [{{'role': 'system', 'content': {prompt}}}] + messages -%}}"
            "{%- endif -%}" + template)


def save_tokenizer(rosie: Any, out_dir: Path) -> None:
    """The tokenizer through transformers' own save path (``tokenizer.json``, ``tokenizer_config.json``,
    ``chat_template.jinja``), keeping Rosie's settings (emotions, events, stop tokens) in its config."""
    from transformers import PreTrainedTokenizerFast

    settings = rosie.settings
    folder = ModelFolder(rosie.folder)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(folder.tokenizer_files[0]), eos_token=settings["eos_token"],
        pad_token=settings["pad_token"], additional_special_tokens=settings.get("additional_special_tokens", []),
        chat_template=default_system_template(settings["chat_template"], rosie.system_prompt),
        model_max_length=rosie.model.config.max_seq_len, clean_up_tokenization_spaces=False,
        **{k: v for k, v in settings.items() if k.startswith("rosie_")})
    tokenizer.save_pretrained(str(out_dir))


def heads_state(rosie: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The emotion head and every persona vector, and how to apply them (safetensors metadata)."""
    model = rosie.model
    tensors = {"emotion_head.weight": model.emotion_head.weight, "emotion_head.bias": model.emotion_head.bias,
               "persona.weight": model.persona.weight}
    bootstrap = ModelFolder(rosie.folder).is_bootstrap
    metadata = {
        "emotions": json.dumps(list(model.config.emotions)),
        # scratch: the state at the last prompt token; bootstrap: the mean of the last positions up to it
        "emotion_reads": f"mean_last_{EMOTION_WINDOW}" if bootstrap else "last",
        "persona_joins_before_layer": str(getattr(model, "persona_layer", 0)),
        "persona_folded": str(PERSONA),
    }
    return {k: v.detach().contiguous().clone() for k, v in tensors.items()}, metadata


def export_hf(source: str | Path, out_dir: Path, weights_name: str | None = None) -> Path:
    """Write ``source`` (a model folder or ``models:/rosie@champion``) to ``out_dir`` as a Hugging Face folder;
    ``weights_name`` is base, personality or final (default: the latest, what a chat loads)."""
    from rosie_model.export.card import model_card
    from rosie_model.serving.generate import load_rosie

    located = resolve_model(source)
    if weights_name is not None:
        ModelFolder(located.folder).weights_named(weights_name)  # checks the name
    rosie = load_rosie(located.folder, f"{weights_name}.safetensors" if weights_name else None)
    llama = as_llama(rosie)
    llama.generation_config = generation_config(rosie)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        llama.save_pretrained(str(tmp))
        save_tokenizer(rosie, tmp)
        heads, metadata = heads_state(rosie)
        save_weights(heads, tmp / HEADS_FILE, metadata=metadata)
        model_card(rosie, located, llama, PERSONA).save(str(tmp / "README.md"))
        replace_folder(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir
