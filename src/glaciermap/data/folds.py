"""Cross-validation folds: geographic (West to East, balanced by glacierized area) or published.

Geographic, as in Diaconu & Bamber (2023): glaciers are sorted by centroid longitude and cut into
k contiguous groups of about equal glacier area; each fold tests on one group and trains on the
others (glaciers below a minimum area are left out of training and validation). The unit is the
index's `group` (the glacier an outline belongs to, e.g. the RGIId of several divides): a group
lies in one fold and on one side of the train/val split, so no fold tests on a glacier it
trained on. A group's longitude is the area-weighted mean of its members' longitudes.

Published (`folds.method: published`): one fold, index 0, whose train / val / test sets are the
dataset's own split (index.csv column `split`: train, val, test), e.g. GlaViTU's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from glaciermap.config import FoldsConfig
from glaciermap.data.cubes import read_cube
from glaciermap.errors import ConfigError, InputDataError
from glaciermap.io import write_json


@dataclass(frozen=True)
class Fold:
    """One fold: glacier ids per split and normalisation stats from its training glaciers."""

    index: int
    train: list[str]
    val: list[str]
    test: list[str]
    stats: dict[str, dict[str, float]]
    lon_range: tuple[float, float]


def glacier_groups(inv: pd.DataFrame) -> pd.DataFrame:
    """Per group of an inventory table (index glacier_id; lon, area_km2, optional group):
    total area_km2 and area-weighted mean lon (plain mean for a group of zero area)."""
    group = inv["group"] if "group" in inv.columns else pd.Series(inv.index, index=inv.index)
    t = pd.DataFrame({"group": group.astype(str).values, "area_km2": inv["area_km2"].to_numpy(float),
                      "lon": inv["lon"].to_numpy(float)})
    t["weighted"] = t["area_km2"] * t["lon"]
    g = t.groupby("group", sort=True).agg(area_km2=("area_km2", "sum"), weighted=("weighted", "sum"),
                                          mean_lon=("lon", "mean"))
    g["lon"] = np.where(g["area_km2"] > 0, g["weighted"] / g["area_km2"].where(g["area_km2"] > 0, 1), g["mean_lon"])
    return g[["lon", "area_km2"]]


def assign_folds(glaciers: pd.DataFrame, k: int) -> pd.Series:
    """Fold number per glacier: contiguous West->East groups of ~equal total area.

    With a `group` column, whole groups are assigned (see :func:`glacier_groups`), so every
    member of a group gets the same fold.
    """
    groups = glacier_groups(glaciers)
    if len(groups) < k:
        raise InputDataError(f"only {len(groups)} glaciers for {k} folds",
                             hint="lower folds.k or add glaciers")
    order = groups.sort_values("lon", kind="stable")
    area = order["area_km2"].to_numpy()
    mid = (np.cumsum(area) - area / 2) / area.sum()
    fold = np.minimum((mid * k).astype(int), k - 1)
    if len(np.unique(fold)) < k:  # a few huge glaciers starve a fold: fall back to equal counts
        fold = np.minimum(np.arange(len(order)) * k // len(order), k - 1)
    of_group = pd.Series(fold, index=order.index)
    member = glaciers["group"].astype(str) if "group" in glaciers.columns else glaciers.index.to_series().astype(str)
    return pd.Series(of_group.reindex(member.values).to_numpy(), index=glaciers.index)


def split_train_val(ids: list[str], areas: pd.Series, val_fraction: float, seed: int) -> tuple[list, list]:
    """Random validation subset holding about `val_fraction` of the area (at least one glacier).

    Glaciers are drawn in a random order until their area reaches that share. A glacier holding
    more than the share on its own is not drawn while a smaller one can be (then the smallest is
    the validation set): a fold whose pool is one huge glacier and a small one would otherwise
    validate on the huge one and train on the rest (a simulated region's fold once trained on
    0.21 km2 of ice and validated on 14.8).
    """
    rng = np.random.default_rng(seed)
    perm = list(rng.permutation(ids))
    target = val_fraction * areas[ids].sum()
    draw = [g for g in perm if areas[g] <= target] or [min(perm, key=lambda g: (areas[g], g))]
    max_n = min(max(1, round(val_fraction * len(ids))), len(ids) - 1)
    acc, val = 0.0, []
    while draw and len(val) < max_n and (not val or acc < target):
        g = draw.pop()
        val.append(g)
        acc += areas[g]
    return sorted(g for g in perm if g not in val), sorted(val)


def band_stats(cube_paths: list[Path], progress: bool = False) -> dict[str, dict[str, float]]:
    """Mean and std of every band over valid pixels of the given cubes (streamed, float64 sums)."""
    sums: dict[str, np.ndarray] = {}
    for p in tqdm(cube_paths, desc="band stats", disable=not progress, leave=False):
        cube = read_cube(p)
        for i, b in enumerate(cube.bands):
            v = cube.data[i][np.isfinite(cube.data[i])].astype(np.float64)
            s = sums.setdefault(b, np.zeros(3))
            s += (v.size, v.sum(), (v**2).sum())
    stats = {}
    for b, (n, s1, s2) in sums.items():
        mean = s1 / max(n, 1)
        std = float(np.sqrt(max(s2 / max(n, 1) - mean**2, 0.0)))
        stats[b] = {"mean": float(mean), "std": std if std > 1e-6 else 1.0, "count": int(n)}
    return stats


def make_folds(index: pd.DataFrame, cubes_dir: str | Path, cfg: FoldsConfig,
               *, progress: bool = True) -> list[Fold]:
    """Build the folds (and their statistics) from a cube index."""
    inv = index[index["role"] == "inventory"].drop_duplicates("glacier_id").set_index("glacier_id")
    if inv.empty:
        raise InputDataError("cube index holds no inventory cubes", path=Path(cubes_dir) / "index.csv")
    if "group" not in inv.columns:
        inv = inv.assign(group=inv.index)
    if cfg.method == "published":
        return [published_fold(inv, cubes_dir, cfg)]
    fold_of = assign_folds(inv, cfg.k)
    trainable = inv["area_km2"] >= cfg.min_train_area_km2
    folds = []
    for f in tqdm(range(cfg.k), desc="folds", disable=not progress):
        test = sorted(inv.index[fold_of == f])
        pool = inv[(fold_of != f) & trainable]
        if len(pool) < 2:
            raise ConfigError(f"fold {f} has {len(pool)} trainable glaciers (need >= 2)",
                              hint="lower folds.k or folds.min_train_area_km2")
        train, val = split_groups(pool, cfg.val_fraction, cfg.seed + f)
        folds.append(_fold(f, train, val, test, inv, cubes_dir))
    return folds


def split_groups(pool: pd.DataFrame, val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Train / val glacier ids of a pool (index glacier_id; area_km2, group), whole groups on each
    side; with one glacier per group this is :func:`split_train_val` of the glaciers."""
    areas = pool.groupby(pool["group"].astype(str))["area_km2"].sum()
    if len(areas) < 2:  # one glacier cut into divides: nothing to hold out without splitting it
        raise ConfigError(f"the trainable glaciers form {len(areas)} group(s) (need >= 2 for train and val)",
                          hint="lower folds.k or folds.min_train_area_km2")
    train_groups, _ = split_train_val(sorted(areas.index), areas, val_fraction, seed)
    in_train = pool["group"].astype(str).isin(train_groups)
    return sorted(pool.index[in_train]), sorted(pool.index[~in_train])


def published_fold(inv: pd.DataFrame, cubes_dir: str | Path, cfg: FoldsConfig) -> Fold:
    """The dataset's own split as fold 0 (train / val / test from the index's `split` column).

    Without a `val` split, validation glaciers are drawn from the training split by group.
    """
    path = Path(cubes_dir) / "index.csv"
    if "split" not in inv.columns:
        raise ConfigError("folds.method is 'published' but the cube index has no `split` column",
                          hint="ingest a dataset with a published split (--format glavitu-hdf5), or use "
                               "folds.method: geographic")
    split = inv["split"].astype(str)
    test = sorted(inv.index[split == "test"])
    train = inv[(split == "train") & (inv["area_km2"] >= cfg.min_train_area_km2)]
    val = sorted(inv.index[split == "val"])
    if not test or train.empty:
        raise InputDataError(f"the published split needs train and test glaciers; the index's splits are "
                             f"{sorted(split.unique())}", path=path,
                             hint="name the split files train / val / test, or use folds.method: geographic")
    if val:
        train_ids = sorted(train.index)
    else:
        train_ids, val = split_groups(train, cfg.val_fraction, cfg.seed)
    return _fold(0, train_ids, val, test, inv, cubes_dir)


def _fold(f: int, train: list[str], val: list[str], test: list[str], inv: pd.DataFrame,
          cubes_dir: str | Path) -> Fold:
    paths = [Path(cubes_dir) / inv.loc[g, "path"] for g in train]
    lons = inv.loc[test, "lon"]
    return Fold(f, train, val, test, band_stats(paths), (float(lons.min()), float(lons.max())))


def write_folds(path: str | Path, folds: list[Fold], cfg: FoldsConfig) -> Path:
    """Write folds as JSON (a DVC-tracked, versioned file)."""
    return write_json(path, {
        "k": cfg.k, "min_train_area_km2": cfg.min_train_area_km2,
        "folds": [{"index": f.index, "lon_range": list(f.lon_range), "train": f.train, "val": f.val,
                   "test": f.test, "stats": f.stats} for f in folds],
    })


def read_folds(path: str | Path) -> list[Fold]:
    """Read folds written by `write_folds`."""
    import json

    path = Path(path)
    if not path.exists():
        raise InputDataError("folds file missing", path=path, hint="run `glaciermap folds` first")
    try:
        raw = json.loads(path.read_text())
        return [Fold(f["index"], f["train"], f["val"], f["test"], f["stats"], tuple(f["lon_range"]))
                for f in raw["folds"]]
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError
        raise InputDataError(f"cannot read folds (corrupt or not written by `glaciermap folds`): "
                             f"{type(err).__name__}: {err}", path=path,
                             hint="re-run `glaciermap folds`") from None
