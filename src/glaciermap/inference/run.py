"""`glaciermap infer`: registry models -> probability rasters, outlines and per-glacier areas.

Each glacier is predicted only by the members (one per seed of `train.seeds`) of the fold whose
test set holds it, never by a model that trained or validated on it: the probability is the
members' mean, the ensemble spread their standard deviation. Rasters already written (by an
interrupted run, or an earlier `dvc repro`: products/predictions persists) are validated and
reused when they were made from the same inputs (`raster_key`), else recomputed.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from functools import partial
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio.features import shapes
from shapely.geometry import shape
from tqdm.auto import tqdm

from glaciermap.config import Params
from glaciermap.data.cubes import STATIC_GROUPS, read_cube, read_index
from glaciermap.data.folds import read_folds
from glaciermap.data.grid import Grid
from glaciermap.data.windows import ensemble_settings, predict_members
from glaciermap.device import accelerator, resolve_device
from glaciermap.errors import GlaciermapError
from glaciermap.inference.distributed import map_cubes
from glaciermap.io import atomic_path
from glaciermap.metrics import THRESHOLD, glacier_debris_recall
from glaciermap.tracking.registry import fold_models, member_alias, registered_name
from glaciermap.tracking.runs import write_provenance


#: GeoTIFF tag of a probability raster: the `raster_key` of the inputs it was predicted from
KEY_TAG = "GLACIERMAP_INPUTS"
#: bands of a probability raster, in order
PROBABILITY_BANDS = ("probability", "ensemble_std", "uncertainty")
#: area bounds: the p = Phi(+1) and p = Phi(-1) contours, the 1-sigma envelope of a boundary at
#: p = 0.5 with a Gaussian position error (see glaciermap.analysis.area_change)
P_LO, P_HI = 0.8413, 0.1587


def raster_key(cube_file: Path, model_ids: list[str], *, stride: int, tta: bool) -> str:
    """Fingerprint of what a glacier's raster is predicted from: the cube file's bytes, the MLflow
    runs of the members used (a retrained or re-registered member has a new run) and the
    prediction settings. A raster whose tag differs is stale and is predicted again."""
    h = hashlib.sha256(Path(cube_file).read_bytes())
    h.update(json.dumps({"models": model_ids, "stride": stride, "tta": tta}, sort_keys=True).encode())
    return h.hexdigest()


def write_probability(path: Path, prob: np.ndarray, std: np.ndarray, grid: Grid, key: str | None = None) -> None:
    """Probability, ensemble spread and pixel uncertainty ``sqrt(p * (1 - p))`` (the standard
    deviation of a Bernoulli pixel with probability p: 0 where the model is sure, 0.5 at p = 0.5)
    as a 3-band float32 GeoTIFF, atomically, tagged with `key`. NaN in p (the pixels `map_glacier`
    leaves unseen) is NaN in every band, the GeoTIFF's nodata."""
    profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=len(PROBABILITY_BANDS),
                   dtype="float32", crs=grid.crs, transform=grid.transform, compress="deflate", nodata=np.nan)
    with np.errstate(invalid="ignore"):  # NaN where p is outside [0, 1]: read_probability rejects it
        bands = np.stack([prob, std, np.sqrt(prob * (1 - prob))]).astype(np.float32)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(bands)
            dst.descriptions = PROBABILITY_BANDS
            if key is not None:
                dst.update_tags(**{KEY_TAG: key})


def read_probability(path: Path, grid: Grid, key: str | None = None,
                     valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(probability, ensemble spread) of a previously written raster if it is complete (all
    bands), on the right grid, (when `key` is given) predicted from the same inputs and (when
    `valid` is given) NaN exactly outside it, else None. Without `valid` every value must be a
    probability."""
    if not path.exists():
        return None
    try:
        with rasterio.open(path) as src:
            if (src.shape != (grid.height, grid.width) or src.count != len(PROBABILITY_BANDS) or src.crs != grid.crs
                    or not src.transform.almost_equals(grid.transform)
                    or (key is not None and src.tags().get(KEY_TAG) != key)):
                return None
            prob, std = src.read([1, 2])
    except rasterio.errors.RasterioIOError:
        return None
    if valid is None:
        return (prob, std) if is_probability(prob) else None
    if valid.shape != prob.shape or not np.isnan(prob[~valid]).all():  # e.g. written before unseen pixels were NaN
        return None
    return (prob, std) if is_probability(prob[valid]) else None


def is_probability(prob: np.ndarray) -> bool:
    """Every value finite and in [0, 1] (an empty array too)."""
    return bool(np.isfinite(prob).all() and (prob.size == 0 or (prob.min() >= 0 and prob.max() <= 1)))


def polygons(mask: np.ndarray, grid: Grid) -> list:
    """Polygons of the True pixels (pixel-exact, so their area equals the raster area)."""
    return [shape(g) for g, v in shapes(mask.astype(np.uint8), mask=mask, transform=grid.transform) if v == 1]


def seen_pixels(cube) -> np.ndarray:
    """(H, W) bool: the pixels the optical data saw (not `mask_invalid`: no data, beyond the scene,
    cloud, shadow). Only these carry a probability in the rasters and count in the areas."""
    return cube.mask_invalid == 0


def glacier_stats(prob: np.ndarray, cube) -> dict[str, float]:
    """Inside the outline over visible pixels: predicted area (p >= 0.5) and its 1-sigma bounds
    ``pred_area_lo_km2`` (p >= P_LO = 0.8413) and ``pred_area_hi_km2`` (p >= P_HI = 0.1587);
    masked fraction of the outline; recall (predicted share of the visible outline); the recall of
    its debris-covered ice (NaN where the cube has no debris mask or no debris)."""
    px = cube.grid.res ** 2 / 1e6
    inside = cube.mask_glacier == 1
    visible = inside & seen_pixels(cube)
    pred = prob >= THRESHOLD
    return {"pred_area_km2": float((pred & visible).sum() * px),
            "pred_area_lo_km2": float(((prob >= P_LO) & visible).sum() * px),
            "pred_area_hi_km2": float(((prob >= P_HI) & visible).sum() * px),
            "masked_frac": float(1 - visible.sum() / max(inside.sum(), 1)),
            "recall": float((pred & visible).sum() / max(visible.sum(), 1)),
            "debris_recall": glacier_debris_recall(pred, inside, cube.mask_debris, visible)}


def map_glacier(item: dict, device, *, models: dict, params: Params, name: str,
                cube=None) -> tuple[np.ndarray, np.ndarray]:
    """Predict one cube with the members of its fold (`item["fold"]`): p = mean of their
    probabilities, spread = their standard deviation (0 with one member), both NaN off
    `seen_pixels`; write the probability raster, return (p, spread) as written. `cube`: the item's
    cube if the caller has read it. Module-level, so DDP ranks can run it."""
    probs, _ = predict_members(models[item["fold"]], item["cube"], **ensemble_settings(params, device=device))
    for seed, member in zip(params.train.seeds, probs):
        if not is_probability(member):
            raise GlaciermapError(f"model {name}@{member_alias(item['fold'], seed)} predicted values outside [0, 1] "
                                  f"or NaN for glacier {item['glacier_id']}, epoch {item['epoch']}", path=item["cube"],
                                  hint="check the cube for extreme or NaN inputs and the model's weights")
    cube = cube if cube is not None else read_cube(item["cube"])
    seen = seen_pixels(cube)
    prob, std = np.where(seen, probs.mean(axis=0), np.nan), np.where(seen, probs.std(axis=0), np.nan)
    write_probability(item["raster"], prob, std, cube.grid, item["key"])
    return prob, std


def cached_probability(item: dict, cube=None) -> tuple[np.ndarray, np.ndarray] | None:
    """The raster `map_glacier` wrote for this item, if it is still valid for its cube (`read_probability`)."""
    cube = cube if cube is not None else read_cube(item["cube"])
    return read_probability(item["raster"], cube.grid, item["key"], valid=seen_pixels(cube))


def warn_static_inputs(params: Params, sensor_set: str) -> list[str]:
    """Warn when the sensor set holds groups that are one map for every epoch (`STATIC_GROUPS`):
    the later epochs' maps then keep part of the inventory extent, and rates come out too slow
    (experiments/compare: +1.0 to +1.7 %/yr with dh/dt or DEM and no SAR). Returns those groups."""
    static = [g for g in params.sensors.sets[sensor_set] if g in STATIC_GROUPS]
    if static:
        warnings.warn(f"sensor set {sensor_set!r} uses {' and '.join(static)}, one map for every epoch: later "
                      "maps keep part of the inventory extent and rates come out too slow (README: which model "
                      "and which sensors); map change with per-epoch inputs such as optical_sar", stacklevel=2)
    return static


def infer(params: Params, model: str, sensor_set: str, out_dir: Path, *, progress: bool = True) -> pd.DataFrame:
    """Predict every test glacier at every epoch with its fold's members; write rasters, outlines
    and an area table."""
    name = registered_name(model, sensor_set)
    warn_static_inputs(params, sensor_set)
    folds = {f.index: f for f in read_folds(params.folds.path)}
    models = fold_models(params, model, sensor_set, registry=True)
    member_runs = {f: [b.extra.get("mlflow_run_id") for _, b in members] for f, members in models.items()}
    index = read_index(params.data.cubes_dir)
    fold_of = {g: f for f in params.train.folds for g in folds[f].test}
    rows, outlines = [], []
    todo = index[index.glacier_id.isin(fold_of)]
    job = partial(map_glacier, models=models, params=params, name=name)
    items = []
    for _, r in todo.iterrows():
        fold = fold_of[r.glacier_id]
        key = raster_key(params.data.cubes_dir / r.path, member_runs[fold], stride=params.patches.eval_stride,
                         tta=params.infer.tta)
        items.append({"cube": params.data.cubes_dir / r.path, "raster": out_dir / r.epoch / f"{r.glacier_id}.tif",
                      "fold": fold, "key": key, "glacier_id": r.glacier_id, "epoch": r.epoch})
    if params.infer.devices != 1:  # the rasters on many devices (Lightning DDP), the tables below
        stale = [it for it in items if cached_probability(it) is None]
        if not map_cubes(job, stale, accelerator=accelerator(params.infer.device), devices=params.infer.devices,
                         num_nodes=params.infer.num_nodes, strategy=params.infer.strategy, progress=progress):
            return pd.DataFrame()  # ddp: another rank's copy of this command; rank 0 writes the tables
    for (_, r), item in tqdm(zip(todo.iterrows(), items), total=len(todo), desc="infer", unit="cube",
                             disable=not progress):
        cube = read_cube(item["cube"])
        cached = cached_probability(item, cube)
        prob, std = cached if cached is not None else job(item, resolve_device(params.infer.device), cube=cube)
        stats = glacier_stats(prob, cube)
        rows.append({"glacier_id": r.glacier_id, "epoch": r.epoch, "role": r.role, "year": r.year,
                     "fold": fold_of[r.glacier_id], "area_inventory_km2": r.area_km2, **stats})
        mask = (prob >= THRESHOLD) & (cube.mask_glacier == 1)
        outlines += [{"glacier_id": r.glacier_id, "epoch": r.epoch, "geometry": g} for g in polygons(mask, cube.grid)]
        crs = cube.grid.crs
    long = pd.DataFrame(rows)
    with atomic_path(out_dir / "areas_long.csv") as tmp:
        long.to_csv(tmp, index=False)
    if outlines:
        gdf = gpd.GeoDataFrame(outlines, crs=crs).dissolve(by=["glacier_id", "epoch"]).reset_index()
        with atomic_path(out_dir / "outlines.gpkg") as tmp:
            gdf.to_file(tmp, driver="GPKG", layer="outlines")
    wide = per_glacier_table(long)
    with atomic_path(out_dir / "areas.csv") as tmp:
        wide.to_csv(tmp, index=False)
    write_provenance(out_dir, model, sensor_set, {f"fold{f}": runs for f, runs in member_runs.items()})
    return wide


def per_glacier_table(long: pd.DataFrame) -> pd.DataFrame:
    """One row per glacier: inventory-year and recent-year figures side by side (areas: predicted,
    visible; ``area_lo_*`` / ``area_hi_*`` the 1-sigma bounds of :func:`glacier_stats`)."""
    inv = long[long.role == "inventory"].set_index("glacier_id")
    rec = long[long.role == "recent"].sort_values("year").groupby("glacier_id").last()
    return pd.DataFrame({
        "area_inventory_km2": inv.area_inventory_km2, "fold": inv.fold,
        "year_inv": inv.year, "year_recent": rec.year,
        "pred_area_inv_km2": inv.pred_area_km2, "pred_area_recent_km2": rec.pred_area_km2,
        "masked_frac_inv": inv.masked_frac, "masked_frac_recent": rec.masked_frac,
        "recall_test": inv.recall, "debris_recall": inv.debris_recall,
        "area_lo_inv_km2": inv.pred_area_lo_km2, "area_hi_inv_km2": inv.pred_area_hi_km2,
        "area_lo_recent_km2": rec.pred_area_lo_km2, "area_hi_recent_km2": rec.pred_area_hi_km2,
    }).rename_axis("glacier_id").reset_index()
