"""Evaluating a trained Rosie: the scorecard (talking to her), bits per byte on held-out human
conversations, and likelihood diagnostics (perplexity per source, emotion accuracy and macro-F1, memory
and persona multiple choice).

    python -m rosie_model evaluate --model-dir DIR --spec eval_spec.json --out results.json

The spec (written by the pipeline) names: ``scorecard`` (the prompts of :mod:`.scorecard`),
``conversations`` (JSON lines of held-out human conversations), ``texts`` (JSON lines of source/text from
held-out documents), ``dialogue_val`` and ``emotion_set`` (dialogue shard splits), ``memory_set`` (JSON
lines: messages, memory, choices, answer). The scorecard is what decides; the likelihood measures compare
candidate replies and stay as diagnostics, since templates memorised would win them. Results go to a JSON
file, to MLflow, and (under Dagster) to the run's log through Pipes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from rosie_model.core.layout import ModelFolder
from rosie_model.core.reporting import ensure_experiment, phase_model_id
from rosie_model.training.data import Position, ShardDataset, collate, conditioning, used_width
from rosie_model.core.checkpoint import write_text_atomic
from rosie_model.evaluation.scorecard import run_scorecard, tune_sampling
from rosie_model.serving.generate import LoadedRosie, load_rosie, sampling_defaults

log = logging.getLogger("rosie.evaluate")
PERSONA_PROMPTS = ("What's your name?", "Who are you?", "Tell me your name")
OTHER_NAMES = ("Bella", "Max", "Luna")


def system_message(rosie: LoadedRosie) -> list[dict[str, Any]]:
    prompt = rosie.settings.get("rosie_system_prompt")
    return [{"role": "system", "content": prompt}] if prompt else []


@dataclass
class TextLoss:
    nats: float = 0.0
    tokens: int = 0
    bytes: int = 0

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats / self.tokens) if self.tokens else float("nan")

    @property
    def bits_per_byte(self) -> float:
        """Comparable across tokenizers (the scratch and the bootstrap models)."""
        return self.nats / math.log(2) / self.bytes if self.bytes else float("nan")


@torch.no_grad()
def text_loss(rosie: LoadedRosie, texts: list[str]) -> TextLoss:
    """The language model's loss over plain texts, each cut into windows of the model's context."""
    model, eos = rosie.model, rosie.model.config.eos_id
    total, count, size = 0.0, 0, 0
    window = model.config.max_seq_len + 1
    for text in texts:
        ids = rosie.encode_text(text) + [eos]
        for start in range(0, max(1, len(ids) - 1), window - 1):
            chunk = torch.tensor([ids[start : start + window]])
            if chunk.shape[1] < 2:
                continue
            logits = model.lm_logits(model(chunk[:, :-1])).float()
            total += float(F.cross_entropy(logits[0], chunk[0, 1:], reduction="sum"))
            count += chunk.shape[1] - 1
        size += len(text.encode("utf-8"))
    return TextLoss(total, count, size)


@torch.no_grad()
def shard_metrics(rosie: LoadedRosie, folder: Path, max_rows: int) -> dict[str, Any]:
    """Masked perplexity, bits per byte and emotion predictions on a dialogue shard split.

    Perplexity is per token, so it compares models that share a tokenizer; bits per byte (the same loss
    over the UTF-8 bytes of the target text) also compares the scratch and bootstrap approaches."""
    model = rosie.model
    data = ShardDataset(folder)
    total, count, target_bytes, truth, predicted = 0.0, 0, 0, [], []
    fed = 1 + len(rosie.reply_start_ids)  # her emotion token and what follows it are fed, not predicted
    rows = (item for item, _ in data.rows_from(Position(), seed=0))
    remaining = min(max_rows, data.rows)
    while remaining > 0:
        batch_rows = [next(rows) for _ in range(min(16, remaining))]
        remaining -= len(batch_rows)
        batch = collate(batch_rows)
        width = used_width(batch["tokens"], model.config.pad_id)
        tokens = batch["tokens"][:, :width]                      # columns of padding only are cut off
        mask = batch["loss_mask"][:, 1:width] & (tokens[:, 1:] != model.config.pad_id)
        hidden = model(tokens[:, :-1], **conditioning(model, batch, tokens.device))
        logits = model.lm_logits(hidden).float()
        losses = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
        spoken = mask & (mask.cumsum(dim=1) > fed)
        total += float((losses * spoken).sum())
        count += int(spoken.sum())
        for row, row_mask in zip(tokens[:, 1:].tolist(), spoken.tolist()):
            target = [token for token, kept in zip(row, row_mask) if kept]
            target_bytes += len(rosie.tokenizer.decode(target, skip_special_tokens=False).encode("utf-8"))
        labels = batch.get("emotion")
        if labels is not None:
            keep = labels >= 0
            truth += labels[keep].tolist()
            predicted += model.emotion_logits(hidden, mask).argmax(-1)[keep].tolist()
    return {"perplexity": math.exp(total / count) if count else float("nan"),
            "bits_per_byte": total / math.log(2) / target_bytes if target_bytes else float("nan"),
            "truth": truth, "predicted": predicted, "rows": len(truth)}


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
        opening = f"<|emotion:{item.get('emotion', 'happy')}|>{rosie.settings.get('rosie_reply_start', '')}"
        scores = [choice_loglik(rosie, prompt, opening + c, item.get("memory")) for c in item["choices"]]
        right += int(max(range(len(scores)), key=scores.__getitem__) == item["answer"])
    return right / len(items) if items else float("nan")


def persona_items(rosie: LoadedRosie) -> list[dict[str, Any]]:
    return [{"messages": system_message(rosie) + [{"role": "user", "content": q}],
             "choices": [f"I'm {name}!" for name in ("Rosie", *OTHER_NAMES)], "answer": 0} for q in PERSONA_PROMPTS]


def read_lines(path: str | None) -> list[dict[str, Any]]:
    if not path or not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(model_dir: Path, spec: dict[str, Any], max_rows: int = 512, diagnostics: bool = True) -> dict[str, Any]:
    rosie = load_rosie(model_dir)
    torch.manual_seed(0)
    folder = ModelFolder(model_dir)
    results: dict[str, Any] = {"model_dir": str(model_dir), "weights": str(rosie.weights),
                               "approach": "bootstrap" if folder.is_bootstrap else "scratch"}
    if spec.get("scorecard") and Path(spec["scorecard"]).exists():
        full = json.loads(Path(spec["scorecard"]).read_text(encoding="utf-8"))
        options = dataclasses.replace(sampling_defaults(folder), seed=0)
        if full.get("tuning"):
            log.info("choosing sampling settings on the scorecard's tuning prompts")
            options, tried = tune_sampling(rosie, full["tuning"])
            write_text_atomic(folder.sampling, json.dumps({**dataclasses.asdict(options), "seed": None}, indent=2) + "\n")
            results["sampling_tuning"] = tried
        log.info(f"scorecard: talking to Rosie ({options})")
        card = run_scorecard(rosie, full, options, progress=log.info)
        results |= {f"scorecard_{k}": v for k, v in card["scores"].items()}
        results["scorecard_leaked_replies"] = card["leaked_replies"]
        results["scorecard_rows"] = card["rows"]
        results["sampling"] = dataclasses.asdict(options)
    conversations = [item["text"] for item in read_lines(spec.get("conversations"))]
    if conversations:
        log.info(f"bits per byte on {len(conversations)} held-out human conversations")
        results["conversation_bits_per_byte"] = text_loss(rosie, conversations).bits_per_byte
    if not diagnostics:
        return results
    texts: dict[str, list[str]] = {}
    for item in read_lines(spec.get("texts")):
        texts.setdefault(item["source"], []).append(item["text"])
    log.info("likelihood diagnostics: perplexity, emotion, memory and persona choices")
    results["perplexity"] = {source: text_loss(rosie, items).perplexity for source, items in sorted(texts.items())}
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
        results["emotion_majority_baseline"] = (max(Counter(emotions["truth"]).values()) / len(pairs)) if pairs else 0.0
    items = read_lines(spec.get("memory_set"))
    if items:
        results["memory_recall"] = multiple_choice(rosie, items)
        results["memory_items"] = len(items)
    results["persona_consistency"] = multiple_choice(rosie, persona_items(rosie))
    return results


def log_to_mlflow(results: dict[str, Any], experiment: str) -> str:
    """An evaluation run; its metrics are linked to the LoggedModel of the weights it scored (when a training
    phase of this store logged them), which is also the run's input."""
    import mlflow
    from mlflow.entities import LoggedModelInput

    ensure_experiment(experiment)
    mlflow.set_experiment(experiment)
    model_id = phase_model_id(Path(results["weights"])) if results.get("weights") else None
    with mlflow.start_run(run_name="evaluation") as run:
        if model_id:
            mlflow.log_input(model=LoggedModelInput(model_id))
        flat = {f"perplexity_{k}": v for k, v in results.get("perplexity", {}).items()}
        flat |= {k: v for k, v in results.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        mlflow.log_metrics({k: v for k, v in flat.items() if v == v}, model_id=model_id)  # drop NaN
        mlflow.log_dict(results, "evaluation.json")
        rows = results.get("scorecard_rows", [])
        if rows:
            mlflow.log_table({key: [row[key] for row in rows] for key in ("measure", "prompt", "reply", "emotion", "passed")},
                             "scorecard_replies.json")
        return run.info.run_id
