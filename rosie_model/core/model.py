"""The Rosie transformer, in one file.

A decoder-only language model (RMSNorm, rotary positions, SwiGLU, scaled-dot-product attention with
grouped-query support, tied input/output embeddings, a KV cache) with three additions that turn it
into Rosie:

* an emotion head: a classifier over the hidden states of Rosie's turn;
* memory attention: in chosen layers, gated cross-attention into a bank of memory vectors (facts the
  user told her). The gate starts at zero, so until phase 3 trains it the model *is* the base LM;
* a personality embedding: one learned trait vector per persona, added at every position (persona 0
  is Rosie). It also starts at zero.

The base LM part maps one to one onto Hugging Face's Llama (see ``export.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from rosie_model.core.config import ModelConfig
from rosie_model.core.layout import PHASES, ModelFolder

#: What trains in each phase, by parameter group ("trunk" = embeddings, blocks' attention/MLP, norms). Phase 3
#: trains the trunk too: with a frozen trunk recall stayed near chance on the demo (the facts are read by the
#: trunk, which has to learn to write them so a question can find them).
PHASE_TRAINS = {
    "base": ("trunk",),
    "personality": ("trunk", "persona", "emotion_head"),
    "emotion_memory": ("trunk", "memory", "persona", "emotion_head"),
}


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in float32 whatever the autocast dtype, as Llama does (one fused kernel where there is one)
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * normed.to(x.dtype)


def rope_tables(head_dim: int, length: int, theta: float, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables (length, head_dim) in the half-split layout Llama uses."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return (x * cos + rotated * sin).to(x.dtype)


@dataclass
class KVCache:
    """Keys and values of every layer for incremental decoding, preallocated to ``max_len``."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0
    #: Memory attention's projected bank (keys, values) per layer: the bank is fixed for a reply, so it is
    #: projected once, not at every token (which cost a quarter of the tokens/s with 4 facts).
    memory: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @classmethod
    def empty(cls, config: ModelConfig, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        shape = (batch, config.kv_heads, max_len, config.head_dim)
        return cls([torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)],
                   [torch.zeros(shape, device=device, dtype=dtype) for _ in range(config.n_layers)])


class Attention(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.kv_heads, self.head_dim = config.n_heads, config.kv_heads, config.head_dim
        # queries, keys and values in one matmul (rows: q, then k, then v)
        self.wqkv = nn.Linear(config.d_model, (config.n_heads + 2 * config.kv_heads) * config.head_dim, bias=False)
        self.wo = nn.Linear(config.n_heads * config.head_dim, config.d_model, bias=False)
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        batch, length, _ = x.shape
        qkv = self.wqkv(x).view(batch, length, self.n_heads + 2 * self.kv_heads, self.head_dim).transpose(1, 2)
        q, k, v = qkv.split([self.n_heads, self.kv_heads, self.kv_heads], dim=1)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        start = 0
        if cache is not None:
            start = cache.length
            cache.keys[layer][:, :, start : start + length] = k
            cache.values[layer][:, :, start : start + length] = v
            k = cache.keys[layer][:, :, : start + length]
            v = cache.values[layer][:, :, : start + length]
        mask, causal = None, start == 0 and length > 1
        if start > 0 and length > 1:  # a chunk after cached tokens: causal within the chunk, all of the past
            mask = torch.ones(length, start + length, dtype=torch.bool, device=x.device).tril(diagonal=start)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0,
            enable_gqa=self.kv_heads != self.n_heads,
        )
        return self.wo(out.transpose(1, 2).reshape(batch, length, -1))


class SwiGLU(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.w13 = nn.Linear(config.d_model, 2 * config.d_ff, bias=False)  # gate and up in one matmul
        self.w2 = nn.Linear(config.d_ff, config.d_model, bias=False)  # down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.w13(x).chunk(2, dim=-1)
        return self.w2(F.silu(gate) * up)


class MemoryAttention(nn.Module):
    """Cross-attention from the sequence into the memory bank, scaled by tanh(gate); gate starts at 0.

    Keys come from the facts as the trunk read them (so a query can find "the name" in "The user's name
    is Kai."); values are the facts' token embeddings, which the tied output layer maps straight back to
    those tokens, so copying a remembered word is a short path. A learned empty slot (a key with a zero
    value) lets positions that need no memory attend to nothing, so opening the gate helps the positions
    that do without disturbing the rest; rows without any memory attend only to it.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.wq = nn.Linear(config.d_model, config.d_model, bias=False)
        self.wk = nn.Linear(config.d_model, config.d_model, bias=False)
        self.wv = nn.Linear(config.d_model, config.d_model, bias=False)
        self.wo = nn.Linear(config.d_model, config.d_model, bias=False)
        self.empty_key = nn.Parameter(torch.zeros(config.d_model))
        self.gate = nn.Parameter(torch.zeros(1))

    def project(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bank (batch, slots, 2 * d_model) as keys and values (batch, heads, 1 + slots, head_dim), the empty
        slot first."""
        batch, slots, _ = memory.shape
        keys, values = memory.chunk(2, dim=-1)
        k = self.wk(keys).view(batch, slots, self.n_heads, self.head_dim).transpose(1, 2)
        v = self.wv(values).view(batch, slots, self.n_heads, self.head_dim).transpose(1, 2)
        empty = self.empty_key.to(k.dtype).view(1, self.n_heads, 1, self.head_dim).expand(batch, -1, -1, -1)
        return torch.cat([empty, k], dim=2), torch.cat([torch.zeros_like(empty), v], dim=2)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        batch, length, _ = x.shape
        q = self.wq(self.norm(x)).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        if cache is None:
            k, v = self.project(memory)
        else:  # decoding: the bank is the same for every token of the reply
            if layer not in cache.memory:
                cache.memory[layer] = self.project(memory)
            k, v = cache.memory[layer]
        mask = None
        if memory_mask is not None:
            present = torch.cat([memory_mask.new_ones(batch, 1), memory_mask], dim=1)
            mask = present[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        out = self.wo(out.transpose(1, 2).reshape(batch, length, -1))
        return torch.tanh(self.gate).to(out.dtype) * out


class Block(nn.Module):
    def __init__(self, config: ModelConfig, with_memory: bool) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(config.d_model, config.norm_eps)
        self.attn = Attention(config)
        self.mlp_norm = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = SwiGLU(config)
        self.memory = MemoryAttention(config) if with_memory else None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, memory: torch.Tensor | None,
                memory_mask: torch.Tensor | None, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer)
        if self.memory is not None and memory is not None:
            x = x + self.memory(x, memory, memory_mask, cache, layer)
        return x + self.mlp(self.mlp_norm(x))


class RosieTransformer(nn.Module):
    """Rosie's own decoder (scratch approach): RMSNorm, RoPE, SwiGLU, SDPA, tied embeddings, KV cache, with
    persona vectors, an emotion head and gated memory attention. Implements :class:`~rosie_model.core.protocol.RosieCore`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.persona = nn.Embedding(config.n_personas, config.d_model)
        self.blocks = nn.ModuleList(Block(config, i in config.memory_layers) for i in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.emotion_head = nn.Linear(config.d_model, len(config.emotions))
        self.memory_proj = nn.Linear(config.d_model, config.d_model, bias=False)
        #: A separate output layer replacing the tied embedding (set only by int8 quantization, which
        #: needs the output projection as a Linear of its own).
        self.output_head: nn.Module | None = None
        self.gradient_checkpointing = False
        cos, sin = rope_tables(config.head_dim, config.max_seq_len, config.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """GPT-2 style init; residual outputs scaled by depth; persona and memory gates at zero."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for name, param in self.named_parameters():
            if name.endswith("gate") or name.startswith("persona"):
                nn.init.zeros_(param)
            elif ".memory.wv." in name or ".memory.wo." in name:
                nn.init.eye_(param)
            elif name.endswith("norm.weight"):
                nn.init.ones_(param)
            elif name.endswith("bias"):
                nn.init.zeros_(param)
            else:
                std = residual_std if name.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(param, mean=0.0, std=std)

    def rope(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        if start + length > self.rope_cos.shape[0]:
            raise ValueError(f"sequence of {start + length} tokens is longer than max_seq_len "
                             f"{self.config.max_seq_len}")
        return self.rope_cos[start : start + length], self.rope_sin[start : start + length]

    def new_cache(self, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        return KVCache.empty(self.config, batch, max_len, device, dtype)

    def encode_memory(self, fact_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, facts, tokens) of token ids, ``pad_id`` for padding -> (memory bank, which slots exist).

        Each fact is read by the model's own trunk (causally, without memory or persona), so the vector
        at "blue" in "The user's favourite colour is blue." already knows it is the favourite colour;
        the bank keeps one such vector per fact token, projected, and memory attention picks from it. A fact
        longer than the model's context (a long past turn) is read up to ``max_seq_len`` tokens.
        """
        fact_ids = fact_ids[..., : self.config.max_seq_len]
        batch, facts, width = fact_ids.shape
        flat = fact_ids.reshape(batch * facts, width)
        present = flat != self.config.pad_id
        hidden = self(flat)
        values = F.rms_norm(self.tok_emb(flat), (self.config.d_model,), eps=self.config.norm_eps)
        bank = torch.cat([self.memory_proj(hidden), values], dim=-1)
        return bank.reshape(batch, facts * width, -1), present.reshape(batch, facts * width)

    def forward(
        self,
        input_ids: torch.Tensor,
        persona: torch.Tensor | None = None,
        memory: torch.Tensor | None = None,
        memory_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
    ) -> torch.Tensor:
        """Final hidden states (batch, length, d_model); ``lm_logits`` and ``emotion_logits`` read them."""
        start = cache.length if cache is not None else 0
        cos, sin = self.rope(start, input_ids.shape[1])
        x = self.tok_emb(input_ids)
        if persona is not None:
            x = x + self.persona(persona)[:, None, :]
        for layer, block in enumerate(self.blocks):
            if self.gradient_checkpointing and self.training:
                x = checkpoint(block, x, cos, sin, memory, memory_mask, None, layer, use_reentrant=False)
            else:
                x = block(x, cos, sin, memory, memory_mask, cache, layer)
        if cache is not None:
            cache.length += input_ids.shape[1]
        return self.norm(x)

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.output_head is not None:
            return self.output_head(hidden)
        return F.linear(hidden, self.tok_emb.weight)  # tied with the input embedding

    def emotion_features(self, hidden: torch.Tensor, turn_mask: torch.Tensor) -> torch.Tensor:
        """The state where her turn starts (the first position of ``turn_mask``).

        Her turn opens with an ``<|emotion:…|>`` token; any position after it could simply copy that
        token, so the classifier reads the state that decides it: the context up to ``<|rosie|>``.
        That is also when the avatar needs to know how she feels — before she speaks.
        """
        first = turn_mask & (turn_mask.cumsum(dim=1) == 1)
        return (hidden * first.to(hidden.dtype).unsqueeze(-1)).sum(1)

    def emotion_logits(self, hidden: torch.Tensor, turn_mask: torch.Tensor) -> torch.Tensor:
        """The emotion of Rosie's turn: the head on :meth:`emotion_features`."""
        return self.emotion_head(self.emotion_features(hidden, turn_mask))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- what the training engine asks of every RosieCore ---------------------------------------------
    def phase_trains(self, phase: str) -> tuple[str, ...]:
        return PHASE_TRAINS[phase]

    def starting_weights(self, folder: ModelFolder, phase: str) -> Path | None:
        """Phase 1 starts from the initialisation, every later phase from the one before it."""
        previous = folder.previous_weights(phase)
        if previous is None and phase != PHASES[0]:
            raise FileNotFoundError(f"phase {phase} starts from the previous phase's weights; none in {folder.root}")
        return previous

    def trained_state(self) -> dict[str, torch.Tensor]:
        return self.state_dict()

    def load_trained_state(self, weights: dict[str, torch.Tensor]) -> None:
        self.load_state_dict(weights)

    def save_extras(self, folder: ModelFolder) -> None:
        """Nothing: config, tokenizer and weights describe this model completely."""
