"""Model configuration: one dataclass, saved as ``config.json``, and the named presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Rosie's emotions as the tokenizer config lists them; a model trained on another list carries its own.
DEFAULT_EMOTIONS = ("neutral", "happy", "excited", "love", "surprised", "curious", "shy", "sad", "angry", "scared")


@dataclass
class ModelConfig:
    vocab_size: int = 32_000
    n_layers: int = 4
    d_model: int = 128
    n_heads: int = 4
    n_kv_heads: int | None = None  # grouped-query attention when smaller than n_heads
    d_ff: int = 384
    max_seq_len: int = 256
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    #: Emotion head: a classifier over Rosie's turn.
    emotions: tuple[str, ...] = DEFAULT_EMOTIONS
    #: Layers (0-based) that get gated cross-attention into the memory bank.
    memory_layers: tuple[int, ...] = (1, 3)
    #: Personality: one learned trait vector per persona, added to every position; persona 0 is Rosie.
    n_personas: int = 8
    eos_id: int = 0
    pad_id: int = 1
    preset: str = "custom"

    def __post_init__(self) -> None:
        self.emotions = tuple(self.emotions)
        self.memory_layers = tuple(self.memory_layers)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not a multiple of n_heads {self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.kv_heads}")
        bad = [i for i in self.memory_layers if not 0 <= i < self.n_layers]
        if bad:
            raise ValueError(f"memory_layers {bad} outside 0..{self.n_layers - 1}")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        from rosie_model.core.checkpoint import write_text_atomic

        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ModelConfig:
        payload = json.loads(path.read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in payload.items() if k in known})


def _preset(name: str, **fields: Any) -> ModelConfig:
    return ModelConfig(preset=name, **fields)


PRESETS: dict[str, Any] = {
    # CPU tests and the demo
    "tiny": lambda: _preset("tiny", n_layers=4, d_model=128, n_heads=4, d_ff=384, max_seq_len=256,
                            memory_layers=(1, 3)),
    "rosie-125m": lambda: _preset("rosie-125m", n_layers=12, d_model=768, n_heads=12, d_ff=2048, max_seq_len=2048,
                                  memory_layers=(3, 7, 11)),
    # the seed design's model: 16 layers, 1024 hidden, 16 heads, 2048 context, 32k vocabulary
    "rosie-seed": lambda: _preset("rosie-seed", n_layers=16, d_model=1024, n_heads=16, d_ff=2816, max_seq_len=2048,
                                  memory_layers=(3, 7, 11, 15)),
    "rosie-500m": lambda: _preset("rosie-500m", n_layers=24, d_model=1280, n_heads=20, n_kv_heads=4, d_ff=3584,
                                  max_seq_len=2048, memory_layers=(5, 11, 17, 23)),
    "rosie-1b": lambda: _preset("rosie-1b", n_layers=20, d_model=2048, n_heads=16, n_kv_heads=8, d_ff=5632,
                                max_seq_len=2048, memory_layers=(4, 9, 14, 19)),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    config = PRESETS[name]()
    return dataclasses.replace(config, **overrides) if overrides else config


__all__ = ["DEFAULT_EMOTIONS", "ModelConfig", "PRESETS", "preset"]
