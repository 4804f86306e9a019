"""Segmentation scores, one definition for training, evaluation and benchmarks.

A pixel is glacier where the probability is >= THRESHOLD. Scores come from the confusion counts
over valid pixels (tp, fp, fn, tn):

    accuracy = (tp + tn) / n     IoU = tp / (tp + fp + fn)     precision = tp / (tp + fp)
    recall = tp / (tp + fn)      F1 = 2 tp / (2 tp + fp + fn)

An undefined ratio (0 / 0) is `zero_division`: NaN in evaluation tables (nothing to score is not a
score of 0), 0 for the training monitors (checkpointing and early stopping need a number).
Training accumulates the counts with torchmetrics' `BinaryStatScores` (distributed-safe), evaluation
with numpy; both end in `scores`.
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.classification import BinaryStatScores

THRESHOLD = 0.5
METRICS = ("accuracy", "iou", "precision", "recall", "f1")
#: target value of pixels that do not count (invalid: cloud, shadow, no data)
IGNORE = -1


def confusion(prob: np.ndarray, target: np.ndarray, valid: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """[tp, fp, fn, tn] over valid pixels."""
    p, t = (prob >= threshold)[valid], target.astype(bool)[valid]
    return np.array([(p & t).sum(), (p & ~t).sum(), (~p & t).sum(), (~p & ~t).sum()], dtype=np.int64)


def scores(c, zero_division: float = float("nan")) -> dict[str, float]:
    """Accuracy, IoU, precision, recall and F1 from [tp, fp, fn, tn]."""
    tp, fp, fn, tn = (float(v) for v in c)

    def div(a: float, b: float) -> float:
        return a / b if b else zero_division

    return {"accuracy": div(tp + tn, tp + fp + fn + tn), "iou": div(tp, tp + fp + fn),
            "precision": div(tp, tp + fp), "recall": div(tp, tp + fn), "f1": div(2 * tp, 2 * tp + fp + fn)}


class ConfusionCounts(BinaryStatScores):
    """torchmetrics' pixel counts with invalid pixels (IGNORE) left out; `compute` -> [tp, fp, fn, tn]."""

    def __init__(self, threshold: float = THRESHOLD):
        super().__init__(threshold=threshold, ignore_index=IGNORE)

    def compute(self) -> torch.Tensor:
        tp, fp, tn, fn, _ = super().compute()
        return torch.stack([tp, fp, fn, tn])


def metric_target(target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Integer target with invalid pixels set to IGNORE."""
    t = target.long()
    return torch.where(valid, t, torch.full_like(t, IGNORE))
