"""Loading a trained Rosie and generating with the KV cache.

Prompts are rendered with the chat template the tokenizer folder carries (``tokenizer_config.json``),
so inference sees exactly the format training saw; rosie_model never needs rosie_pipeline's code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import torch
from tokenizers import Tokenizer

from rosie_model.checkpoint import load_weights
from rosie_model.config import ModelConfig
from rosie_model.model import KVCache, Rosie

WEIGHT_ORDER = ("final.safetensors", "personality.safetensors", "base.safetensors")


@dataclass
class LoadedRosie:
    model: Rosie
    tokenizer: Tokenizer
    settings: dict[str, Any]
    folder: Path

    @property
    def template(self) -> jinja2.Template:
        return jinja2.Environment().from_string(self.settings["chat_template"])

    def token_id(self, token: str) -> int:
        found = self.tokenizer.token_to_id(token)
        if found is None:
            raise ValueError(f"the tokenizer has no {token!r}")
        return found

    @property
    def stop_ids(self) -> set[int]:
        """Tokens that end Rosie's turn: another speaker, an event, memory or the end of text."""
        names = ["<|endoftext|>", "<|user|>", "<|system|>", "<|rosie|>", "<|memory|>"]
        names += [f"<|event:{e}|>" for e in self.settings.get("rosie_events", [])]
        return {i for i in (self.tokenizer.token_to_id(n) for n in names) if i is not None}

    def render(self, messages: list[dict[str, Any]], memory: list[str] | None = None,
               add_generation_prompt: bool = True) -> list[int]:
        text = self.template.render(messages=messages, memory=memory or [], add_generation_prompt=add_generation_prompt)
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_facts(self, facts: list[str]) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
        if not facts or not self.model.config.memory_layers:
            return None, None
        ids = [self.tokenizer.encode(f, add_special_tokens=False).ids for f in facts]
        width = max(len(i) for i in ids)
        batch = torch.full((1, len(ids), width), self.model.config.pad_id, dtype=torch.long)
        for j, fact in enumerate(ids):
            batch[0, j, : len(fact)] = torch.tensor(fact)
        with torch.no_grad():
            return self.model.encode_memory(batch)


def load_rosie(folder: Path, weights: str | None = None, device: str = "cpu") -> LoadedRosie:
    """A model folder (``config.json``, ``tokenizer/``, ``weights/*.safetensors``), latest phase by default."""
    folder = Path(folder)
    config = ModelConfig.load(folder / "config.json")
    model = Rosie(config)
    candidates = [weights] if weights else [w for w in WEIGHT_ORDER if (folder / "weights" / w).exists()]
    if not candidates:
        raise FileNotFoundError(f"{folder}: no weights/*.safetensors")
    model.load_state_dict(load_weights(folder / "weights" / candidates[0]))
    model.to(device).eval()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer" / "tokenizer.json"))
    settings = json.loads((folder / "tokenizer" / "tokenizer_config.json").read_text(encoding="utf-8"))
    return LoadedRosie(model, tokenizer, settings, folder)


@torch.no_grad()
def generate(rosie: LoadedRosie, prompt: list[int], max_new_tokens: int = 48, temperature: float = 0.0,
             top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0, persona: int = 0,
             memory: list[str] | None = None, seed: int | None = None) -> tuple[list[int], torch.Tensor]:
    """New token ids until a stop token (excluded) and the final hidden states of the reply (for the
    emotion head). Greedy at temperature 0."""
    model, device = rosie.model, next(rosie.model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    limit = model.config.max_seq_len
    prompt = prompt[-(limit - max_new_tokens):] if len(prompt) + max_new_tokens > limit else prompt
    cache = KVCache.empty(model.config, 1, min(limit, len(prompt) + max_new_tokens), device,
                          next(model.parameters()).dtype)
    bank, bank_mask = rosie.encode_facts(memory or [])
    persona_ids = torch.tensor([persona], device=device)
    hidden = model(torch.tensor([prompt], device=device), persona=persona_ids, memory=bank, memory_mask=bank_mask,
                   cache=cache)
    produced: list[int] = []
    # the states that predicted the reply (from the <|rosie|> prompt token on): what the emotion head
    # pooled in training, where the loss mask covered the reply and its closing token
    states: list[torch.Tensor] = [hidden[:, -1]]
    stops = rosie.stop_ids
    for _ in range(max_new_tokens):
        logits = model.lm_logits(hidden[:, -1]).float()[0]
        if repetition_penalty != 1.0 and produced:
            seen = torch.tensor(sorted(set(produced)), device=device)
            logits[seen] = torch.where(logits[seen] > 0, logits[seen] / repetition_penalty, logits[seen] * repetition_penalty)
        token = _pick(logits, temperature, top_k, top_p, generator)
        if token in stops:
            break
        produced.append(token)
        hidden = model(torch.tensor([[token]], device=device), persona=persona_ids, memory=bank,
                       memory_mask=bank_mask, cache=cache)
        states.append(hidden[:, -1])
    return produced, torch.stack(states, dim=1)


def _pick(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator: torch.Generator | None) -> int:
    if temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p < 1.0:
        ordered, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(ordered, 0) - ordered < top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
        probs = probs / probs.sum()
    return int(torch.multinomial(probs, 1, generator=generator))


def emotion_of(rosie: LoadedRosie, reply_states: torch.Tensor) -> str:
    """The emotion head's reading of the reply (it reads the first state: where Rosie's turn begins)."""
    mask = torch.ones(reply_states.shape[:2], dtype=torch.bool, device=reply_states.device)
    with torch.no_grad():
        index = int(rosie.model.emotion_logits(reply_states, mask).argmax(-1))
    return rosie.model.config.emotions[index]
