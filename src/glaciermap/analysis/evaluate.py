"""Test-set evaluation per fold: the paper's Table 1 (per fold, and mean +- std across folds), plus
IoU and recall on debris-covered and clean ice where the cubes carry a debris mask (NaN where
none of a fold's test cubes does; definitions in `glaciermap.metrics`).

A fold's prediction is the mean probability of its members (one per seed of `train.seeds`), with
infer's settings (flips with `infer.tta`), as in `glaciermap infer`."""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from glaciermap.config import Params
from glaciermap.data.cubes import read_index
from glaciermap.data.folds import read_folds
from glaciermap.data.windows import ensemble_settings, n_windows, predict_members
from glaciermap.metrics import (METRICS, SURFACE_METRICS, confusion, scores, surface_confusion,
                                surface_scores)
from glaciermap.tracking.registry import fold_models


def evaluate_fold(members: list, params: Params, glacier_ids: list[str], progress: bool = False) -> dict[str, Any]:
    """Predict each test glacier's inventory cube with the mean probability of the fold's members
    [(model, bundle), ...]; pool the pixels."""
    bundle = members[0][1]
    index = read_index(params.data.cubes_dir)
    rows = index[(index.role == "inventory") & index.glacier_id.isin(glacier_ids)]
    total, n_patches = np.zeros(4, np.int64), 0
    surface, n_surface = np.zeros((2, 3), np.int64), 0  # debris / clean counts, cubes with a debris mask
    for path in tqdm(rows.path, desc=f"evaluate fold {bundle.fold}", disable=not progress, leave=False):
        probs, cube = predict_members(members, params.data.cubes_dir / path, **ensemble_settings(params))
        prob = probs.mean(axis=0)
        total += confusion(prob, cube.target, cube.valid)
        if cube.debris is not None:
            surface += surface_confusion(prob, cube.target, cube.debris, cube.valid)
            n_surface += 1
        n_patches += n_windows(*cube.target.shape, bundle.patch_size, params.patches.eval_stride)
    return {**scores(total), **surface_scores(surface if n_surface else None), "n_glaciers": len(rows),
            "n_glaciers_debris_mask": n_surface, "n_members": len(members), "n_patches": n_patches,
            "n_pixels": int(total.sum())}


def evaluate(params: Params, model: str, sensor_set: str, progress: bool = True) -> dict[str, Any]:
    """Table 1 for one (model, sensor set): every trained fold (this configuration's runs) plus mean and std."""
    folds = read_folds(params.folds.path)
    models = fold_models(params, model, sensor_set)
    per_fold = {f"fold{f}": evaluate_fold(models[f], params, folds[f].test, progress) for f in params.train.folds}
    summary = {}
    for m in (*METRICS, *SURFACE_METRICS):
        vals = np.array([r[m] for r in per_fold.values()], float)
        vals = vals[np.isfinite(vals)]  # a fold without the figure (no debris mask, 0 / 0) is left out
        summary[f"{m}_mean"] = float(vals.mean()) if vals.size else float("nan")
        summary[f"{m}_std"] = float(vals.std()) if vals.size else float("nan")
    return {"model": model, "sensor_set": sensor_set, "folds": per_fold, "mean": summary}


def log_evaluation(params: Params, result: dict[str, Any]) -> None:
    """Log the table's means (`test_<metric>_mean` / `_std`, debris and clean ice included) and the
    per-fold IoU to the (model, sensor set) parent run in MLflow (NaN figures are not logged), and
    each fold's test scores to that fold's run (so the UI sorts fold runs by test IoU)."""
    from glaciermap.tracking.runs import log_to_fold_runs, log_to_parent

    metrics = {f"test_{k}": v for k, v in result["mean"].items()}
    metrics.update({f"test_iou_{fold}": r["iou"] for fold, r in result["folds"].items()})
    metrics.update({f"test_debris_iou_{fold}": r["debris_iou"] for fold, r in result["folds"].items()})
    log_to_parent(params, result["model"], result["sensor_set"], metrics, payloads={"evaluation.json": result})
    log_to_fold_runs(params, result["model"], result["sensor_set"],
                     {int(fold.removeprefix("fold")): {f"test_{m}": r[m] for m in METRICS}
                      for fold, r in result["folds"].items()})
