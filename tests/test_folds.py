"""Geographic folds: West -> East, disjoint splits, small glaciers out of training, train-only stats."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glaciermap.config import FoldsConfig
from glaciermap.data.cubes import read_cube
from glaciermap.data.folds import assign_folds, band_stats, make_folds, read_folds, split_train_val, write_folds
from glaciermap.errors import ConfigError, InputDataError

from conftest import FOLDS


def _inventory(index: pd.DataFrame) -> pd.DataFrame:
    return index[index.role == "inventory"].set_index("glacier_id")


def _band_mean(cubes_dir: Path, index: pd.DataFrame, ids: list[str], band: str) -> tuple[float, int]:
    """Mean of a band over the finite pixels of the glaciers' inventory cubes, recomputed here."""
    inv = _inventory(index)
    values = []
    for g in ids:
        cube = read_cube(cubes_dir / inv.loc[g, "path"])
        v = cube.data[cube.bands.index(band)]
        values.append(v[np.isfinite(v)])
    allv = np.concatenate(values).astype(np.float64)
    return float(allv.mean()), allv.size


def test_test_sets_cover_every_glacier_once(folds, cube_index):
    assert len(folds) == FOLDS.k and [f.index for f in folds] == list(range(FOLDS.k))
    counts = Counter(g for f in folds for g in f.test)
    assert set(counts) == set(cube_index.glacier_id)
    assert set(counts.values()) == {1}
    assert all(f.test for f in folds)


def test_folds_run_west_to_east(folds, cube_index):
    lon = _inventory(cube_index)["lon"]
    for f in folds:
        assert f.lon_range == (lon[f.test].min(), lon[f.test].max())
    for a, b in zip(folds, folds[1:]):
        assert lon[a.test].max() <= lon[b.test].min()


def test_train_val_test_disjoint_and_small_glaciers_left_out(folds, cube_index):
    area = _inventory(cube_index)["area_km2"]
    small = set(area.index[area < FOLDS.min_train_area_km2])
    assert small and len(small) < len(area)  # precondition: the region has both kinds
    for f in folds:
        train, val, test = set(f.train), set(f.val), set(f.test)
        assert not (train & val) and not (train & test) and not (val & test)
        assert train and val
        assert not (train | val) & small
        # every trainable glacier outside the test set is used for training or validation
        assert train | val == set(area.index) - test - small
    # small glaciers are still tested (each exactly once)
    assert small <= {g for f in folds for g in f.test}


def test_stats_come_from_training_glaciers_only(folds, cubes_dir, cube_index):
    f = folds[0]
    bands = read_cube(cubes_dir / cube_index.path.iloc[0]).bands
    assert set(f.stats) == set(bands)
    for band in ("B4", "dem"):
        mean, n = _band_mean(cubes_dir, cube_index, f.train, band)
        assert f.stats[band]["mean"] == pytest.approx(mean, rel=1e-9)
        assert f.stats[band]["count"] == n
        with_test, _ = _band_mean(cubes_dir, cube_index, f.train + f.test, band)
        with_val, _ = _band_mean(cubes_dir, cube_index, f.train + f.val, band)
        assert f.stats[band]["mean"] != pytest.approx(with_test, rel=1e-4)
        assert f.stats[band]["mean"] != pytest.approx(with_val, rel=1e-4)
    # folds train on different glaciers, so their statistics differ
    assert folds[0].stats["B4"]["mean"] != folds[1].stats["B4"]["mean"]


def test_band_stats_mean_and_std(cubes_dir, cube_index):
    paths = [cubes_dir / p for p in cube_index.path[:3]]
    cubes = [read_cube(p) for p in paths]
    stats = band_stats(paths)
    for i, band in enumerate(cubes[0].bands):
        v = np.concatenate([c.data[i][np.isfinite(c.data[i])] for c in cubes]).astype(np.float64)
        assert stats[band]["mean"] == pytest.approx(v.mean(), rel=1e-6, abs=1e-9)
        assert stats[band]["std"] == pytest.approx(v.std(), rel=1e-4)


def test_folds_are_deterministic(folds, cube_index, cubes_dir):
    assert make_folds(cube_index, cubes_dir, FOLDS, progress=False) == folds
    other = make_folds(cube_index, cubes_dir, FOLDS.model_copy(update={"seed": 1}), progress=False)
    assert [f.test for f in other] == [f.test for f in folds]  # geography does not depend on the seed


def test_write_read_round_trip(folds, tmp_path):
    path = write_folds(tmp_path / "sub" / "folds.json", folds, FOLDS)
    assert read_folds(path) == folds
    assert not [p for p in path.parent.iterdir() if p.name != "folds.json"]  # atomic: no leftovers


def test_read_folds_missing_file(tmp_path):
    with pytest.raises(InputDataError, match="folds file missing") as err:
        read_folds(tmp_path / "folds.json")
    assert str(tmp_path / "folds.json") in err.value.message


def test_more_folds_than_glaciers(cube_index, cubes_dir):
    n = cube_index.glacier_id.nunique()
    with pytest.raises(InputDataError, match=rf"only {n} glaciers for {n + 1} folds"):
        make_folds(cube_index, cubes_dir, FoldsConfig(k=n + 1), progress=False)


def test_too_few_trainable_glaciers(cube_index, cubes_dir):
    huge = float(cube_index.area_km2.max()) + 1.0
    with pytest.raises(ConfigError, match="fold 0 has 0 trainable glaciers"):
        make_folds(cube_index, cubes_dir, FoldsConfig(k=2, min_train_area_km2=huge), progress=False)


def test_no_inventory_cubes(cube_index, cubes_dir):
    with pytest.raises(InputDataError, match="no inventory cubes"):
        make_folds(cube_index[cube_index.role == "recent"], cubes_dir, FOLDS, progress=False)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_assign_folds_balances_area(seed, k):
    """Contiguous in longitude, every fold used, each fold's area within one glacier of total / k."""
    rng = np.random.default_rng(seed)
    n = 40
    glaciers = pd.DataFrame({"lon": rng.uniform(6, 14, n), "area_km2": rng.lognormal(0, 1.2, n)},
                            index=[f"G{i:03d}" for i in range(n)])
    fold = assign_folds(glaciers, k)
    assert fold.index.equals(glaciers.index) and set(fold) == set(range(k))
    order = glaciers.assign(fold=fold).sort_values("lon")
    assert (np.diff(order.fold.to_numpy()) >= 0).all()  # West to East
    area = order.groupby("fold").area_km2.sum()
    assert (abs(area - glaciers.area_km2.sum() / k) <= glaciers.area_km2.max()).all()


def test_assign_folds_one_huge_glacier_falls_back_to_counts():
    glaciers = pd.DataFrame({"lon": np.arange(6.0), "area_km2": [100.0, 0.1, 0.1, 0.1, 0.1, 0.1]},
                            index=list("abcdef"))
    fold = assign_folds(glaciers, 3)
    assert fold.tolist() == [0, 0, 1, 1, 2, 2]  # every fold tests something


@pytest.mark.parametrize("seed", range(20))
def test_validation_never_takes_the_one_huge_glacier_of_a_pool(seed):
    """A pool of one huge glacier and small ones (a simulated region's fold: 14.8 km2 and 0.21):
    the huge one trains, whatever the draw, and validation holds about val_fraction of the area."""
    areas = pd.Series({"huge": 14.76, "a": 0.21, "b": 0.3, "c": 0.12})
    train, val = split_train_val(sorted(areas.index), areas, 0.15, seed)
    assert "huge" in train and val and set(train) | set(val) == set(areas.index) and not set(train) & set(val)
    assert areas[val].sum() <= 0.15 * areas.sum()


@pytest.mark.parametrize("seed", range(5))
def test_validation_of_a_pool_of_two_is_the_smaller_glacier(seed):
    areas = pd.Series({"big": 5.0, "small": 4.0})
    assert split_train_val(["big", "small"], areas, 0.15, seed) == (["big"], ["small"])


@pytest.mark.parametrize("seed", range(10))
def test_validation_holds_about_val_fraction_of_many_glaciers(seed):
    """Many glaciers: validation reaches the share (or its count cap, val_fraction of the glaciers)
    and overshoots it by less than one glacier it may draw."""
    rng = np.random.default_rng(seed)
    areas = pd.Series(rng.lognormal(0, 1.2, 40), index=[f"G{i:02d}" for i in range(40)])
    train, val = split_train_val(sorted(areas.index), areas, 0.15, seed)
    target = 0.15 * areas.sum()
    assert areas[val].sum() <= 2 * target and len(val) <= 6 and len(train) == 40 - len(val)
    assert areas[val].sum() >= target or len(val) == 6


# ------------------------------------------------------------- glacier groups (divides)
DIVIDES = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-alps" / "divides_alps.shp"


def test_divides_of_one_glacier_stay_in_one_fold():
    """95 real divides of 42 RGI glaciers: grouped by RGIId, no glacier has divides in two folds
    (ungrouped, 4 glaciers straddle a fold boundary, so a fold would test on a glacier it trained on)."""
    if not DIVIDES.exists():
        pytest.skip(f"real divides not available at {DIVIDES}")
    import geopandas as gpd

    gdf = gpd.read_file(DIVIDES)
    laea = gdf.to_crs(3035)  # equal-area: areas in km2, centroids in metres
    centre = laea.geometry.centroid.to_crs(4326)
    divides = pd.DataFrame({"lon": centre.x.values, "area_km2": (laea.area / 1e6).values,
                            "group": gdf.RGIId.values}, index=[f"d{i:03d}" for i in range(len(gdf))])
    assert len(divides) == 95 and divides.group.nunique() == 42  # precondition

    def straddling(fold: pd.Series) -> int:
        return int((divides.assign(fold=fold).groupby("group").fold.nunique() > 1).sum())

    assert straddling(assign_folds(divides.drop(columns="group"), 5)) == 4
    fold = assign_folds(divides, 5)
    assert straddling(fold) == 0 and set(fold) == set(range(5))


def test_make_folds_keeps_a_group_in_one_fold_and_one_split(cube_index, cubes_dir):
    ids = sorted(cube_index.glacier_id.unique())
    group = {g: f"G{i // 2}" for i, g in enumerate(ids)}  # glaciers paired as divides of one glacier
    index = cube_index.assign(group=cube_index.glacier_id.map(group))
    folds = make_folds(index, cubes_dir, FOLDS, progress=False)
    for f in folds:
        sides = {}
        for side, members in (("train", f.train), ("val", f.val), ("test", f.test)):
            for g in members:
                sides.setdefault(group[g], set()).add(side)
        assert all(len(s) == 1 for s in sides.values()), (f.index, sides)
    # every glacier is tested once, with all of its group's glaciers in the same fold
    assert Counter(g for f in folds for g in f.test) == Counter(ids)
    assert all(len({f.index for f in folds if set(f.test) & {g for g in ids if group[g] == grp}}) == 1
               for grp in set(group.values()))


def test_published_split_is_the_only_fold(cube_index, cubes_dir):
    ids = sorted(cube_index.glacier_id.unique())
    split = {g: ("test", "val", "train", "train")[i % 4] for i, g in enumerate(ids)}
    index = cube_index.assign(split=cube_index.glacier_id.map(split))
    cfg = FOLDS.model_copy(update={"method": "published", "min_train_area_km2": 0.0})
    folds = make_folds(index, cubes_dir, cfg, progress=False)
    assert len(folds) == 1 and folds[0].index == 0
    f = folds[0]
    assert f.test == sorted(g for g in ids if split[g] == "test")
    assert f.val == sorted(g for g in ids if split[g] == "val")
    assert f.train == sorted(g for g in ids if split[g] == "train")
    with pytest.raises(ConfigError, match="has no `split` column"):
        make_folds(cube_index, cubes_dir, cfg, progress=False)
