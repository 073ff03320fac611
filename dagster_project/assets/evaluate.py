"""Evaluate group: model_evaluation (metrics and sample replies, with floors) -> registered_model.

Both run rosie_model in a separate process through Dagster Pipes (dagster_project never imports it):
``python -m rosie_model evaluate`` on held-out sets that rosie_pipeline writes, and
``python -m rosie_model register``, which registers the model in MLflow and moves the ``champion``
alias only when the new version beats the current champion (the rule is in the README).
"""

import json
import sys
from typing import Any, Literal

import dagster as dg

from dagster_project.lake import APPROACHES

from dagster_project.assets.train import rosie_model
from dagster_project.config import md_table
from dagster_project.resources import RosieHomeResource
from dagster_project.training_report import mlflow_env, mlflow_run_url
from rosie_pipeline.atomic import read_json
from rosie_pipeline.evalsets import build_eval_sets


class EvaluationConfig(dg.Config):
    max_dialogue_perplexity: float = 200.0
    """Floor: dialogue perplexity on the personality validation split must be below this."""
    min_emotion_accuracy: float = 0.45
    """Floor: the emotion head's accuracy on the gold set (else the emotion validation split)."""
    min_memory_recall: float = 0.35
    """Floor: multiple-choice recall of held-out memory facts (chance is 1 / choices)."""
    min_persona_consistency: float = 0.5
    val_permille: int = 10
    """Must match pretrain_shards' val_permille, so held-out documents really were held out."""
    memory_choices: int = 4
    max_rows: int = 512
    approach: Literal["scratch", "bootstrap"] = "scratch"
    """The model to evaluate, check against the floors and hand to registered_model."""
    compare: bool = True
    """Also evaluate the other approach's model, when one has been trained, on the same held-out sets."""


FLOORS = {
    "dialogue_perplexity": ("max_dialogue_perplexity", lambda r: r.get("perplexity", {}).get("dialogue"), "max"),
    "emotion_accuracy": ("min_emotion_accuracy", lambda r: r.get("emotion_accuracy"), "min"),
    "memory_recall": ("min_memory_recall", lambda r: r.get("memory_recall"), "min"),
    "persona_consistency": ("min_persona_consistency", lambda r: r.get("persona_consistency"), "min"),
}


def _floor_checks(results: dict[str, Any], config: EvaluationConfig) -> list[dg.AssetCheckResult]:
    checks = []
    for name, (field, read, kind) in FLOORS.items():
        value, floor = read(results), getattr(config, field)
        passed = value is not None and value == value and (value <= floor if kind == "max" else value >= floor)
        checks.append(dg.AssetCheckResult(check_name=name, passed=bool(passed),
                                          metadata={"value": float(value) if value is not None else float("nan"),
                                                    kind: floor}))
    return checks


@dg.asset(
    group_name="evaluate",
    deps=[rosie_model],
    kinds={"mlflow"},
    check_specs=[dg.AssetCheckSpec(name, asset="model_evaluation", description=f"{name} passes its floor")
                 for name in FLOORS],
    description="Perplexity per source, emotion accuracy and macro-F1 on the gold set, memory recall, persona "
    "consistency and sample replies to fixed prompts, logged to MLflow; checks with floors.",
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
                    config.val_permille, choices=config.memory_choices)
    results_path = evaluation_dir / "results.json"
    evaluated = {}
    for approach in (config.approach, *others):
        out = results_path if approach == config.approach else evaluation_dir / f"results-{approach}.json"
        command = [sys.executable, "-m", "rosie_model", "evaluate", "--model-dir", str(lake.model_dir(approach)),
                   "--spec", str(evaluation_dir / "sets" / f"spec-{approach}.json"), "--out", str(out),
                   "--max-rows", str(config.max_rows)]
        context.log.info(f"evaluating the {approach} model")
        pipes.run(context=context, command=command, env={"ROSIE_HOME": str(home.root), **mlflow_env(home)})
        evaluated[approach] = json.loads(out.read_text(encoding="utf-8"))
    results = evaluated[config.approach]
    perplexity = [[source, f"{value:,.1f}"] for source, value in results.get("perplexity", {}).items()]
    samples = [[s["prompt"], s["reply"], s["emotion"]] for s in results.get("samples", [])]
    scalars = {k: round(v, 4) for k, v in results.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
    comparison = {"approaches": dg.MetadataValue.md(_comparison_table(evaluated))} if others else {}
    return dg.MaterializeResult(
        metadata={
            "approach": config.approach,
            **scalars,
            "perplexity": dg.MetadataValue.md(md_table(["source", "perplexity"], perplexity)),
            "sample_replies": dg.MetadataValue.md(md_table(["prompt", "reply", "emotion"], samples)),
            **comparison,
            "mlflow_run": dg.MetadataValue.url(mlflow_run_url(home, results["mlflow_run_id"])),
            "results": dg.MetadataValue.path(str(results_path)),
        },
        check_results=_floor_checks(results, config),
    )


#: What the approaches are compared on: measures that do not depend on the tokenizer.
COMPARED = ("dialogue_bits_per_byte", "emotion_accuracy", "emotion_macro_f1", "memory_recall", "persona_consistency")


def _comparison_table(evaluated: dict[str, dict[str, Any]]) -> str:
    rows = [[measure, *(f"{r[measure]:.4f}" if isinstance(r.get(measure), (int, float)) else "-"
                        for r in evaluated.values())] for measure in COMPARED]
    return md_table(["measure", *evaluated], rows)


@dg.asset(
    group_name="evaluate",
    deps=[model_evaluation],
    kinds={"mlflow"},
    description="Model 'rosie' in the MLflow registry (chat pyfunc, signature, data digests and git commit as tags, "
    "datasets as lineage); alias 'champion' moves only when the new version beats the current one.",
)
def registered_model(context: dg.AssetExecutionContext, rosie: RosieHomeResource,
                     pipes: dg.PipesSubprocessClient) -> dg.MaterializeResult:
    home, lake = rosie.home, rosie.lake
    results_path = lake["model_evaluation"] / "results.json"
    if not results_path.exists():
        raise dg.Failure("no evaluation results: materialize model_evaluation first")
    approach = json.loads(results_path.read_text(encoding="utf-8")).get("approach", "scratch")
    out = lake["registered_model"] / "registration.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    shards = lake.dialogue_shards(approach)
    trained_on = [shards / "personality" / "train", shards / "emotion_memory" / "train"]
    if approach == "scratch":  # the bootstrap path starts from a pretrained model, not from the pretrain shards
        trained_on.insert(0, lake["pretrain_shards"] / "train")
    datasets = [p for p in (folder / "manifest.json" for folder in trained_on) if p.exists()]
    command = [sys.executable, "-m", "rosie_model", "register", "--model-dir", str(lake.model_dir(approach)),
               "--evaluation", str(results_path), "--out", str(out), "--tag", f"approach={approach}",
               *[arg for path in datasets for arg in ("--dataset", str(path))]]
    pipes.run(context=context, command=command, env={"ROSIE_HOME": str(home.root), **mlflow_env(home)})
    result: dict[str, Any] = read_json(out) or {}
    context.log.info(f"registered {result.get('model_uri')}: champion={result.get('champion')} ({result.get('reason')})")
    return dg.MaterializeResult(
        metadata={
            "approach": approach,
            "model_uri": result["model_uri"],
            "version": int(result["version"]),
            "champion": bool(result["champion"]),
            "reason": result["reason"],
            "previous_champion": str(result.get("previous_champion")),
            "mlflow_run": dg.MetadataValue.url(mlflow_run_url(home, result["run_id"])),
            "load_with": "mlflow.pyfunc.load_model('models:/rosie@champion')",
        }
    )


EVALUATE_ASSETS = [model_evaluation, registered_model]

