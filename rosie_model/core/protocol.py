"""The interface both kinds of Rosie implement, and the one place that picks the kind for a model folder.

The training engine, the evaluation and the chat API talk to a model only through :class:`RosieCore`,
so Rosie's own transformer (:class:`~rosie_model.core.model.RosieTransformer`, the scratch approach) and a
pretrained model adapted with LoRA (:class:`~rosie_model.core.bootstrap.BootstrapRosie`) go through the
same code; nothing outside ``core`` asks which one it holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from rosie_model.core.config import ModelConfig
from rosie_model.core.layout import ModelFolder


@runtime_checkable
class RosieCore(Protocol):
    """A Rosie model: hidden states in, LM and emotion logits out, personas and memory as conditioning."""

    config: ModelConfig
    gradient_checkpointing: bool
    #: A separate output layer replacing the tied embedding (int8 quantization sets it).
    output_head: torch.nn.Module | None
    #: One linear layer over :meth:`emotion_features` (so it can also be fitted on its own).
    emotion_head: torch.nn.Linear

    def forward(self, input_ids: torch.Tensor, persona: torch.Tensor | None = None,
                memory: torch.Tensor | None = None, memory_mask: torch.Tensor | None = None,
                cache: Any = None) -> torch.Tensor:
        """(batch, length) ids -> (batch, length, d_model) final hidden states."""

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d_model) -> (..., vocab_size)."""

    def emotion_features(self, hidden: torch.Tensor, turn_mask: torch.Tensor) -> torch.Tensor:
        """(batch, length, d_model), (batch, length) bool -> (batch, d_model): what the emotion head reads, from
        the positions before her turn starts (the first position of ``turn_mask``)."""

    def emotion_logits(self, hidden: torch.Tensor, turn_mask: torch.Tensor) -> torch.Tensor:
        """(batch, length, d_model), (batch, length) bool -> (batch, emotions): the head on those features."""

    def encode_memory(self, fact_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, facts, tokens) ids -> memory bank and slot mask (only when ``config.memory_layers``)."""

    def new_cache(self, batch: int, max_len: int, device: torch.device, dtype: torch.dtype) -> Any:
        """An empty KV cache for incremental decoding."""

    def num_parameters(self) -> int: ...

    @property
    def tok_emb(self) -> torch.nn.Module:
        """The input embedding (its weight tells the model's device and dtype)."""

    def phase_trains(self, phase: str) -> tuple[str, ...]:
        """The parameter groups (trunk, memory, persona, emotion_head) that train in ``phase``."""

    def starting_weights(self, folder: ModelFolder, phase: str) -> Path | None:
        """The weights ``phase`` starts from in ``folder`` (None: as built); raises when a phase needs some."""

    def trained_state(self) -> dict[str, torch.Tensor]:
        """What a checkpoint and a weights file keep (the bootstrap path never re-saves pretrained weights)."""

    def load_trained_state(self, weights: dict[str, torch.Tensor]) -> None: ...

    def save_extras(self, folder: ModelFolder) -> None:
        """Files besides config, tokenizer and weights that the model folder needs to load this kind."""


def build_model(folder: ModelFolder, config: ModelConfig) -> RosieCore:
    """The model a folder describes, freshly initialised (weights are loaded by the caller)."""
    if folder.is_bootstrap:
        from rosie_model.core.bootstrap import BootstrapRosie, BootstrapSettings

        return BootstrapRosie(BootstrapSettings.load(folder.bootstrap), folder.tokenizer, config.max_seq_len)
    from rosie_model.core.model import RosieTransformer

    return RosieTransformer(config)
