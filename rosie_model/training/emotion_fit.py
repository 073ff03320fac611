"""The emotion head fitted on its own at the end of a phase, on the features the trained trunk makes.

Why: a phase trains the head on one label per row it sees, at the trunk's learning rate: the CPU demo's
bootstrap phases show it ~560 labels in 70 steps, and it ends near the label prior (happy or excited for a
grandmother's death). The head is one linear layer over :meth:`RosieCore.emotion_features`, so once the trunk
has trained it can be fitted exactly: one forward pass without gradients per labelled row, then full-batch
L2-regularised logistic regression (L-BFGS, well under a second). A fifth of the rows is held out: it picks
the L2 strength, and the fitted head replaces the trained one only if it reads those rows better. "Better" is
cross-entropy, not accuracy: many turns have several fitting emotions (comforting a loss can be sad or loving)
and the labels pick one at random, so a head can only learn how likely each is, which accuracy does not see.

The rows are drawn evenly across emotions, as far as the data has them, and the fit weights each emotion by
the inverse of its count among them: the dialogues are mostly greetings, answers and small talk (happy,
neutral and curious are 70% of the demo's labels; sad, scared and angry 5%), and a head fitted on them as they
fall learns to show the common faces whatever was said. Balanced, it has to read the message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from rosie_model.core.protocol import RosieCore
from rosie_model.training.data import Position, ShardDataset, collate, conditioning

#: L2 strengths tried (on the mean cross-entropy, times the sum of squared weights).
L2_CHOICES = (1e-4, 1e-3, 1e-2)
#: The share of the labelled rows held out to choose among them and to compare with the trained head.
HELD_OUT = 0.2


@dataclass(frozen=True)
class HeadFit:
    """What a fit did: rows used, the L2 chosen, the held-out (class-weighted) cross-entropy in nats of the
    trained head and of the fit, and whether the fit replaced the head."""

    rows: int
    held_out: int
    l2: float
    loss_before: float
    loss_after: float
    kept: bool
    seconds: float

    def summary(self) -> str:
        verdict = "fitted head kept" if self.kept else "trained head kept (the fit read the held-out rows no better)"
        return (f"emotion head fit on {self.rows} labelled rows in {self.seconds:.0f} s: on the {self.held_out} held "
                f"out, cross-entropy {self.loss_before:.3f} -> {self.loss_after:.3f} nats (l2 {self.l2:g}); {verdict}")

    def metrics(self) -> dict[str, float]:
        return {"emotion_fit_loss_before": self.loss_before, "emotion_fit_loss_after": self.loss_after,
                "emotion_fit_kept": float(self.kept)}


def labelled_rows(sources: list[tuple[ShardDataset, int]], classes: int, seed: int) -> list[dict[str, Any]]:
    """Rows with an emotion label, ``count`` from each split at most and as many of each emotion as it has up
    to an even share (``count // classes``), read in the split's shuffled order of one epoch. Reading rows is
    cheap and their forward passes are not: a sample drawn as the labels fall would spend most of them on
    happy and neutral turns."""
    picked: list[dict[str, Any]] = []
    for dataset, count in sources:
        quota, taken = max(1, count // classes), [0] * classes
        for (row, _), _ in zip(dataset.rows_from(Position(), seed), range(dataset.rows)):
            if sum(taken) >= count or min(taken) >= quota:
                break
            mask, label = list(row["loss_mask"]), row.get("emotion")
            if label is None or not 0 <= label < classes or mask[0] or True not in mask or taken[label] >= quota:
                continue
            picked.append(row)
            taken[label] += 1
    return picked


@torch.no_grad()
def row_features(model: torch.nn.Module, core: RosieCore, rows: list[dict[str, Any]], device: torch.device,
                 batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """(features (N, d_model), labels (N,)) of labelled dialogue rows, read the way the head reads them.
    Rows go in order of where her turn starts and each batch is cut after its last start: causal attention
    makes the cut exact, and no position after her turn starts is computed."""
    starts = [list(row["loss_mask"]).index(True) for row in rows]   # where her turn's first token is
    order = sorted(range(len(rows)), key=lambda i: starts[i])
    features, labels = [], []
    for first in range(0, len(order), batch_size):
        picked = order[first:first + batch_size]
        batch = collate([rows[i] for i in picked])
        width = max(starts[i] for i in picked)
        inputs = batch["tokens"][:, :width].to(device)                           # (B, W): up to her turn
        mask = batch["loss_mask"][:, 1:width + 1].to(device)                     # (B, W): aligned as in training
        hidden = model(inputs, **conditioning(core, batch, device))               # (B, W, D)
        features.append(core.emotion_features(hidden, mask).float().cpu())
        labels.append(batch["emotion"])
    return torch.cat(features), torch.cat(labels)


def balanced(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Per-class weights, inverse to each emotion's count (an absent one gets the weight of a single row)."""
    counts = torch.bincount(labels, minlength=classes).float()
    weights = 1.0 / counts.clamp(min=1)
    return weights * len(labels) / (weights * counts).sum()        # a mean row weight of 1


def fit_linear(features: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor, l2: float,
               start: torch.nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted multinomial logistic regression from ``start``'s weights: (weight (classes, D), bias (classes,))."""
    weight = start.weight.detach().float().cpu().clone().requires_grad_(True)
    bias = start.bias.detach().float().cpu().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=300, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = F.cross_entropy(features @ weight.T + bias, labels, weight=class_weights) + l2 * weight.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def loss(features: torch.Tensor, labels: torch.Tensor, class_weights: torch.Tensor, weight: torch.Tensor,
         bias: torch.Tensor) -> float:
    return float(F.cross_entropy(features @ weight.T + bias, labels, weight=class_weights))


def fit_emotion_head(model: torch.nn.Module, core: RosieCore, sources: list[tuple[ShardDataset, int]],
                     device: torch.device, seed: int) -> HeadFit | None:
    """Fit ``core.emotion_head`` on labelled rows of ``sources`` ((split, rows wanted) pairs); None when there
    are too few labelled rows to hold some out."""
    started = time.perf_counter()
    rows = labelled_rows(sources, core.emotion_head.weight.shape[0], seed)
    held_out = int(len(rows) * HELD_OUT)
    if held_out < 10:
        return None
    was_training = model.training
    model.eval()
    try:
        features, labels = row_features(model, core, rows, device)
    finally:
        model.train(was_training)
    generator = torch.Generator().manual_seed(seed)
    shuffled = torch.randperm(len(rows), generator=generator)
    test, train = shuffled[:held_out], shuffled[held_out:]
    head = core.emotion_head
    weights = balanced(labels, head.weight.shape[0])
    before = loss(features[test], labels[test], weights, head.weight.detach().float().cpu(),
                  head.bias.detach().float().cpu())
    fits = [(l2, *fit_linear(features[train], labels[train], weights, l2, head)) for l2 in L2_CHOICES]
    after, l2 = min((loss(features[test], labels[test], weights, w, b), l2) for l2, w, b in fits)
    kept = after < before
    if kept:  # refitted on every row with the chosen strength
        weight, bias = fit_linear(features, labels, weights, l2, head)
        with torch.no_grad():
            head.weight.copy_(weight.to(head.weight.dtype))
            head.bias.copy_(bias.to(head.bias.dtype))
    return HeadFit(len(rows), held_out, l2, before, after, kept, time.perf_counter() - started)
