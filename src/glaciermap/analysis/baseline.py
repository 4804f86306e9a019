"""A trivial baseline: one band thresholded (`band >= t`), t chosen on training glaciers only.

The threshold maximises IoU over the valid pixels of a fold's training and validation cubes (the
glaciers a learned model of that fold may see); the fold's test glaciers are never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from glaciermap.data.cubes import read_cube, read_index
from glaciermap.data.folds import Fold
from glaciermap.errors import InputDataError


@dataclass(frozen=True)
class ThresholdFit:
    """A fitted threshold: predict glacier where `band >= threshold`."""

    band: str
    threshold: float
    train_iou: float
    n_pixels: int


def fit_threshold(values: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(t, IoU) maximising the IoU of `values >= t` against `target`, exact over every value.

    Ties go to the lowest threshold. With no positive pixel, t = +inf (predict nothing), IoU = NaN.
    """
    v, t = np.asarray(values, np.float64).ravel(), np.asarray(target).astype(bool).ravel()
    if v.size != t.size:
        raise ValueError(f"values ({v.size}) and target ({t.size}) differ in size")
    n_pos = int(t.sum())
    if v.size == 0 or n_pos == 0:
        return float("inf"), float("nan")
    order = np.argsort(v, kind="stable")
    v, t = v[order], t[order]
    tp = np.cumsum(t[::-1])[::-1]  # positives among values[i:] = predicted positive at t = v[i]
    predicted = v.size - np.arange(v.size)
    iou = tp / (predicted + n_pos - tp)
    first = np.r_[True, v[1:] != v[:-1]]  # a threshold is a distinct value: its first occurrence
    best = int(np.flatnonzero(first)[np.argmax(iou[first])])
    return float(v[best]), float(iou[best])


def cube_pixels(cubes_dir: str | Path, glacier_ids: list[str], band: str) -> tuple[np.ndarray, np.ndarray]:
    """Valid pixels of `band` and the all-glacier label over the inventory cubes of `glacier_ids`."""
    cubes_dir = Path(cubes_dir)
    index = read_index(cubes_dir)
    rows = index[(index.role == "inventory") & index.glacier_id.isin(glacier_ids)]
    if rows.empty:
        raise InputDataError(f"no inventory cube for glaciers {glacier_ids[:5]}", path=cubes_dir)
    values, target = [], []
    for path in rows.path:
        cube = read_cube(cubes_dir / path)
        if band not in cube.bands:
            raise InputDataError(f"band {band!r} not in the cube (bands: {cube.bands})", path=cubes_dir / path,
                                 hint="the baseline band must be one of the ingested bands")
        x = cube.data[cube.bands.index(band)]
        ok = (cube.mask_invalid == 0) & np.isfinite(x)
        values.append(x[ok])
        target.append(cube.mask_all[ok])
    return np.concatenate(values), np.concatenate(target)


def fit_fold_threshold(cubes_dir: str | Path, fold: Fold, band: str) -> ThresholdFit:
    """The fold's threshold, from its training + validation glaciers only."""
    values, target = cube_pixels(cubes_dir, fold.train + fold.val, band)
    t, iou = fit_threshold(values, target)
    return ThresholdFit(band, t, iou, int(values.size))


def predict_threshold(image: np.ndarray, fit: ThresholdFit) -> np.ndarray:
    """0/1 float32 'probability' of one band image (NaN -> 0)."""
    return (np.nan_to_num(image, nan=-np.inf) >= fit.threshold).astype(np.float32)


__all__ = ["ThresholdFit", "fit_threshold", "cube_pixels", "fit_fold_threshold", "predict_threshold"]
