"""Evaluate group, once per approach: model_evaluation -> registered_model for the scratch model,
bootstrap_evaluation -> bootstrap_registered_model for the bootstrap one; scorecard_comparison puts the two
scorecards side by side.

Both run rosie_model in a separate process through Dagster Pipes (dagster_project never imports it):
``python -m rosie_model evaluate`` on held-out sets that rosie_pipeline writes, and
``python -m rosie_model register``, which registers the model in MLflow and moves the ``champion`` alias only
when the new version beats the current champion (the rule is in the README). Each approach keeps its own
results, so evaluating one never touches the other's, and a failed evaluation leaves the last good
``results.json`` in place (the evaluator writes it atomically, once it has every number).
"""

import json
from typing import Any

import dagster as dg

from dagster_project.assets.train import FINAL_PHASE
from dagster_project.config import md_table
from dagster_project.lake import APPROACHES, EVALUATION_ASSET, REGISTRATION_ASSET
from dagster_project.launch import run_rosie_model
from dagster_project.resources import RosieHomeResource
from dagster_project.training_report import mlflow_run_url
from rosie_pipeline.atomic import read_json, write_text_atomic
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


def _evaluation_asset(approach: str) -> dg.AssetsDefinition:
    name = EVALUATION_ASSET[approach]

    @dg.asset(
        name=name,
        group_name="evaluate",
        deps=[FINAL_PHASE[approach]],
        kinds={"mlflow"},
        check_specs=[*(dg.AssetCheckSpec(check, asset=name, description=f"scorecard {check} passes its floor")
                       for check in FLOORS),
                     dg.AssetCheckSpec("no_leakage", asset=name,
                                       description="No training dialogue asks one of the scorecard's prompts.")],
        description=f"The {approach} model's scorecard (persona, knowledge, memory across conversations, emotion fit, "
        "events, fluency), measured by talking to it through Rosie.reply on prompts kept out of training, bits per "
        "byte on held-out human conversations, and likelihood diagnostics; logged to MLflow, with floors as checks.",
    )
    def evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig, rosie: RosieHomeResource,
                   pipes: dg.PipesSubprocessClient) -> dg.MaterializeResult:
        return evaluate(context, config, rosie, pipes, approach)

    return evaluation


def evaluate(context: dg.AssetExecutionContext, config: EvaluationConfig, rosie: RosieHomeResource,
             pipes: dg.PipesSubprocessClient, approach: str) -> dg.MaterializeResult:
    home, lake = rosie.home, rosie.lake
    evaluation_dir = lake.evaluation(approach)
    if not lake.trained(approach):
        raise dg.Failure(f"no trained {approach} model in {lake.model_dir(approach)}: "
                         f"materialize {FINAL_PHASE[approach].key.to_user_string()} first")
    build_eval_sets(lake.deduplicated_files(), lake.dialogue_table("memory_dialogues"),
                    {approach: lake.dialogue_shards(approach)}, evaluation_dir / "sets",
                    config.val_permille, memory_items=config.memory_items, choices=config.memory_choices,
                    dialogue_tables=lake.dialogue_tables())
    leaked = leaked_dialogues(lake.dialogue_tables())
    out = evaluation_dir / "results.json"
    context.log.info(f"evaluating the {approach} model in {lake.model_dir(approach)}")
    run_rosie_model(context, pipes, home, [
        "evaluate", "--model-dir", str(lake.model_dir(approach)), "--spec",
        str(evaluation_dir / "sets" / f"spec-{approach}.json"), "--out", str(out), "--max-rows", str(config.max_rows),
        *([] if config.diagnostics else ["--no-diagnostics"])])
    results = json.loads(out.read_text(encoding="utf-8"))
    scalars = {k: round(v, 4) for k, v in results.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
    rows = results.get("scorecard_rows", [])
    samples = [[r["measure"], r["prompt"], r["reply"], r["emotion"], "yes" if r["passed"] else "no"]
               for measure in FLOORS for r in [r for r in rows if r["measure"] == measure][:3]]
    return dg.MaterializeResult(
        metadata={
            "approach": approach,
            **scalars,
            "scorecard": dg.MetadataValue.md(_scorecard_table({approach: results}, _floor_labels(config))),
            "sample_replies": dg.MetadataValue.md(md_table(["measure", "prompt", "reply", "emotion", "passed"], samples)),
            "mlflow_run": dg.MetadataValue.url(mlflow_run_url(home, results["mlflow_run_id"])),
            "results": dg.MetadataValue.path(str(out)),
        },
        check_results=[*_floor_checks(results, config),
                       dg.AssetCheckResult(check_name="no_leakage", passed=leaked == 0,
                                           metadata={"dialogues_asking_scorecard_prompts": leaked})],
    )


#: What the approaches are compared on: the scorecard and measures that do not depend on the tokenizer.
COMPARED = (*(key for _, key, _ in FLOORS.values()), "conversation_bits_per_byte", "dialogue_bits_per_byte",
            "emotion_accuracy", "memory_recall", "persona_consistency")


def _floor_labels(config: EvaluationConfig) -> dict[str, str]:
    return {key: f"{'≥' if kind == 'min' else '≤'} {getattr(config, field)}" for field, key, kind in FLOORS.values()}


def _scorecard_table(evaluated: dict[str, dict[str, Any]], floors: dict[str, str] | None = None) -> str:
    """One column per approach evaluated, and the floors when given."""
    rows = [[measure.removeprefix("scorecard_"),
             *(f"{r[measure]:.3f}" if isinstance(r.get(measure), (int, float)) else "-" for r in evaluated.values()),
             *([floors.get(measure, "diagnostic")] if floors is not None else [])]
            for measure in COMPARED]
    return md_table(["measure", *evaluated, *(["floor"] if floors is not None else [])], rows)


@dg.asset(
    group_name="evaluate",
    deps=list(EVALUATION_ASSET.values()),
    description="The approaches' last good scorecards side by side, on the same prompts (each evaluation makes its "
    "held-out sets from the same dialogues): which way to bet, at a glance.",
)
def scorecard_comparison(context: dg.AssetExecutionContext, rosie: RosieHomeResource) -> dg.MaterializeResult:
    lake = rosie.lake
    evaluated = {a: results for a in APPROACHES if (results := read_json(lake.evaluation(a) / "results.json"))}
    if not evaluated:
        raise dg.Failure("no evaluation results yet: materialize model_evaluation or bootstrap_evaluation first")
    table = _scorecard_table(evaluated)
    write_text_atomic(lake["scorecard_comparison"] / "comparison.md", table + "\n")
    context.log.info("scorecards compared: " + ", ".join(
        f"{a} persona {r.get('scorecard_persona', float('nan')):.2f}" for a, r in evaluated.items()))
    return dg.MaterializeResult(metadata={"scorecards": dg.MetadataValue.md(table), "approaches": sorted(evaluated)})


def _registration_asset(approach: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=REGISTRATION_ASSET[approach],
        group_name="evaluate",
        deps=[EVALUATION_ASSET[approach]],
        kinds={"mlflow"},
        description=f"The evaluated {approach} model as a version of model 'rosie' in the MLflow registry (an "
        "MLflow 3 ResponsesAgent chat model, data digests and git commit as tags, datasets as lineage); alias "
        "'champion' moves only when it beats the current champion on the scorecard, whichever approach that is.",
    )
    def registration(context: dg.AssetExecutionContext, rosie: RosieHomeResource,
                     pipes: dg.PipesSubprocessClient) -> dg.MaterializeResult:
        return register(context, rosie, pipes, approach)

    return registration


def register(context: dg.AssetExecutionContext, rosie: RosieHomeResource, pipes: dg.PipesSubprocessClient,
             approach: str) -> dg.MaterializeResult:
    home, lake = rosie.home, rosie.lake
    results_path = lake.evaluation(approach) / "results.json"
    if read_json(results_path) is None:
        raise dg.Failure(f"no evaluation results in {results_path}: materialize {EVALUATION_ASSET[approach]} first")
    out_dir = lake[REGISTRATION_ASSET[approach]]
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / "registration.json"
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
    return dg.MaterializeResult(
        metadata={
            "approach": approach,
            "model_uri": result["model_uri"],
            "champion": "yes: models:/rosie@champion" if result["champion"] else "no, unchanged",
            "reason": result["reason"],
            "mlflow_run": dg.MetadataValue.url(mlflow_run_url(home, result["run_id"])),
            "load_with": "mlflow.pyfunc.load_model('models:/rosie@champion')",
        }
    )


EVALUATE_ASSETS = [*(asset for approach in APPROACHES
                     for asset in (_evaluation_asset(approach), _registration_asset(approach))), scorecard_comparison]
