"""Dialogue group: personality_dialogues, emotion_dialogues, memory_dialogues (phase 2 and 3 data).

Each asset assembles its dataset through rosie_pipeline.dialogue.datasets and reports counts by split
and emotion, a sample, and checks: no empty turns, a usable label distribution, no dialogue in two
splits. ``dialogue_shards`` (tokenize group) turns all three into token shards.
"""

import dataclasses
from collections.abc import Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import dagster as dg

from dagster_project.lake import Lake

from dagster_project.config import dataclass_from_config, md_table, options_config
from dagster_project.resources import RosieHomeResource
from rosie_pipeline.dialogue.datasets import (
    EMOTION_FORMS,
    PERSONALITY_FORMS,
    EmotionOptions,
    MemoryOptions,
    PersonalityOptions,
    build_emotion,
    build_memory,
    build_personality,
    dialogue_report,
    landing_files,
)
from rosie_pipeline.dialogue.importers import PersonaRegistry
from rosie_pipeline.dialogue.schema import DIALOGUE_SCHEMA
from rosie_pipeline.ingest.records import Rejected, Row
from rosie_pipeline.parquet import iter_rows
from rosie_pipeline.step import run_step


class DialogueChecks(dg.Config):
    min_emotions: int = 5
    """label_distribution fails with fewer distinct emotions among Rosie's turns."""
    max_emotion_share: float = 0.6
    """…or when one emotion labels more than this share of them."""
    force: bool = False


PersonalityConfig = options_config(PersonalityOptions, "PersonalityConfig", DialogueChecks)
EmotionConfig = options_config(EmotionOptions, "EmotionConfig", DialogueChecks)


class MemoryChecks(DialogueChecks):
    """Memory dialogues are about facts, not feelings: any emotion mix passes."""

    min_emotions: int = 1
    max_emotion_share: float = 1.0


MemoryConfig = options_config(MemoryOptions, "MemoryConfig", MemoryChecks)


def _checks(name: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("no_empty_turns", asset=name, description="Every turn has text (or an event)."),
        dg.AssetCheckSpec("label_distribution", asset=name, description="Enough distinct emotions, none dominating."),
        dg.AssetCheckSpec("no_leakage", asset=name, description="No dialogue appears in two splits."),
    ]


def _materialize(context: dg.AssetExecutionContext, rosie: RosieHomeResource, config: DialogueChecks,
                 read: Callable[[], Iterable[Row | Rejected]], inputs: list[Path], options: Any) -> dg.MaterializeResult:
    home, name = rosie.home, context.asset_key.to_user_string()
    result = run_step(read, inputs=inputs, out_dir=Lake(home)[name], schemas={"dialogues": DIALOGUE_SCHEMA},
                      quarantine_path=home.quarantine / name / "dialogues.jsonl",
                      options=dataclasses.asdict(options), force=config.force)
    report = dialogue_report(list(iter_rows(result.tables["dialogues"])))
    emotions = report["emotions"]
    total = sum(emotions.values())
    top_share = max(emotions.values()) / total if total else 1.0
    context.log.info(f"{report['dialogues']:,} dialogues {report['splits']}; "
                     f"{result.stats.bad_total:,} malformed records skipped")
    rows = sorted(([e, n, f"{n / total:.1%}"] for e, n in emotions.items()), key=lambda r: -r[1])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report["dialogues"],
            "splits": dg.MetadataValue.json(report["splits"]),
            "emotions": dg.MetadataValue.md(md_table(["emotion", "Rosie turns", "share"], rows)),
            "skipped_by_reason": dg.MetadataValue.md(result.stats.reasons_markdown()),
            "sample": dg.MetadataValue.md(md_table(["source", "dialogue"], [[s["title"], s["text"]] for s in result.sample])),
            "path": dg.MetadataValue.path(str(result.tables["dialogues"])),
        },
        check_results=[
            dg.AssetCheckResult(check_name="no_empty_turns", passed=report["empty_turns"] == 0,
                                metadata={"empty_turns": report["empty_turns"]}),
            dg.AssetCheckResult(check_name="label_distribution",
                                passed=len(emotions) >= config.min_emotions and top_share <= config.max_emotion_share,
                                metadata={"emotions": len(emotions), "top_share": round(top_share, 3)}),
            dg.AssetCheckResult(check_name="no_leakage", passed=report["leaked_dialogues"] == 0,
                                metadata={"leaked_dialogues": report["leaked_dialogues"]}),
        ],
    )


def _seed_files() -> list[Path]:
    """The data the generators expand (seed exchanges, knowledge answers) and the scorecard they must keep out:
    inputs, so editing any of them rebuilds the dialogues."""
    generated = sorted(Path(str(resources.files("rosie_pipeline.dialogue").joinpath("data"))).glob("*.yaml"))
    return [*generated, Path(str(resources.files("rosie_pipeline").joinpath("data/scorecard.yaml")))]


@dg.asset(group_name="dialogue", deps=["reddit_threads"], check_specs=_checks("personality_dialogues"),
          kinds={"parquet"},
          description="Rosie's curated seed set expanded to ~10k near-duplicate-free dialogues, plus imported "
          "conversations (chitchat, Reddit chains, SillyTavern logs, character cards, CharacterAI dumps).")
def personality_dialogues(context: dg.AssetExecutionContext, config: PersonalityConfig,
                          rosie: RosieHomeResource) -> dg.MaterializeResult:
    home = rosie.home
    options = dataclass_from_config(config, PersonalityOptions)
    registry = PersonaRegistry(Lake(home)["personality_dialogues"] / "personas.json", options.personas)
    inputs = [*_seed_files(), *[p for p in landing_files(home) if p.suffix.lower() in PERSONALITY_FORMS]]
    reddit = rosie.lake.reddit_candidates() if options.use_reddit else []
    inputs += reddit
    outcome = _materialize(context, rosie, config, lambda: build_personality(home, options, registry, reddit), inputs,
                           options)
    registry.save()
    return outcome


@dg.asset(group_name="dialogue", check_specs=_checks("emotion_dialogues"), kinds={"parquet"},
          description="Emotion-labelled dialogues: GoEmotions, DailyDialog and EmpatheticDialogues files landed in "
          "landing/dialogue (labels mapped onto Rosie's), a gold split kept apart, and weakly labelled chitchat.")
def emotion_dialogues(context: dg.AssetExecutionContext, config: EmotionConfig,
                      rosie: RosieHomeResource) -> dg.MaterializeResult:
    home = rosie.home
    options = dataclass_from_config(config, EmotionOptions)
    inputs = [p for p in landing_files(rosie.home) if p.suffix.lower() in EMOTION_FORMS]
    return _materialize(context, rosie, config, lambda: build_emotion(home, options), inputs, options)


@dg.asset(group_name="dialogue", check_specs=_checks("memory_dialogues"), kinds={"parquet"},
          description="Dialogues where facts told early live only in the memory column and are asked about later, "
          "with real conversation as distractors; a held-out split measures recall.")
def memory_dialogues(context: dg.AssetExecutionContext, config: MemoryConfig,
                     rosie: RosieHomeResource) -> dg.MaterializeResult:
    options = dataclass_from_config(config, MemoryOptions)
    return _materialize(context, rosie, config, lambda: build_memory(options), _seed_files(), options)


DIALOGUE_ASSETS = [personality_dialogues, emotion_dialogues, memory_dialogues]
