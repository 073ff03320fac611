"""Where things are: the Rosie home, its MLflow store, and what a model folder holds.

A model folder is the contract between training (which writes it), evaluation and the registry (which
read and publish it) and serving (which loads it), so its file names are spelled here and nowhere else::

    config.json                 the trunk's sizes (ModelConfig)
    tokenizer/                  tokenizer.json + tokenizer_config.json (chat template, emotions, events)
    weights/base.safetensors    after phase 1 (scratch only)
    weights/personality.safetensors, weights/final.safetensors   after phases 2 and 3
    bootstrap.json              bootstrap approach only: the pretrained source and LoRA settings
    sampling.json               the sampling settings chosen on the evaluation's tuning prompts
    adapters/, merged/          bootstrap approach only: peft adapters and a plain transformers model
    checkpoints/<phase>/step-NNNNNNNN/   resumable training state
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The registered model's name in MLflow (``models:/rosie@champion``).
MODEL_NAME = "rosie"
PHASES = ("base", "personality", "emotion_memory")
#: The weights file each phase writes, in training order.
PHASE_WEIGHTS = {"base": "base.safetensors", "personality": "personality.safetensors",
                 "emotion_memory": "final.safetensors"}
#: The short names export and the CLI use for those files (base, personality, final).
WEIGHT_NAMES = tuple(name.removesuffix(".safetensors") for name in PHASE_WEIGHTS.values())


def rosie_home() -> Path:
    """``$ROSIE_HOME``, default ``./.rosie`` (the data pipeline resolves it the same way)."""
    return Path(os.environ.get("ROSIE_HOME") or ".rosie").expanduser().resolve()


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, else the home's sqlite store (MLflow 3 refuses a plain ./mlruns)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{rosie_home() / 'mlflow' / 'mlflow.db'}"


def memory_db() -> Path:
    """The long-term memory store shared by every chat front end of this home."""
    return rosie_home() / "memory" / "memory.db"


def feedback_db() -> Path:
    """Ratings and kept alternatives of every served completion, for preference tuning."""
    return rosie_home() / "feedback" / "feedback.db"


def model_cache() -> Path:
    """Where registered models whose artifacts live elsewhere are fetched to, once."""
    return rosie_home() / "cache" / "models"


def converted_cache() -> Path:
    """Where GGUF files are kept converted to Hugging Face folders (converting takes seconds; loading one, less)."""
    return rosie_home() / "cache" / "gguf"


@dataclass(frozen=True)
class ModelFolder:
    """The files of one model folder (see the module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def tokenizer_files(self) -> tuple[Path, Path]:
        return self.tokenizer / "tokenizer.json", self.tokenizer / "tokenizer_config.json"

    @property
    def bootstrap(self) -> Path:
        return self.root / "bootstrap.json"

    @property
    def sampling(self) -> Path:
        return self.root / "sampling.json"

    @property
    def is_bootstrap(self) -> bool:
        return self.bootstrap.is_file()

    def weights(self, phase: str) -> Path:
        return self.root / "weights" / PHASE_WEIGHTS[phase]

    def weights_named(self, name: str) -> Path:
        """``base``, ``personality`` or ``final`` (the names export takes)."""
        if name not in WEIGHT_NAMES:
            raise ValueError(f"weights are one of {WEIGHT_NAMES}, not {name!r}")
        return self.root / "weights" / f"{name}.safetensors"

    def previous_weights(self, phase: str) -> Path | None:
        """The weights the phase starts from: the previous phase's, when they exist."""
        index = PHASES.index(phase)
        if index == 0:
            return None
        path = self.weights(PHASES[index - 1])
        return path if path.exists() else None

    def latest_weights(self) -> Path | None:
        """The latest phase's weights that exist (what a chat loads by default)."""
        return next((p for p in (self.weights(ph) for ph in reversed(PHASES)) if p.is_file()), None)

    def checkpoints(self, phase: str) -> Path:
        return self.root / "checkpoints" / phase

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def merged(self) -> Path:
        return self.root / "merged"
