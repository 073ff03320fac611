"""Evaluate group: model_evaluation (the scorecard and diagnostics, with floors) -> registered_model.

Both run rosie_model in a separate process through Dagster Pipes (dagster_project never imports it):
``python -m rosie_model evaluate`` on held-out sets that rosie_pipeline writes, and
``python -m rosie_model register``, once per model evaluated, which registers it in MLflow and moves the
``champion`` alias only when the new version beats the current champion (the rule is in the README).
"""

import json
from typing import Any, Literal

import dagster as dg

from dagster_project.lake import APPROACHES

from dagster_project.assets.train import rosie_model
from dagster_project.config import md_table
from dagster_project.launch import run_rosie_model
from dagster_project.resources import RosieHomeResource
from dagster_project.training_report import mlflow_run_url
from rosie_pipeline.atomic import read_json, write_json_atomic
from rosie_pipeline.evalsets import build_eval_sets
from rosie_pipeline.scorecard import leaked_dialogues


class EvaluationConfig(dg.Config):
    """Floors of the scorecard (DESIGN's targets for the demo's champion), and what to evaluate."""

    min_persona: float = 0.9
    """Share of who-are-you questions answered as Rosie, in character."""
    min_knowledge: float = 0.8
    """Share of everyday questions whose correct answer appears in the reply."""
    min_memory: float = 0.8
    """Share of facts told in one conversation recalled in a new one."""
    min_emotion_fit: float = 0.7
    """Share of messages answered with an emotion that fits them."""
    min_events: float = 1.0
    """Share of desktop events answered with a short, fluent, in-character reaction."""
    min_fluency: float = 0.95
    """Share of all replies in English, without leaked tokens, loops or cut words."""
    max_leaked_replies: int = 0
    """Replies that show special tokens or speaker labels."""
    val_permille: int = 10
    """Must match pretrain_shards' val_permille, so held-out documents really were held out."""
    memory_choices: int = 4
    memory_items: int = 200
    """Held-out memory dialogues in the multiple-choice diagnostic."""
    max_rows: int = 512
    """Dialogue-shard rows read for the likelihood diagnostics (dialogue bits per byte, emotion accuracy)."""
    diagnostics: bool = True
    """Also the likelihood diagnostics (perplexity per source, dialogue bits per byte, emotion accuracy and
    macro-F1, memory and persona multiple choice); off, the scorecard and conversation bits per byte alone."""
    approach: Literal["scratch", "bootstrap"] = "scratch"
    """The model whose scorecard the checks judge; registered_model registers it and every model compared."""
    compare: bool = True
    """Also evaluate the other approach's model, when one has been trained, on the same held-out sets."""


#: check name -> (config field, the result it reads, whether the value must be at least or at most the floor)
FLOORS = {
    "persona": ("min_persona", "scorecard_persona", "min"),
    "knowledge": ("min_knowledge", "scorecard_knowledge", "min"),
    "memory": ("min_memory", "scorecard_memory", "min"),
    "emotion_fit": ("min_emotion_fit", "scorecard_emotion_fit", "min"),
    "events": ("min_events", "scorecard_events", "min"),
    "fluency": ("min_fluency", "scorecard_fluency", "min"),
    "leaked_tokens": ("max_leaked_replies", "scorecard_leaked_replies", "max"),
}


def _floor_checks(results: dict[str, Any], config: EvaluationConfig) -> list[dg.AssetCheckResult]:
    checks = []
    for name, (field, key, kind) in FLOORS.items():
        value, floor = results.get(key), getattr(config, field)
        passed = value is not None and value == value and (value <= floor if kind == "max" else value >= floor)
        checks.append(dg.AssetCheckResult(check_name=name, passed=bool(passed),
                                          metadata={"value": float(value) if value is not None else float("nan"),
                                                    kind: floor, "approach": results.get("approach", "")}))
    return checks


@dg.asset(
    group_name="evaluate",
    deps=[rosie_model],
    kinds={"mlflow"},
    check_specs=[*(dg.AssetCheckSpec(name, asset="model_evaluation", description=f"scorecard {name} passes its floor")
                   for name in FLOORS),
                 dg.AssetCheckSpec("no_leakage", asset="model_evaluation",
                                   description="No training dialogue asks one of the scorecard's prompts.")],
    description="The scorecard (persona, knowledge, memory across conversations, emotion fit, events, fluency), "
    "measured by talking to each trained model through Rosie.reply on prompts kept out of training, bits per byte "
    "on held-out human conversations, and likelihood diagnostics; logged to MLflow, with floors as checks.",
)
def model_evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig, rosie: RosieHomeResource,
                     pipes: dg.PipesSubprocessClient) -> dg.MaterializeResult:
    home, lake = rosie.home, rosie.lake
    evaluation_dir = lake["model_evaluation"]
    others = [a for a in APPROACHES if a != config.approach and config.compare and lake.trained(a)]
    if not lake.trained(config.approach):
        raise dg.Failure(f"no trained {config.approach} model in {lake.model_dir(config.approach)}: "
                         f"materialize rosie_model with approach {config.approach} first")
    build_eval_sets(lake.deduplicated_files(), lake.dialogue_table("memory_dialogues"),
                    {a: lake.dialogue_shards(a) for a in (config.approach, *others)}, evaluation_dir / "sets",
                    config.val_permille, memory_items=config.memory_items, choices=config.memory_choices,
                    dialogue_tables=lake.dialogue_tables())
    leaked = leaked_dialogues(lake.dialogue_tables())
    evaluated = {}
    for approach in (config.approach, *others):
        out = evaluation_dir / f"results-{approach}.json"
        context.log.info(f"evaluating the {approach} model")
        run_rosie_model(context, pipes, home, [
            "evaluate", "--model-dir", str(lake.model_dir(approach)), "--spec",
            str(evaluation_dir / "sets" / f"spec-{approach}.json"), "--out", str(out), "--max-rows", str(config.max_rows),
            *([] if config.diagnostics else ["--no-diagnostics"])])
        evaluated[approach] = json.loads(out.read_text(encoding="utf-8"))
    results = evaluated[config.approach]
    write_json_atomic(evaluation_dir / "results.json", {**results, "evaluated": sorted(evaluated)})
    scalars = {k: round(v, 4) for k, v in results.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
    rows = results.get("scorecard_rows", [])
    samples = [[r["measure"], r["prompt"], r["reply"], r["emotion"], "yes" if r["passed"] else "no"]
               for measure in FLOORS for r in [r for r in rows if r["measure"] == measure][:3]]
    return dg.MaterializeResult(
        metadata={
            "approach": config.approach,
            **scalars,
            "scorecard": dg.MetadataValue.md(_scorecard_table(evaluated, config)),
            "sample_replies": dg.MetadataValue.md(md_table(["measure", "prompt", "reply", "emotion", "passed"], samples)),
            "mlflow_run": dg.MetadataValue.url(mlflow_run_url(home, results["mlflow_run_id"])),
            "results": dg.MetadataValue.path(str(evaluation_dir / f"results-{config.approach}.json")),
        },
        check_results=[*_floor_checks(results, config),
                       dg.AssetCheckResult(check_name="no_leakage", passed=leaked == 0,
                                           metadata={"dialogues_asking_scorecard_prompts": leaked})],
    )


#: What the approaches are compared on: the scorecard and measures that do not depend on the tokenizer.
COMPARED = (*(key for _, key, _ in FLOORS.values()), "conversation_bits_per_byte", "dialogue_bits_per_byte",
            "emotion_accuracy", "memory_recall", "persona_consistency")


def _scorecard_table(evaluated: dict[str, dict[str, Any]], config: EvaluationConfig) -> str:
    floors = {key: f"{'≥' if kind == 'min' else '≤'} {getattr(config, field)}" for field, key, kind in FLOORS.values()}
    rows = [[measure.removeprefix("scorecard_"), *(f"{r[measure]:.3f}" if isinstance(r.get(measure), (int, float)) else "-"
                                                  for r in evaluated.values()), floors.get(measure, "diagnostic")]
            for measure in COMPARED]
    return md_table(["measure", *evaluated, "floor"], rows)


@dg.asset(
    group_name="evaluate",
    deps=[model_evaluation],
    kinds={"mlflow"},
    description="Model 'rosie' in the MLflow registry, one version per model evaluated (chat pyfunc, signature, data "
    "digests and git commit as tags, datasets as lineage); alias 'champion' moves only when a new version beats "
    "the current one on the scorecard.",
)
def registered_model(context: dg.AssetExecutionContext, rosie: RosieHomeResource,
                     pipes: dg.PipesSubprocessClient) -> dg.MaterializeResult:
    home, lake = rosie.home, rosie.lake
    summary = read_json(lake["model_evaluation"] / "results.json")
    if not summary:
        raise dg.Failure("no evaluation results: materialize model_evaluation first")
    out_dir = lake["registered_model"]
    out_dir.mkdir(parents=True, exist_ok=True)
    registered = []
    for approach in (summary["approach"], *(a for a in summary["evaluated"] if a != summary["approach"])):
        results_path = lake["model_evaluation"] / f"results-{approach}.json"
        out = out_dir / f"registration-{approach}.json"
        shards = lake.dialogue_shards(approach)
        trained_on = [shards / "personality" / "train", shards / "emotion_memory" / "train"]
        if approach == "scratch":  # the bootstrap path starts from a pretrained model, not from the pretrain shards
            trained_on.insert(0, lake["pretrain_shards"] / "train")
        datasets = [p for p in (folder / "manifest.json" for folder in trained_on) if p.exists()]
        run_rosie_model(context, pipes, home, [
            "register", "--model-dir", str(lake.model_dir(approach)), "--evaluation", str(results_path), "--out",
            str(out), "--tag", f"approach={approach}", *[arg for path in datasets for arg in ("--dataset", str(path))]])
        result: dict[str, Any] = read_json(out) or {}
        context.log.info(f"registered the {approach} model as {result.get('model_uri')}: "
                         f"champion={result.get('champion')} ({result.get('reason')})")
        registered.append({"approach": approach, **result})
    champion = next((r for r in reversed(registered) if r["champion"]), None)
    table = [[r["approach"], r["model_uri"], "yes" if r["champion"] else "no", r["reason"]] for r in registered]
    return dg.MaterializeResult(
        metadata={
            "versions": dg.MetadataValue.md(md_table(["approach", "model", "champion", "reason"], table)),
            "model_uri": registered[-1]["model_uri"],
            "champion": champion["model_uri"] if champion else "unchanged",
            "champion_approach": champion["approach"] if champion else "unchanged",
            "reason": champion["reason"] if champion else registered[-1]["reason"],
            "mlflow_run": dg.MetadataValue.url(mlflow_run_url(home, registered[-1]["run_id"])),
            "load_with": "mlflow.pyfunc.load_model('models:/rosie@champion')",
        }
    )


EVALUATE_ASSETS = [model_evaluation, registered_model]

