"""The one map from asset names to folders.

Every asset writes under ``lake/<asset name>/`` and the bootstrap approach's data products under
``lake/bootstrap_*``; models live under ``models/``. The data library never knows these names: each asset
looks its inputs up here and passes plain paths to rosie_pipeline, so the dependency graph is declared once,
as Dagster deps, and this file says where each node keeps its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rosie_pipeline.paths import RosieHome
from rosie_pipeline.step import committed_outputs
from rosie_pipeline.tokenize.build import TokenizerInputs, deduplicated_files, dialogue_candidate_files

APPROACHES = ("scratch", "bootstrap")
#: Each approach's evaluation and registration assets (each approach has its own assets from its tokenizer on).
EVALUATION_ASSET = {"scratch": "model_evaluation", "bootstrap": "bootstrap_evaluation"}
REGISTRATION_ASSET = {"scratch": "registered_model", "bootstrap": "bootstrap_registered_model"}
#: Which dialogue assets feed which training phase's shards (DESIGN: phase 2 personality, phase 3 emotion + memory).
PHASE_DIALOGUES = {"personality": ("personality_dialogues",), "emotion_memory": ("emotion_dialogues", "memory_dialogues")}
#: The model-folder file that says a model finished its last phase (rosie_model.core.layout writes it; the
#: model-folder contract test checks the two agree).
FINAL_WEIGHTS = "weights/final.safetensors"


@dataclass(frozen=True)
class Lake:
    home: RosieHome

    def __getitem__(self, asset_name: str) -> Path:
        """The folder an asset writes (its partitions, if any, in sub-folders)."""
        return self.home.lake / asset_name

    # -- what the data assets read --------------------------------------------------------------------
    def deduplicated_files(self) -> list[Path]:
        return deduplicated_files(self["deduplicated_documents"])

    def reddit_candidates(self) -> list[Path]:
        return dialogue_candidate_files(self["reddit_threads"])

    def dialogue_table(self, asset_name: str) -> Path:
        return self[asset_name] / "dialogues.parquet"

    def dialogue_tables(self) -> list[Path]:
        return [path for names in PHASE_DIALOGUES.values() for name in names
                if (path := self.dialogue_table(name)).exists()]

    def dialogue_groups(self) -> dict[str, list[Path]]:
        """Phase -> the dialogue tables its shards are made of."""
        return {phase: [self.dialogue_table(name) for name in names] for phase, names in PHASE_DIALOGUES.items()}

    def tokenizer_inputs(self) -> TokenizerInputs:
        return TokenizerInputs(self.deduplicated_files(), self.reddit_candidates(), self.dialogue_tables())

    def folders(self, asset_names: list[str]) -> dict[str, Path]:
        return {name: self[name] for name in asset_names}

    def partitions(self, asset_name: str, table: str = "documents") -> dict[str, Path]:
        """The committed partitions of a partitioned asset: key -> table path."""
        return committed_outputs(self[asset_name], table)

    # -- the two approaches ---------------------------------------------------------------------------
    def tokenizer(self, approach: str) -> Path:
        """rosie_tokenizer (scratch) or bootstrap_tokenizer (the pretrained one with Rosie's tokens)."""
        return self.home.tokenizer if approach == "scratch" else self["bootstrap_tokenizer"]

    def dialogue_shards(self, approach: str) -> Path:
        """dialogue_shards or bootstrap_dialogue_shards: the same dialogues in each approach's token ids."""
        return self["dialogue_shards" if approach == "scratch" else "bootstrap_dialogue_shards"]

    def model_dir(self, approach: str) -> Path:
        return self.home.models / ("rosie_model" if approach == "scratch" else "rosie_bootstrap")

    def evaluation(self, approach: str) -> Path:
        """The folder of the approach's evaluation: its held-out sets and its last good results.json."""
        return self[EVALUATION_ASSET[approach]]

    def trained(self, approach: str) -> bool:
        """Whether the approach's model finished its last phase."""
        return (self.model_dir(approach) / FINAL_WEIGHTS).exists()
