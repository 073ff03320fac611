"""Where a Rosie run keeps everything: one folder, ``ROSIE_HOME`` (default ``./.rosie``).

The library's stages take the folders they read and write as arguments; which asset's output lives in which
folder under ``lake/`` is the orchestrator's to say (``dagster_project/lake.py``). This class names the
fixed parts of the home: landing/, lake/ and its quarantine, tokenizer/, models/, mlflow/, dagster/.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".rosie"

#: Sub-folders of ``landing/`` and the source name each one feeds.
LANDING_SOURCES = ("common_crawl", "books", "reddit", "dialogue")


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The absolute Rosie home: the argument, else ``$ROSIE_HOME``, else ``./.rosie``."""
    chosen = home if home not in (None, "") else os.environ.get("ROSIE_HOME") or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


@dataclass(frozen=True)
class RosieHome:
    """The folder layout of DESIGN.md, rooted at one directory."""

    root: Path

    @classmethod
    def from_env(cls, home: str | os.PathLike[str] | None = None) -> RosieHome:
        return cls(resolve_home(home))

    @property
    def landing(self) -> Path:
        return self.root / "landing"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    @property
    def quarantine(self) -> Path:
        return self.lake / "quarantine"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def mlflow(self) -> Path:
        return self.root / "mlflow"

    @property
    def dagster(self) -> Path:
        return self.root / "dagster"

    def landing_dir(self, source: str) -> Path:
        if source not in LANDING_SOURCES:
            raise ValueError(f"unknown landing source {source!r}; expected one of {LANDING_SOURCES}")
        return self.landing / source

    def create_layout(self) -> None:
        """Make the empty folders a new user drops files into (idempotent)."""
        for source in LANDING_SOURCES:
            self.landing_dir(source).mkdir(parents=True, exist_ok=True)
        for folder in (self.quarantine, self.tokenizer, self.models, self.mlflow, self.dagster):
            folder.mkdir(parents=True, exist_ok=True)
