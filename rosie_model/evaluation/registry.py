"""Registering a trained Rosie in the MLflow model registry, and the champion rule.

    python -m rosie_model register --model-dir DIR --evaluation results.json [--dataset MANIFEST ...] [--tag k=v ...]

Each call logs the model (a ``ResponsesAgent`` chat model, the model folder as an artifact), registers a new
version of ``rosie`` with tags (evaluation metrics, data manifest digests, git commit, approach) and the
training datasets as inputs of the registering run (lineage), then applies the champion rule:

    A version becomes ``champion`` when there is none yet, or when its scorecard (the mean of persona,
    knowledge, memory, emotion fit, events and fluency, all measured by talking to it) is more than
    ``MARGIN`` above the champion's; within ``MARGIN`` of it, the lower bits per byte on held-out human
    conversations decides. A champion registered before the scorecard existed yields to any version
    that has one.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from rosie_model.core.bootstrap import BootstrapSettings
from rosie_model.core.layout import MODEL_NAME, ModelFolder
from rosie_model.core.reporting import dataset_source, ensure_experiment, phase_model_id

MARGIN = 0.02
SCORECARD = ("scorecard_persona", "scorecard_knowledge", "scorecard_memory", "scorecard_emotion_fit",
             "scorecard_events", "scorecard_fluency")
DIAGNOSTICS = ("conversation_bits_per_byte", "dialogue_bits_per_byte", "emotion_macro_f1", "memory_recall",
               "persona_consistency", "scorecard_leaked_replies")


def score_tags(evaluation: dict[str, Any]) -> dict[str, str]:
    tags = {f"eval.perplexity_{k}": f"{v:.6g}" for k, v in evaluation.get("perplexity", {}).items()}
    tags |= {f"eval.{k}": f"{evaluation[k]:.6g}" for k in (*SCORECARD, *DIAGNOSTICS)
             if isinstance(evaluation.get(k), (int, float)) and evaluation[k] == evaluation[k]}
    return tags


def _value(tags: dict[str, str], key: str) -> float | None:
    try:
        return float(tags[f"eval.{key}"])
    except (KeyError, ValueError):
        return None


def scorecard_mean(tags: dict[str, str]) -> float | None:
    values = [_value(tags, key) for key in SCORECARD]
    return None if any(v is None for v in values) else sum(values) / len(values)  # type: ignore[misc]


def beats(new: dict[str, str], champion: dict[str, str]) -> tuple[bool, str]:
    """The champion rule, on the ``eval.*`` tags of two versions; (promote?, the reason in words)."""
    ours, theirs = scorecard_mean(new), scorecard_mean(champion)
    if ours is None:
        return False, "the new version has no scorecard"
    if theirs is None:
        return True, f"scorecard {ours:.3f}; the champion was registered without one"
    if ours > theirs + MARGIN:
        return True, f"scorecard {ours:.3f} beats the champion's {theirs:.3f}"
    if ours < theirs - MARGIN:
        return False, f"scorecard {ours:.3f} is below the champion's {theirs:.3f}"
    new_bpb, old_bpb = _value(new, "conversation_bits_per_byte"), _value(champion, "conversation_bits_per_byte")
    if new_bpb is not None and (old_bpb is None or new_bpb < old_bpb):
        return True, (f"scorecard {ours:.3f} ties the champion's {theirs:.3f}; conversation bits per byte {new_bpb:.3f} "
                      f"beats {old_bpb if old_bpb is not None else 'none'}")
    return False, f"scorecard {ours:.3f} ties the champion's {theirs:.3f} and conversation bits per byte is not lower"


def bootstrap_tags(model_dir: Path) -> dict[str, str]:
    """Which pretrained model and LoRA settings a bootstrap version came from (nothing for a scratch model)."""
    folder = ModelFolder(model_dir)
    if not folder.is_bootstrap:
        return {}
    settings = BootstrapSettings.load(folder.bootstrap)
    return {"bootstrap.pretrained": Path(settings.pretrained).name, "bootstrap.lora_r": str(settings.lora_r),
            "bootstrap.lora_alpha": str(settings.lora_alpha)}


def git_commit() -> str:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
                              timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


#: What the model page shows as an example request; MLflow also answers it once to check the model loads.
INPUT_EXAMPLE = {"input": [{"role": "user", "content": "Hi Rosie! What's your name?"}], "max_output_tokens": 16}


def register(model_dir: Path, evaluation: dict[str, Any], datasets: list[Path], tags: dict[str, str],
             experiment: str = "rosie-registry") -> dict[str, Any]:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import LoggedModelInput
    from mlflow.data.meta_dataset import MetaDataset

    ensure_experiment(experiment)
    mlflow.set_experiment(experiment)
    client = MlflowClient()
    digests = {}
    with mlflow.start_run(run_name="register") as run:
        for manifest_path in datasets:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            digest = hashlib.sha256("".join(s["sha256"] for s in manifest["shards"]).encode()).hexdigest()[:16]
            name = f"{manifest.get('dataset', 'tokens')}-{manifest.get('split', 'train')}"
            digests[f"data.{name}"] = digest
            mlflow.log_input(MetaDataset(dataset_source(manifest_path.parent), name=name,
                                         digest=digest), context="training")
        latest = ModelFolder(model_dir).latest_weights()
        trained = phase_model_id(latest) if latest else None
        if trained:  # the weights' LoggedModel is what this version is made of
            mlflow.log_input(model=LoggedModelInput(trained))
        info = mlflow.pyfunc.log_model(
            name="rosie", python_model=str(Path(__file__).with_name("pyfunc.py")),
            artifacts={"model_dir": str(model_dir)},  # a ResponsesAgent: MLflow writes its signature
            input_example=INPUT_EXAMPLE,
            code_paths=[str(Path(__file__).parents[1])], registered_model_name=MODEL_NAME,
            pip_requirements=["torch", "tokenizers", "safetensors", "jinja2", "pandas", "mlflow"],
        )
        metrics = {k.removeprefix("eval."): float(v) for k, v in score_tags(evaluation).items()}
        mlflow.log_metrics(metrics, model_id=info.model_id)  # shown on the chat model's page
        version = str(info.registered_model_version)
    all_tags = {**score_tags(evaluation), **digests, "git_commit": git_commit(), "mlflow_run_id": run.info.run_id,
                **bootstrap_tags(model_dir), **tags}
    for key, value in all_tags.items():
        client.set_model_version_tag(MODEL_NAME, version, key, value)
    try:
        champion = client.get_model_version_by_alias(MODEL_NAME, "champion")
    except Exception:  # MLflow raises when the alias does not exist yet
        champion = None
    promoted, reason = beats(all_tags, dict(champion.tags) if champion else {})
    if champion is None:
        promoted, reason = True, "first version: no champion yet"
    if promoted:
        client.set_registered_model_alias(MODEL_NAME, "champion", version)
    return {"model": MODEL_NAME, "version": version, "champion": promoted, "reason": reason,
            "previous_champion": champion.version if champion else None, "run_id": run.info.run_id,
            "model_uri": f"models:/{MODEL_NAME}/{version}"}
