"""Every option of the data library can be set from the Launchpad: the assets' run config is generated from the
library's options dataclasses, so a new option cannot be forgotten, and a config that lacks one is refused."""

import dataclasses

import dagster as dg
import pytest

from dagster_project.config import dataclass_from_config, options_config
from dagster_project.definitions import build_definitions
from rosie_pipeline.curate.dedup import DedupOptions
from rosie_pipeline.curate.pipeline import RuleSet
from rosie_pipeline.dialogue.datasets import EmotionOptions, MemoryOptions, PersonalityOptions
from rosie_pipeline.ingest.books import BookOptions
from rosie_pipeline.ingest.common_crawl import CommonCrawlOptions
from rosie_pipeline.ingest.reddit import RedditOptions
from rosie_pipeline.tokenize.dialogue_shards import DialogueShardOptions
from rosie_pipeline.tokenize.shards import ShardOptions
from rosie_pipeline.tokenize.tokenizer import TokenizerOptions

#: Asset -> (the library options it passes on, where they sit in its config: a path of nested fields).
FED_BY = {
    "cc_documents": (CommonCrawlOptions, ()),
    "book_documents": (BookOptions, ()),
    "reddit_threads": (RedditOptions, ()),
    "filtered_documents": (RuleSet, ("web",)),
    "deduplicated_documents": (DedupOptions, ()),
    "personality_dialogues": (PersonalityOptions, ()),
    "emotion_dialogues": (EmotionOptions, ()),
    "memory_dialogues": (MemoryOptions, ()),
    "rosie_tokenizer": (TokenizerOptions, ()),
    "pretrain_shards": (ShardOptions, ()),
    "dialogue_shards": (DialogueShardOptions, ()),
    "bootstrap_dialogue_shards": (DialogueShardOptions, ()),
}


def _config_fields(asset: dg.AssetsDefinition, path: tuple[str, ...]) -> dict[str, object]:
    config_type = asset.op.config_schema.config_type
    for name in path:
        config_type = config_type.fields[name].config_type
    return config_type.fields


@pytest.mark.parametrize("asset_name", sorted(FED_BY))
def test_every_library_option_is_in_the_launchpad(asset_name):
    assets = {a.key.to_user_string(): a for a in build_definitions().assets}
    options_type, path = FED_BY[asset_name]
    fields = _config_fields(assets[asset_name], path)
    missing = [f.name for f in dataclasses.fields(options_type) if f.name not in fields]
    assert not missing


def test_curation_rules_exist_for_every_source_with_the_library_defaults():
    from dagster_project.assets.curate import CurationConfig
    from rosie_pipeline.curate.pipeline import default_rules

    rules = CurationConfig().rule_sets()
    assert rules == default_rules()


def test_a_generated_config_carries_the_library_defaults_and_its_comments():
    config_type = options_config(DialogueShardOptions, "Shards")
    assert config_type().seq_len == DialogueShardOptions().seq_len
    assert "memory" in config_type.model_fields["memory_in_context"].description
    assert dataclass_from_config(config_type(seq_len=64), DialogueShardOptions) == DialogueShardOptions(seq_len=64)


def test_a_config_without_an_option_is_refused_not_defaulted():
    class Partial(dg.Config):
        seq_len: int = 64

    with pytest.raises(TypeError, match="lacks .*rows_per_shard"):
        dataclass_from_config(Partial(), DialogueShardOptions)
