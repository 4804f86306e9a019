"""Test-set evaluation per fold: the paper's Table 1 (per fold, and mean +- std across folds).

A fold's prediction is the mean probability of its members (one per seed of `train.seeds`), as in
`glaciermap infer`."""

from __future__ import annotations

from typing import Any

import numpy as np
from tqdm.auto import tqdm

from glaciermap.config import Params
from glaciermap.data.cubes import read_index
from glaciermap.data.folds import read_folds
from glaciermap.data.windows import n_windows, predict_members
from glaciermap.metrics import METRICS, confusion, scores
from glaciermap.tracking.registry import fold_models


def evaluate_fold(members: list, params: Params, glacier_ids: list[str], progress: bool = False) -> dict[str, Any]:
    """Predict each test glacier's inventory cube with the mean probability of the fold's members
    [(model, bundle), ...]; pool the pixels."""
    bundle = members[0][1]
    index = read_index(params.data.cubes_dir)
    rows = index[(index.role == "inventory") & index.glacier_id.isin(glacier_ids)]
    total, n_patches = np.zeros(4, np.int64), 0
    infer = params.infer
    for path in tqdm(rows.path, desc=f"evaluate fold {bundle.fold}", disable=not progress, leave=False):
        probs, cube = predict_members(members, params.data.cubes_dir / path, stride=params.patches.eval_stride,
                                      batch_size=infer.batch_size or params.patches.batch_size,
                                      device=infer.device, precision=infer.precision)
        total += confusion(probs.mean(axis=0), cube.target, cube.valid)
        n_patches += n_windows(*cube.target.shape, bundle.patch_size, params.patches.eval_stride)
    return {**scores(total), "n_glaciers": len(rows), "n_members": len(members), "n_patches": n_patches,
            "n_pixels": int(total.sum())}


def evaluate(params: Params, model: str, sensor_set: str, progress: bool = True) -> dict[str, Any]:
    """Table 1 for one (model, sensor set): every trained fold (this configuration's runs) plus mean and std."""
    folds = read_folds(params.folds.path)
    models = fold_models(params, model, sensor_set)
    per_fold = {f"fold{f}": evaluate_fold(models[f], params, folds[f].test, progress) for f in params.train.folds}
    summary = {}
    for m in METRICS:
        vals = np.array([r[m] for r in per_fold.values()], float)
        summary[f"{m}_mean"] = float(np.nanmean(vals))
        summary[f"{m}_std"] = float(np.nanstd(vals))
    return {"model": model, "sensor_set": sensor_set, "folds": per_fold, "mean": summary}


def log_evaluation(params: Params, result: dict[str, Any]) -> None:
    """Log the table's means to the (model, sensor set) parent run in MLflow."""
    from glaciermap.tracking.runs import log_to_parent

    metrics = {f"test_{k}": v for k, v in result["mean"].items()}
    metrics.update({f"test_iou_{fold}": r["iou"] for fold, r in result["folds"].items()})
    log_to_parent(params, result["model"], result["sensor_set"], metrics, payloads={"evaluation.json": result})
