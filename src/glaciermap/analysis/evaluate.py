"""Test-set evaluation per fold: the paper's Table 1 (per fold, and mean +- std across folds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from glaciermap.config import Params
from glaciermap.data.cubes import read_index
from glaciermap.data.datamodule import grid_offsets
from glaciermap.data.folds import read_folds
from glaciermap.inference.predict import predict_cube_file
from glaciermap.models.serialize import load_bundle

METRICS = ("accuracy", "iou", "precision", "recall", "f1")


def confusion(prob: np.ndarray, target: np.ndarray, valid: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """[tp, fp, fn, tn] over valid pixels."""
    p, t = (prob >= threshold)[valid], target.astype(bool)[valid]
    return np.array([(p & t).sum(), (p & ~t).sum(), (~p & t).sum(), (~p & ~t).sum()], dtype=np.int64)


def scores(c: np.ndarray) -> dict[str, float]:
    """Accuracy, IoU, precision, recall and F1 from [tp, fp, fn, tn]."""
    tp, fp, fn, tn = (float(v) for v in c)
    div = lambda a, b: a / b if b else float("nan")  # noqa: E731
    precision, recall = div(tp, tp + fp), div(tp, tp + fn)
    return {"accuracy": div(tp + tn, tp + fp + fn + tn), "iou": div(tp, tp + fp + fn),
            "precision": precision, "recall": recall, "f1": div(2 * tp, 2 * tp + fp + fn)}


def evaluate_fold(run_dir: Path, params: Params, glacier_ids: list[str], progress: bool = False) -> dict[str, Any]:
    """Predict each test glacier's inventory cube with the fold's model; pool the pixels."""
    model, bundle = load_bundle(run_dir / "model")
    index = read_index(params.data.cubes_dir)
    rows = index[(index.role == "inventory") & index.glacier_id.isin(glacier_ids)]
    total, n_patches = np.zeros(4, np.int64), 0
    size, stride = bundle.patch_size, params.patches.eval_stride
    for path in tqdm(rows.path, desc=f"evaluate fold {bundle.fold}", disable=not progress, leave=False):
        prob, cube = predict_cube_file(model, bundle, params.data.cubes_dir / path, stride=stride,
                                       batch_size=params.patches.batch_size)
        total += confusion(prob, cube.target, cube.valid)
        h, w = cube.target.shape
        n_patches += len(grid_offsets(h, size, stride)) * len(grid_offsets(w, size, stride))
    return {**scores(total), "n_glaciers": len(rows), "n_patches": n_patches,
            "n_pixels": int(total.sum())}


def evaluate(params: Params, model: str, sensor_set: str, progress: bool = True) -> dict[str, Any]:
    """Table 1 for one (model, sensor set): every trained fold plus mean and std."""
    folds = read_folds(params.folds.path)
    per_fold = {}
    for f in params.train.folds:
        run_dir = params.train.runs_dir / model / sensor_set / f"fold{f}"
        per_fold[f"fold{f}"] = evaluate_fold(run_dir, params, folds[f].test, progress)
    summary = {}
    for m in METRICS:
        vals = np.array([r[m] for r in per_fold.values()], float)
        summary[f"{m}_mean"] = float(np.nanmean(vals))
        summary[f"{m}_std"] = float(np.nanstd(vals))
    return {"model": model, "sensor_set": sensor_set, "folds": per_fold, "mean": summary}


def log_evaluation(params: Params, result: dict[str, Any]) -> None:
    """Log the table's means to the (model, sensor set) parent run in MLflow."""
    from glaciermap.training.tracking import log_to_parent

    metrics = {f"test_{k}": v for k, v in result["mean"].items()}
    metrics.update({f"test_iou_{fold}": r["iou"] for fold, r in result["folds"].items()})
    log_to_parent(params, result["model"], result["sensor_set"], metrics, payloads={"evaluation.json": result})
