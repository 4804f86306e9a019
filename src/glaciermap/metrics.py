"""Segmentation scores, one definition for training, evaluation and benchmarks.

A pixel is glacier where the probability is >= THRESHOLD. Scores come from the confusion counts
over valid pixels (tp, fp, fn, tn):

    accuracy = (tp + tn) / n     IoU = tp / (tp + fp + fn)     precision = tp / (tp + fp)
    recall = tp / (tp + fn)      F1 = 2 tp / (2 tp + fp + fn)

An undefined ratio (0 / 0) is `zero_division`: NaN in evaluation tables (nothing to score is not a
score of 0), 0 for the training monitors (checkpointing and early stopping need a number).
Training accumulates the counts with torchmetrics' `BinaryStatScores` (distributed-safe), evaluation
with numpy; both end in `scores`.

**Debris-covered and clean ice** (`surface_confusion`, `surface_scores`). Where the truth says which
glacier pixels are debris-covered (a cube's `mask_debris` layer: 1 debris, 0 not debris, anything
else unknown), the glacier truth G splits into D (debris-covered ice) and C (clean ice: bare ice,
snow and firn). For a surface class s in {debris, clean}, over valid pixels:

    tp_s = pred & truth_s      fn_s = ~pred & truth_s
    fp_s = pred & ~G, attributed to the class of the nearest truth glacier pixel (Euclidean distance
           transform over the truth glacier pixels, valid or not: the truth is known under clouds)

    recall_s = tp_s / (tp_s + fn_s)       (the area fraction of class-s ice detected; DL4GAM reports
                                           it for debris, per glacier and overall)
    IoU_s    = tp_s / (tp_s + fp_s + fn_s)

The classes partition the confusion: tp, fn and fp summed over the classes are the glacier's
(a false positive beside a debris tongue counts against debris, one beside clean ice against clean
ice). Glacier pixels of unknown class, and false positives nearest to them, count for neither class.
No surface truth (no `mask_debris` layer), or none of class s (0 / 0), gives NaN, never 0.
`glacier_debris_recall` is the per-glacier figure of the area tables (DL4GAM): the debris-covered
area of one glacier detected, over its visible pixels.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torchmetrics.classification import BinaryStatScores

THRESHOLD = 0.5
METRICS = ("accuracy", "iou", "precision", "recall", "f1")
#: glacier surface classes scored separately, and their scores (see the module docstring)
SURFACES = ("debris", "clean")
SURFACE_METRICS = tuple(f"{s}_{m}" for s in SURFACES for m in ("iou", "recall"))
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


def surface_confusion(prob: np.ndarray, target: np.ndarray, debris: np.ndarray, valid: np.ndarray,
                      threshold: float = THRESHOLD) -> np.ndarray:
    """(2, 3) int64 [[tp, fp, fn] of debris-covered ice, [tp, fp, fn] of clean ice] over valid pixels.

    `target`: truth glacier mask; `debris`: 1 debris-covered, 0 not, other values unknown (only
    read on glacier pixels). False positives go to the class of the nearest truth glacier pixel.
    """
    glacier = target.astype(bool)
    out = np.zeros((len(SURFACES), 3), np.int64)
    if not glacier.any():
        return out  # no truth glacier: nothing to score, no class to charge a false positive to
    label = np.zeros(glacier.shape, np.uint8)  # 0 off glacier / unknown, 1 debris, 2 clean
    label[glacier & (debris == 1)] = 1
    label[glacier & (debris == 0)] = 2
    iy, ix = ndimage.distance_transform_edt(~glacier, return_distances=False, return_indices=True)
    nearest = label[iy, ix]
    pred = prob >= threshold
    for k, cls in enumerate((1, 2)):
        truth = (label == cls) & valid
        out[k] = [(pred & truth).sum(), (pred & ~glacier & valid & (nearest == cls)).sum(), (~pred & truth).sum()]
    return out


def surface_scores(c: np.ndarray | None) -> dict[str, float]:
    """{debris_iou, debris_recall, clean_iou, clean_recall} from `surface_confusion` counts (summed
    over cubes); all NaN when `c` is None (no surface truth)."""
    out = {}
    for k, s in enumerate(SURFACES):
        sc = {"iou": float("nan"), "recall": float("nan")} if c is None else scores([*c[k], 0])
        out[f"{s}_iou"], out[f"{s}_recall"] = sc["iou"], sc["recall"]
    return out


def glacier_debris_recall(pred: np.ndarray, glacier: np.ndarray, debris: np.ndarray | None,
                          visible: np.ndarray) -> float:
    """Debris-covered area of one glacier detected: |pred & D| / |D|, D = glacier & debris == 1 &
    visible (DL4GAM's per-glacier debris recall); NaN without debris truth or debris pixels."""
    if debris is None:
        return float("nan")
    d = glacier.astype(bool) & (debris == 1) & visible
    return float((pred & d).sum() / d.sum()) if d.any() else float("nan")


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
