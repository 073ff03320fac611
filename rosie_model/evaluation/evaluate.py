"""Evaluating a trained Rosie: perplexity per source, emotion accuracy and macro-F1, memory recall,
persona consistency, and sample replies to fixed prompts.

    python -m rosie_model evaluate --model-dir DIR --spec eval_spec.json --out results.json

The spec (written by the pipeline) names: ``texts`` (JSON lines of source/text from held-out documents),
``dialogue_val`` and ``emotion_set`` (dialogue shard splits), ``memory_set`` (JSON lines: messages,
memory, choices, answer). Multiple-choice metrics compare the likelihood of each candidate reply, so
they measure what the model knows even when its sampling is still rough. Results go to a JSON file,
to MLflow, and (under Dagster) to the run's log through Pipes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rosie_model.core.layout import ModelFolder
from rosie_model.core.reporting import ensure_experiment
from rosie_model.training.data import Position, ShardDataset, collate
from rosie_model.serving.generate import GREEDY, LoadedRosie, generate, load_rosie

SAMPLE_PROMPTS: list[tuple[str, list[dict[str, Any]]]] = [
    ("greeting", [{"role": "user", "content": "Hello!"}]),
    ("drag event", [{"role": "event", "content": "drag"}]),
    ("a question", [{"role": "user", "content": "What's the capital of France?"}]),
    ("a sad user", [{"role": "user", "content": "I'm feeling sad today"}]),
]
PERSONA_PROMPTS = ("What's your name?", "Who are you?", "Tell me your name")
OTHER_NAMES = ("Bella", "Max", "Luna")


def system_message(rosie: LoadedRosie) -> list[dict[str, Any]]:
    prompt = rosie.settings.get("rosie_system_prompt")
    return [{"role": "system", "content": prompt}] if prompt else []


@torch.no_grad()
def text_perplexity(rosie: LoadedRosie, texts: list[str]) -> float:
    """exp(mean token loss) over documents, each cut into windows of the model's context."""
    model, eos = rosie.model, rosie.model.config.eos_id
    total, count = 0.0, 0
    window = model.config.max_seq_len + 1
    for text in texts:
        ids = rosie.tokenizer.encode(text, add_special_tokens=False).ids + [eos]
        for start in range(0, max(1, len(ids) - 1), window - 1):
            chunk = torch.tensor([ids[start : start + window]])
            if chunk.shape[1] < 2:
                continue
            logits = model.lm_logits(model(chunk[:, :-1])).float()
            total += float(F.cross_entropy(logits[0], chunk[0, 1:], reduction="sum"))
            count += chunk.shape[1] - 1
    return math.exp(total / count) if count else float("nan")


@torch.no_grad()
def shard_metrics(rosie: LoadedRosie, folder: Path, max_rows: int) -> dict[str, Any]:
    """Masked perplexity, bits per byte and emotion predictions on a dialogue shard split.

    Perplexity is per token, so it compares models that share a tokenizer; bits per byte (the same loss
    over the UTF-8 bytes of the target text) also compares the scratch and bootstrap approaches."""
    model = rosie.model
    data = ShardDataset(folder)
    total, count, target_bytes, truth, predicted, token_predicted = 0.0, 0, 0, [], [], []
    emotion_ids = [rosie.token_id(f"<|emotion:{name}|>") for name in model.config.emotions]
    rows = (item for item, _ in data.rows_from(Position(), seed=0))
    remaining = min(max_rows, data.rows)
    while remaining > 0:
        batch_rows = [next(rows) for _ in range(min(16, remaining))]
        remaining -= len(batch_rows)
        batch = collate(batch_rows)
        tokens = batch["tokens"]
        mask = batch["loss_mask"][:, 1:] & (tokens[:, 1:] != model.config.pad_id)
        memory = batch.get("memory")
        bank = bank_mask = None
        if memory is not None and model.config.memory_layers:
            memory = torch.where(memory < 0, torch.full_like(memory, model.config.pad_id), memory)
            bank, bank_mask = model.encode_memory(memory)
        hidden = model(tokens[:, :-1], persona=batch.get("persona"), memory=bank, memory_mask=bank_mask)
        logits = model.lm_logits(hidden).float()
        losses = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
        total += float((losses * mask).sum())
        count += int(mask.sum())
        for row, row_mask in zip(tokens[:, 1:].tolist(), mask.tolist()):
            target = [token for token, kept in zip(row, row_mask) if kept]
            target_bytes += len(rosie.tokenizer.decode(target, skip_special_tokens=False).encode("utf-8"))
        labels = batch.get("emotion")
        if labels is not None:
            keep = labels >= 0
            truth += labels[keep].tolist()
            predicted += model.emotion_logits(hidden, mask).argmax(-1)[keep].tolist()
            # what the language model itself would open her turn with: its pick among the emotion tokens
            first = (mask & (mask.cumsum(dim=1) == 1)).float().argmax(dim=1)
            start_logits = logits[torch.arange(len(first)), first][:, emotion_ids]
            token_predicted += start_logits.argmax(-1)[keep].tolist()
    return {"perplexity": math.exp(total / count) if count else float("nan"),
            "bits_per_byte": total / math.log(2) / target_bytes if target_bytes else float("nan"),
            "truth": truth, "predicted": predicted,
            "token_predicted": token_predicted, "rows": len(truth)}


def macro_f1(truth: list[int], predicted: list[int], labels: int) -> float:
    scores = []
    for label in range(labels):
        tp = sum(1 for t, p in zip(truth, predicted) if t == p == label)
        fp = sum(1 for t, p in zip(truth, predicted) if p == label and t != label)
        fn = sum(1 for t, p in zip(truth, predicted) if t == label and p != label)
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return sum(scores) / len(scores) if scores else 0.0


@torch.no_grad()
def choice_loglik(rosie: LoadedRosie, prompt: list[int], choice: str, memory: list[str] | None = None) -> float:
    """Mean log-probability of ``choice`` (rendered as Rosie's turn) after ``prompt``."""
    target = rosie.tokenizer.encode(choice, add_special_tokens=False).ids
    prompt = prompt[-(rosie.model.config.max_seq_len + 1 - len(target)) :]  # keep the newest context
    ids = torch.tensor([prompt + target])
    bank, bank_mask = rosie.encode_facts(memory or [])
    logits = rosie.model.lm_logits(rosie.model(ids[:, :-1], persona=torch.tensor([0]), memory=bank,
                                               memory_mask=bank_mask)).float()
    logp = torch.log_softmax(logits[0, len(prompt) - 1 :], dim=-1)
    return float(logp.gather(1, torch.tensor(target)[:, None]).mean())


def multiple_choice(rosie: LoadedRosie, items: list[dict[str, Any]]) -> float:
    right = 0
    for item in items:
        in_context = item.get("memory") if not rosie.model.config.memory_layers else None  # bootstrap path
        prompt = rosie.render(item["messages"], memory=in_context, add_generation_prompt=True)
        scores = [choice_loglik(rosie, prompt, f"<|emotion:{item.get('emotion', 'happy')}|>{c}\n", item.get("memory"))
                  for c in item["choices"]]
        right += int(max(range(len(scores)), key=scores.__getitem__) == item["answer"])
    return right / len(items) if items else float("nan")


def persona_items(rosie: LoadedRosie) -> list[dict[str, Any]]:
    return [{"messages": system_message(rosie) + [{"role": "user", "content": q}],
             "choices": [f"I'm {name}!" for name in ("Rosie", *OTHER_NAMES)], "answer": 0} for q in PERSONA_PROMPTS]


def evaluate(model_dir: Path, spec: dict[str, Any], max_rows: int = 512) -> dict[str, Any]:
    rosie = load_rosie(model_dir)
    torch.manual_seed(0)
    results: dict[str, Any] = {"model_dir": str(model_dir),
                               "approach": "bootstrap" if ModelFolder(model_dir).is_bootstrap else "scratch"}
    texts: dict[str, list[str]] = {}
    if spec.get("texts") and Path(spec["texts"]).exists():
        for line in Path(spec["texts"]).read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            texts.setdefault(item["source"], []).append(item["text"])
    results["perplexity"] = {source: text_perplexity(rosie, items) for source, items in sorted(texts.items())}
    if spec.get("dialogue_val"):
        dialogue = shard_metrics(rosie, Path(spec["dialogue_val"]), max_rows)
        results["perplexity"]["dialogue"] = dialogue["perplexity"]
        results["dialogue_bits_per_byte"] = dialogue["bits_per_byte"]
    if spec.get("emotion_set"):
        emotions = shard_metrics(rosie, Path(spec["emotion_set"]), max_rows)
        pairs = list(zip(emotions["truth"], emotions["predicted"]))
        results["emotion_accuracy"] = sum(t == p for t, p in pairs) / len(pairs) if pairs else float("nan")
        results["emotion_macro_f1"] = macro_f1(emotions["truth"], emotions["predicted"], len(rosie.model.config.emotions))
        results["emotion_rows"] = len(pairs)
        token_pairs = list(zip(emotions["truth"], emotions["token_predicted"]))
        results["emotion_token_accuracy"] = (sum(t == p for t, p in token_pairs) / len(token_pairs)
                                             if token_pairs else float("nan"))
        results["emotion_majority_baseline"] = (max(Counter(emotions["truth"]).values()) / len(pairs)) if pairs else 0.0
    if spec.get("memory_set") and Path(spec["memory_set"]).exists():
        items = [json.loads(line) for line in Path(spec["memory_set"]).read_text(encoding="utf-8").splitlines()]
        results["memory_recall"] = multiple_choice(rosie, items)
        results["memory_items"] = len(items)
    results["persona_consistency"] = multiple_choice(rosie, persona_items(rosie))
    samples = []
    for name, messages in SAMPLE_PROMPTS:
        prompt = rosie.render(system_message(rosie) + messages)
        ids, emotion = generate(rosie, prompt, dataclasses.replace(GREEDY, max_new_tokens=40))
        samples.append({"prompt": name, "reply": rosie.text_of(ids).strip(), "emotion": emotion})
    results["samples"] = samples
    return results


def log_to_mlflow(results: dict[str, Any], experiment: str) -> str:
    import mlflow

    ensure_experiment(experiment)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="evaluation") as run:
        flat = {f"perplexity_{k}": v for k, v in results["perplexity"].items()}
        flat |= {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        mlflow.log_metrics({k: v for k, v in flat.items() if v == v})  # drop NaN
        mlflow.log_dict(results, "evaluation.json")
        mlflow.log_table({"prompt": [s["prompt"] for s in results["samples"]],
                          "reply": [s["reply"] for s in results["samples"]],
                          "emotion": [s["emotion"] for s in results["samples"]]}, "sample_replies.json")
        return run.info.run_id
