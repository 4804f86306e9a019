"""Debris-covered and clean ice scored separately: the metric on hand-made masks, the debris mask
from the simulator's surface classes into the cubes, and evaluate / infer with and without it."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import yaml

from glaciermap.analysis import evaluate as evaluate_mod
from glaciermap.config import DataConfig, Params, SensorsConfig
from glaciermap.data.adapters.dandb_netcdf import debris_layer
from glaciermap.data.cubes import DEBRIS_UNKNOWN, read_cube, write_cube
from glaciermap.data.ingest import ingest_region
from glaciermap.data.simulate.surface import DEBRIS
from glaciermap.data.windows import prepare_cube
from glaciermap.errors import InputDataError
from glaciermap.inference.run import glacier_stats
from glaciermap.metrics import (SURFACE_METRICS, confusion, glacier_debris_recall, surface_confusion,
                                surface_scores)

# one row of 10 pixels: glacier at 2..6, debris on 2, 3; pixel 5 hidden by cloud
TARGET = np.array([[0, 0, 1, 1, 1, 1, 1, 0, 0, 0]])
DEBRIS_ROW = np.array([[0, 0, 1, 1, 0, 0, 0, 0, 0, 0]])
PRED = np.array([[1, 1, 1, 0, 1, 1, 1, 1, 0, 0]], float)
VALID = np.array([[1, 1, 1, 1, 1, 0, 1, 1, 1, 1]], bool)


def test_debris_and_clean_counts_on_a_hand_made_mask():
    """debris: tp {2}, fn {3}, fp {0, 1} (nearest glacier pixel 2 is debris); clean: tp {4, 6},
    fn none, fp {7} (nearest 6 is clean); pixel 5 is invalid and counts nowhere."""
    c = surface_confusion(PRED, TARGET, DEBRIS_ROW, VALID)
    np.testing.assert_array_equal(c, [[1, 2, 1], [2, 1, 0]])
    s = surface_scores(c)
    assert s == {"debris_iou": 1 / 4, "debris_recall": 1 / 2, "clean_iou": 2 / 3, "clean_recall": 1.0}
    # the classes partition the whole-glacier confusion: tp, fp and fn add up
    tp, fp, fn, _ = confusion(PRED, TARGET, VALID)
    assert (tp, fp, fn) == tuple(c.sum(axis=0))


def test_glacier_pixels_of_unknown_surface_count_for_neither_class():
    """Pixel 6 unknown (e.g. a neighbour whose debris the source does not describe): it leaves
    clean ice, and the false positive at 7 (nearest to it) is charged to no class."""
    debris = DEBRIS_ROW.copy()
    debris[0, 6] = DEBRIS_UNKNOWN
    np.testing.assert_array_equal(surface_confusion(PRED, TARGET, debris, VALID), [[1, 2, 1], [1, 0, 0]])


def test_no_surface_truth_gives_nan_never_zero():
    assert all(math.isnan(v) for v in surface_scores(None).values())
    assert set(surface_scores(None)) == set(SURFACE_METRICS)
    # truth without any debris: debris 0 / 0 is NaN, clean ice still scored
    s = surface_scores(surface_confusion(PRED, TARGET, np.zeros_like(TARGET), VALID))
    assert math.isnan(s["debris_iou"]) and math.isnan(s["debris_recall"]) and s["clean_recall"] == 3 / 4


def test_glacier_debris_recall_is_the_visible_debris_area_detected():
    glacier, visible = TARGET.astype(bool), TARGET.astype(bool) & VALID
    pred = PRED >= 0.5
    assert glacier_debris_recall(pred, glacier, DEBRIS_ROW, visible) == 1 / 2
    assert math.isnan(glacier_debris_recall(pred, glacier, None, visible))
    assert math.isnan(glacier_debris_recall(pred, glacier, np.zeros_like(TARGET), visible))


def test_dandb_debris_variables_become_the_cube_layer():
    glacier = np.array([[1, 1, 0, 0, 0]], bool)
    all_glaciers = np.array([[1, 1, 0, 1, 1]], bool)
    # mask_debris (DL4GAM: every glacier's debris) as it is, no data -> unknown
    every = np.array([[1, 0, 0, 1, np.nan]])
    np.testing.assert_array_equal(debris_layer({"mask_debris": every}, glacier, all_glaciers),
                                  [[1, 0, 0, 1, DEBRIS_UNKNOWN]])
    # mask_debris_crt_g (this glacier only): the neighbours' surface is unknown
    this = np.array([[1, 0, 0, 1, 0]])
    np.testing.assert_array_equal(debris_layer({"mask_debris_crt_g": this}, glacier, all_glaciers),
                                  [[1, 0, 0, DEBRIS_UNKNOWN, DEBRIS_UNKNOWN]])
    assert debris_layer({}, glacier, all_glaciers) is None


# ----------------------------------------------------------------------- simulated region -> cubes
def test_ingest_puts_the_truth_debris_in_the_cubes(raw_region, cubes_dir, cube_index):
    """mask_debris is the simulator's class DEBRIS at each cube pixel's centre, for every cube and
    epoch; beyond the scene it is unknown."""
    n_debris = 0
    for _, row in cube_index.iterrows():
        cube = read_cube(cubes_dir / row.path)
        with rasterio.open(raw_region / "truth" / f"surface_{row.epoch}.tif") as ds:
            cls, t = ds.read(1), ds.transform
        xs, ys = cube.grid.xy_coords()
        r = np.floor((ys - t.f) / t.e).astype(int)[:, None]
        c = np.floor((xs - t.c) / t.a).astype(int)[None, :]
        inside = (r >= 0) & (r < cls.shape[0]) & (c >= 0) & (c < cls.shape[1])
        expected = np.full(cube.mask_glacier.shape, DEBRIS_UNKNOWN, np.uint8)
        expected[inside] = (cls[np.clip(r, 0, cls.shape[0] - 1), np.clip(c, 0, cls.shape[1] - 1)] == DEBRIS)[inside]
        np.testing.assert_array_equal(cube.mask_debris, expected, err_msg=row.path)
        n_debris += int((cube.mask_debris[cube.mask_glacier == 1] == 1).sum())
    assert n_debris > 1000  # the tiny region has debris-covered tongues


def _strip_debris(src: Path, dst: Path) -> Path:
    """A copy of a cube folder whose cubes have no debris layer (a region without debris truth)."""
    shutil.copytree(src, dst)
    for f in dst.rglob("*.nc"):
        cube = read_cube(f)
        cube.mask_debris = None
        write_cube(f, cube)
    return dst


def _truth_model(monkeypatch):
    """evaluate's predictions replaced by the truth without its debris: clean ice found exactly,
    debris-covered ice missed entirely."""
    def predict(model, bundle, path, **kw):
        cube = prepare_cube(path, bundle.groups, bundle.stats)
        keep = cube.target.astype(bool) if cube.debris is None else cube.target.astype(bool) & (cube.debris != 1)
        return keep.astype(np.float32), cube
    def predict_members(members, path, **kw):  # one member
        prob, cube = predict(*members[0], path, **kw)
        return prob[None], cube

    monkeypatch.setattr(evaluate_mod, "predict_members", predict_members)
    return [(None, SimpleNamespace(fold=0, groups={"optical": ["B2"]}, stats={"B2": {"mean": 0.0, "std": 1.0}},
                                   patch_size=128))]


def test_evaluate_scores_debris_and_gives_nan_without_a_debris_mask(cubes_dir, cube_index, tmp_path, monkeypatch):
    loaded = _truth_model(monkeypatch)
    ids = sorted(cube_index.glacier_id.unique())
    r = evaluate_mod.evaluate_fold(loaded, Params(data=DataConfig(cubes_dir=cubes_dir)), ids)
    assert (r["debris_iou"], r["debris_recall"], r["clean_iou"], r["clean_recall"]) == (0.0, 0.0, 1.0, 1.0)
    assert r["n_glaciers_debris_mask"] == len(ids)
    bare = _strip_debris(cubes_dir, tmp_path / "cubes")
    r = evaluate_mod.evaluate_fold(loaded, Params(data=DataConfig(cubes_dir=bare)), ids)
    assert all(math.isnan(r[m]) for m in SURFACE_METRICS) and r["n_glaciers_debris_mask"] == 0
    assert r["iou"] == 1.0  # the glacier figures do not depend on the debris layer


def test_area_table_debris_recall(cubes_dir, cube_index):
    """infer's per-glacier debris recall: 0 where the prediction misses all the debris of a glacier
    that has some, NaN where it has none or the cube has no debris mask."""
    for _, row in cube_index[cube_index.role == "inventory"].iterrows():
        cube = read_cube(cubes_dir / row.path)
        prob = ((cube.mask_all == 1) & (cube.mask_debris != 1)).astype(np.float32)
        visible_debris = ((cube.mask_glacier == 1) & (cube.mask_invalid == 0) & (cube.mask_debris == 1)).any()
        got = glacier_stats(prob, cube)["debris_recall"]
        assert got == 0.0 if visible_debris else math.isnan(got), row.glacier_id
        cube.mask_debris = None
        assert math.isnan(glacier_stats(prob, cube)["debris_recall"])


@pytest.mark.parametrize("problem", ["missing file", "unknown band"])
def test_a_bad_debris_source_is_one_clear_error(raw_copy, tmp_path, problem):
    bad = raw_copy / "truth" / "surface_2023.tif"
    if problem == "missing file":
        bad.unlink()
    else:
        manifest = yaml.safe_load((raw_copy / "region.yaml").read_text())
        manifest["debris"]["band"] = "debris"
        (raw_copy / "region.yaml").write_text(yaml.safe_dump(manifest))
        bad = raw_copy / "truth" / "surface_2015.tif"
    with pytest.raises(InputDataError) as err:
        ingest_region(raw_copy, tmp_path / "cubes", DataConfig(resolution_m=10.0, buffer_m=320.0), SensorsConfig(),
                      progress=False)
    assert str(err.value.path) == str(bad)
    assert ("file missing" if problem == "missing file" else "'debris'") in str(err.value)
    assert not (tmp_path / "cubes").exists()
