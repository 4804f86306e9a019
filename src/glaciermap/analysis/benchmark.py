"""Held-out benchmark against an inventory: pixel scores and per-glacier areas on test glaciers.

Any predictor (a trained model of each fold, or the threshold baseline) predicts the inventory
cube of every test glacier of every fold. Two views of the same predictions:

- **cubes**: confusion pooled over the test cubes' valid pixels (the convention of
  `analysis/evaluate.py`: a pixel in the buffers of two test cubes counts twice, and the buffer
  may hold neighbouring glaciers of the training side);
- **held-out pixels**: the cubes mosaicked onto one region grid, each pixel counted once, and only
  pixels whose nearest inventory glacier (within `data.buffer_m`) is a test glacier of the fold
  whose model predicts them. Each such pixel also belongs to that glacier's *territory*: the
  predicted glacier area of a glacier is its territory's predicted pixels, compared with the
  inventory's reference area (RGI `Area`) for glaciers lying wholly inside the scene.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from rasterio.enums import Resampling
from rasterio.features import rasterize
from scipy.ndimage import distance_transform_edt
from tqdm.auto import tqdm

from glaciermap.analysis.baseline import ThresholdFit, predict_threshold
from glaciermap.config import Params
from glaciermap.data.cubes import read_cube, read_index
from glaciermap.data.folds import Fold
from glaciermap.data.ingest import glacier_grid
from glaciermap.data.grid import Grid
from glaciermap.data.raw import open_region, raster_footprint, read_on_grid, read_outlines
from glaciermap.errors import InputDataError
from glaciermap.io import atomic_path, write_json
from glaciermap.metrics import THRESHOLD, confusion, scores

#: (fold index, cube path) -> glacier probability (H, W) in [0, 1]
Predictor = Callable[[int, Path], np.ndarray]


def model_predictor(params: Params, model: str, sensor_set: str) -> Predictor:
    """Predict with the mean probability of each fold's trained members (this configuration's
    runs), as evaluate does."""
    from glaciermap.data.windows import ensemble_settings, predict_members
    from glaciermap.tracking.registry import fold_models

    loaded = fold_models(params, model, sensor_set)

    def predict(fold: int, path: Path) -> np.ndarray:
        return predict_members(loaded[fold], path, **ensemble_settings(params))[0].mean(axis=0)

    return predict


def threshold_predictor(fits: dict[int, ThresholdFit]) -> Predictor:
    """Predict with each fold's fitted band threshold."""

    def predict(fold: int, path: Path) -> np.ndarray:
        cube = read_cube(path)
        return predict_threshold(cube.data[cube.bands.index(fits[fold].band)], fits[fold])

    return predict


@dataclass
class RegionLayout:
    """The region grid with every inventory glacier rasterised and each pixel's nearest glacier."""

    grid: Grid
    ids: list[str]  # label i + 1 is glacier ids[i]; 0 is no glacier
    labels: np.ndarray  # (H, W) int32
    nearest: np.ndarray  # (H, W) int32 label of the nearest glacier
    distance_m: np.ndarray  # (H, W) float32 distance to it (0 on glaciers)
    scene_valid: np.ndarray  # (H, W) bool, inside the optical scene with data
    reference_km2: dict[str, float]  # inventory area (reference column, else the outline's area)
    inside_scene: set[str]  # glaciers whose outline lies wholly inside the scene

    def offset(self, grid: Grid) -> tuple[int, int]:
        """(row, col) of a cube grid's top-left pixel in the region grid (same lattice)."""
        res = self.grid.res
        row = (self.grid.transform.f - grid.transform.f) / res
        col = (grid.transform.c - self.grid.transform.c) / res
        if abs(row - round(row)) > 1e-6 or abs(col - round(col)) > 1e-6 or grid.res != res:
            raise InputDataError("cube grid not on the region lattice", hint="re-run `glaciermap ingest`")
        return int(round(row)), int(round(col))


def region_layout(params: Params, reference_column: str | None = "Area") -> RegionLayout:
    """Rasterise the ingested glaciers on one grid covering every cube (the cubes' lattice)."""
    index = read_index(params.data.cubes_dir)
    inv = index[index.role == "inventory"].drop_duplicates("glacier_id")
    first = read_cube(params.data.cubes_dir / inv.path.iloc[0])
    crs, res = first.grid.crs, first.grid.res
    region = open_region(params.data.raw_dir)
    outlines = read_outlines(region).set_index("glacier_id").loc[inv.glacier_id].to_crs(crs)
    grid = glacier_grid(outlines.union_all(), crs, res, params.data.buffer_m)
    ids = outlines.index.tolist()
    labels = rasterize(((g, i + 1) for i, g in enumerate(outlines.geometry)), out_shape=(grid.height, grid.width),
                       transform=grid.transform, fill=0, dtype="int32")
    dist, (iy, ix) = distance_transform_edt(labels == 0, return_indices=True)
    optical_path = region.scene_path(region.manifest.inventory_epochs[0], "optical")
    band = params.sensors.groups["optical"][0]
    scene_valid = np.isfinite(read_on_grid(optical_path, [band], grid, resampling=Resampling.nearest)[0])
    raw = gpd.read_file(region.outlines_path)
    raw = raw.set_index(raw[region.manifest.id_column].astype(str))
    if reference_column and reference_column in raw.columns:
        reference = raw.loc[ids, reference_column].astype(float)
    else:
        reference = outlines.geometry.area / 1e6
    footprint = raster_footprint(optical_path, crs)
    return RegionLayout(grid, ids, labels, labels[iy, ix], (dist * res).astype(np.float32), scene_valid,
                        {g: float(a) for g, a in reference.items()},
                        set(outlines.index[outlines.geometry.within(footprint)]))


def heldout_predictions(params: Params, layout: RegionLayout, folds: list[Fold], predictor: Predictor,
                        *, desc: str = "benchmark", progress: bool = False
                        ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """(region probability, NaN where not evaluated; per fold the cube confusion [tp, fp, fn, tn]).

    Every fold in `params.train.folds` predicts its test glaciers' inventory cubes.
    """
    index = read_index(params.data.cubes_dir)
    label_of = {g: i + 1 for i, g in enumerate(layout.ids)}
    out = np.full(layout.labels.shape, np.nan, np.float32)
    cube_conf: dict[int, np.ndarray] = {}
    for f in params.train.folds:
        cube_conf[f] = np.zeros(4, np.int64)
        test = folds[f].test
        rows = index[(index.role == "inventory") & index.glacier_id.isin(test)]
        acc, cnt = np.zeros(out.shape, np.float64), np.zeros(out.shape, np.int32)
        for path in tqdm(rows.path, desc=f"{desc} fold {f}", disable=not progress, leave=False):
            cube = read_cube(params.data.cubes_dir / path)
            prob = predictor(f, params.data.cubes_dir / path)
            valid = cube.mask_invalid == 0
            cube_conf[f] += confusion(prob, cube.mask_all, valid)
            r, c = layout.offset(cube.grid)
            h, w = prob.shape
            acc[r:r + h, c:c + w] += np.where(valid, prob, 0.0)
            cnt[r:r + h, c:c + w] += valid
        test_labels = np.zeros(len(layout.ids) + 1, bool)
        test_labels[[label_of[g] for g in test if g in label_of]] = True
        sel = (test_labels[layout.nearest] & (layout.distance_m <= params.data.buffer_m)
               & layout.scene_valid & (cnt > 0))
        out[sel] = (acc[sel] / cnt[sel]).astype(np.float32)
    return out, cube_conf


def glacier_areas(layout: RegionLayout, prob: np.ndarray) -> pd.DataFrame:
    """Per glacier: reference area, rasterised outline area, predicted area in its territory."""
    px_km2 = layout.grid.res ** 2 / 1e6
    n = len(layout.ids) + 1
    evaluated = np.isfinite(prob)
    pred = np.bincount(layout.nearest[evaluated & (np.nan_to_num(prob) >= THRESHOLD)], minlength=n) * px_km2
    raster = np.bincount(layout.labels.ravel(), minlength=n) * px_km2
    seen = np.bincount(layout.labels[evaluated], minlength=n)
    df = pd.DataFrame({"glacier_id": layout.ids, "reference_km2": [layout.reference_km2[g] for g in layout.ids],
                       "raster_km2": raster[1:], "pred_km2": pred[1:],
                       "inside_scene": [g in layout.inside_scene for g in layout.ids],
                       "evaluated": seen[1:] > 0})
    df["error_pct"] = 100 * (df.pred_km2 - df.reference_km2) / df.reference_km2
    return df


def area_summary(areas: pd.DataFrame, large_km2: float = 1.0) -> dict[str, Any]:
    """Per-glacier area errors (%) over evaluated glaciers lying wholly inside the scene."""
    d = areas[areas.inside_scene & areas.evaluated]
    big = d[d.reference_km2 >= large_km2]
    total = lambda x: float(100 * (x.pred_km2.sum() - x.reference_km2.sum()) / x.reference_km2.sum()) if len(x) else None  # noqa: E731
    return {"n_glaciers": int(len(d)), "median_abs_error_pct": float(d.error_pct.abs().median()),
            "mean_error_pct": float(d.error_pct.mean()), "total_error_pct": total(d),
            f"n_glaciers_ge{large_km2:g}km2": int(len(big)),
            f"median_abs_error_pct_ge{large_km2:g}km2": float(big.error_pct.abs().median()) if len(big) else None,
            f"total_error_pct_ge{large_km2:g}km2": total(big)}


def method_result(layout: RegionLayout, prob: np.ndarray, cube_conf: dict[int, np.ndarray]
                  ) -> tuple[dict[str, Any], pd.DataFrame]:
    """Scores of one method: test cubes (evaluate.py: per fold, mean over folds; and pooled), held-out
    pixels, per-glacier areas."""
    sel = np.isfinite(prob)
    held = confusion(prob[sel], layout.labels[sel] > 0, np.ones(int(sel.sum()), bool))
    areas = glacier_areas(layout, prob)
    keep = ("iou", "precision", "recall", "f1")
    per_fold = {f"fold{f}": {k: v for k, v in scores(c).items() if k in keep} for f, c in cube_conf.items()}
    pooled, pixels = scores(sum(cube_conf.values())), scores(held)
    return {**{k: pooled[k] for k in keep}, "n_pixels_cubes": int(sum(c.sum() for c in cube_conf.values())),
            **{f"{k}_mean_over_folds": float(np.mean([r[k] for r in per_fold.values()])) for k in keep},
            "folds": per_fold,
            "heldout_pixels": {**{k: pixels[k] for k in keep}, "n_pixels": int(held.sum())},
            "area": area_summary(areas)}, areas


def run_benchmark(params: Params, sensor_set: str, baseline_band: str, *, progress: bool = False
                  ) -> tuple[dict[str, Any], RegionLayout, dict[str, np.ndarray], dict[str, pd.DataFrame]]:
    """The band-threshold baseline and every model of `train.models`, on the same held-out pixels.

    Returns the metrics (JSON-ready), the layout, and per method the held-out probability map
    and the per-glacier area table.
    """
    from glaciermap.analysis.baseline import fit_fold_threshold
    from glaciermap.data.folds import read_folds

    folds = read_folds(params.folds.path)
    missing = [f for f in params.train.folds if f >= len(folds)]
    if missing:
        raise InputDataError(f"folds {missing} not in the folds file", path=params.folds.path,
                             hint="re-run `glaciermap folds`")
    layout = region_layout(params)
    fits = {f: fit_fold_threshold(params.data.cubes_dir, folds[f], baseline_band) for f in params.train.folds}
    baseline = f"{baseline_band.lower()}_threshold"
    predictors = {baseline: threshold_predictor(fits),
                  **{m: model_predictor(params, m, sensor_set) for m in params.train.models}}
    methods, probs, areas = {}, {}, {}
    for name, predictor in predictors.items():
        prob, cube_conf = heldout_predictions(params, layout, folds, predictor, desc=name, progress=progress)
        methods[name], areas[name] = method_result(layout, prob, cube_conf)
        probs[name] = prob
    methods[baseline]["thresholds"] = {f"fold{f}": {"band": fit.band, "threshold": fit.threshold,
                                                    "train_iou": fit.train_iou, "n_train_pixels": fit.n_pixels}
                                       for f, fit in fits.items()}
    result = {
        "sensor_set": sensor_set, "baseline": baseline, "folds": list(params.train.folds),
        "split": {f"fold{f}": {"n_train": len(folds[f].train), "n_val": len(folds[f].val),
                               "n_test": len(folds[f].test), "lon_range": list(folds[f].lon_range)}
                  for f in params.train.folds},
        "methods": methods,
    }
    return result, layout, probs, areas


def log_benchmark(params: Params, result: dict[str, Any], artifacts: list[Path]) -> str:
    """Log the benchmark's metrics and files to one MLflow run (one per configuration)."""
    from mlflow.tracking import MlflowClient

    from glaciermap.tracking import runs as tracking

    client = MlflowClient(tracking.resolve_tracking_uri(params.tracking))
    exp_id = tracking.experiment_id(params.tracking.experiment)
    run_id = tracking.find_or_create_parent(client, exp_id, "benchmark", {
        "glaciermap.role": "benchmark",
        "glaciermap.config": tracking.config_hash(params.model_dump(mode="json", exclude={"tracking"}))})
    for name, m in result["methods"].items():
        flat = {"iou": m["iou"], "precision": m["precision"], "recall": m["recall"],
                "heldout_iou": m["heldout_pixels"]["iou"],
                **{f"area_{k}": v for k, v in m["area"].items() if isinstance(v, float)}}
        for k, v in flat.items():
            if v is not None and np.isfinite(v):
                client.log_metric(run_id, f"{name}_{k}", float(v))
    for p in artifacts:
        if Path(p).exists():
            client.log_artifact(run_id, str(p))
    return run_id


def benchmark_stage(params: Params, sensor_set: str, baseline_band: str, *, rgb_bands: list[str], out: Path,
                    figure: Path, details: Path, progress: bool = False) -> dict[str, Any]:
    """`glaciermap benchmark`: run it, write the metrics JSON, the per-glacier area tables and the
    figure, log them to MLflow; return the metrics."""
    from rasterio.enums import Resampling

    from glaciermap.analysis.benchmark_figures import benchmark_figure
    from glaciermap.data.raw import open_region, read_on_grid

    result, layout, probs, areas = run_benchmark(params, sensor_set, baseline_band, progress=progress)
    details.mkdir(parents=True, exist_ok=True)
    for name, table in areas.items():
        with atomic_path(details / f"areas_{name}.csv") as tmp:
            table.to_csv(tmp, index=False)
    write_json(out, result)
    region = open_region(params.data.raw_dir)
    scene = region.scene_path(region.manifest.inventory_epochs[0], "optical")
    rgb = np.moveaxis(read_on_grid(scene, rgb_bands, layout.grid, resampling=Resampling.nearest), 0, -1)
    titles = {n: f"{n}: held-out IoU {m['heldout_pixels']['iou']:.3f} (cubes {m['iou']:.3f})"
              for n, m in result["methods"].items()}
    benchmark_figure(rgb, layout.labels, probs, titles, figure)
    log_benchmark(params, result, [out, figure, *details.glob("areas_*.csv")])
    return result


__all__ = ["benchmark_stage", "run_benchmark", "log_benchmark", "Predictor", "model_predictor", "threshold_predictor", "RegionLayout", "region_layout",
           "heldout_predictions", "glacier_areas", "area_summary", "method_result"]
