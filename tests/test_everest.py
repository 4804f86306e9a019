"""Real-imagery benchmark (experiments/everest): region preparation, areas vs RGI, split, baseline.

Uses the real Landsat 7 scene and RGI 6.0 outlines in ../shared/data/real-everest (skipped when
absent). No training here: the pipeline itself trains (experiments/everest/dvc.yaml).
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import yaml

from glaciermap.analysis.baseline import cube_pixels, fit_fold_threshold, fit_threshold
from glaciermap.analysis.benchmark import heldout_predictions, method_result, region_layout, threshold_predictor
from glaciermap.config import Params, SensorsConfig, load_params
from glaciermap.data.cubes import read_cube, read_index, write_cube
from glaciermap.data.folds import make_folds
from glaciermap.data.ingest import ingest_region
from glaciermap.data.prepare_everest import (NIR_FILE, landsat_scene_date, prepare_everest_region, rgi_date)
from glaciermap.errors import InputDataError

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "real-everest"
PARAMS = ROOT / "experiments" / "everest" / "params.yaml"

needs_data = pytest.mark.skipif(not (REAL / NIR_FILE).exists(),
                                reason=f"real Everest Landsat/RGI data not found at {REAL}")


@pytest.fixture(scope="module")
def params(tmp_path_factory) -> Params:
    """The experiment's params with every path moved into a temporary folder."""
    p = load_params(PARAMS)
    tmp = tmp_path_factory.mktemp("everest")
    return p.model_copy(update={
        "data": p.data.model_copy(update={"raw_dir": tmp / "raw", "cubes_dir": tmp / "cubes"}),
        "folds": p.folds.model_copy(update={"path": tmp / "folds.json"}),
    })


@pytest.fixture(scope="module")
def region(params) -> Path:
    return prepare_everest_region(REAL, params.data.raw_dir)


@pytest.fixture(scope="module")
def cubes(params, region) -> Path:
    ingest_region(region, params.data.cubes_dir, params.data, params.sensors, progress=False)
    return params.data.cubes_dir


@pytest.fixture(scope="module")
def folds(params, cubes):
    return make_folds(read_index(cubes), cubes, params.folds, progress=False)


@pytest.fixture(scope="module")
def rgi() -> gpd.GeoDataFrame:
    return gpd.read_file(REAL / "15_rgi60_glacier_outlines.gpkg").set_index("RGIId")


# ------------------------------------------------------------------------------ pure functions
def test_dates():
    assert landsat_scene_date(NIR_FILE) == dt.date(2000, 10, 30)  # day 304 of 2000 (a leap year)
    assert rgi_date("20100409") == "2010-04-09"
    assert rgi_date("20029999") == "2002-07-01" and rgi_date("20020899") == "2002-08-15"
    assert rgi_date("-9999999") is None and rgi_date(-9999999) is None
    with pytest.raises(InputDataError, match="not a Landsat scene id"):
        landsat_scene_date("S2A_MSIL2A")


def test_fit_threshold_is_the_exact_optimum():
    rng = np.random.default_rng(0)
    values = np.round(rng.normal(size=3000), 1)
    target = (values + rng.normal(scale=0.7, size=values.size)) > 0.3
    t, iou = fit_threshold(values, target)
    brute = {c: ((values >= c) & target).sum() / ((values >= c) | target).sum() for c in np.unique(values)}
    best = max(brute, key=lambda c: (brute[c], -c))
    assert t == best and iou == pytest.approx(brute[best])
    assert fit_threshold(values, np.zeros_like(target))[0] == np.inf


# -------------------------------------------------------------------------- real region, ingest
@needs_data
def test_prepared_region_is_the_raw_format(region, rgi):
    manifest = yaml.safe_load((region / "region.yaml").read_text())
    assert manifest["dem"] is None and manifest["cloud_masks"] is False
    assert manifest["epochs"] == {"2000": {"date": "2000-10-30"}}
    with rasterio.open(region / "scenes" / "2000" / "optical.tif") as opt, \
            rasterio.open(REAL / NIR_FILE) as nir:
        assert opt.descriptions == ("NIR", "R", "G", "B")
        assert (opt.crs, opt.transform, opt.shape) == (nir.crs, nir.transform, nir.shape)
        assert np.array_equal(opt.read(1), nir.read(1))  # pixels unchanged
        assert all(m == [rasterio.enums.MaskFlags.all_valid] for m in opt.mask_flag_enums)  # no alpha band
    out = gpd.read_file(region / "outlines.gpkg").set_index("RGIId")
    assert len(out) == len(rgi) == 86
    assert (out.date.str.replace("-", "") == rgi.BgnDate.astype(str)).all()


@needs_data
def test_rasterised_areas_match_rgi(params, cubes, rgi):
    index = read_index(cubes)
    assert len(index) == 86 and set(index.epoch) == {"2000"}
    rows = []
    for _, r in index.iterrows():
        cube = read_cube(cubes / r.path)
        assert cube.bands == ["NIR", "R", "G", "B"]
        rows.append((r.glacier_id, cube.mask_glacier.sum() * params.data.resolution_m ** 2 / 1e6,
                     float(cube.mask_invalid[cube.mask_glacier == 1].mean()), r.inventory_year))
    ids, raster, invalid, year = map(np.array, zip(*rows))
    ref = rgi.Area.loc[ids].to_numpy()
    inside = invalid == 0  # wholly inside the scene (61 per the data's README)
    assert 55 <= inside.sum() <= 65
    total_err = abs(raster[inside].sum() / ref[inside].sum() - 1)
    assert total_err < 0.005, f"total rasterised area off RGI by {total_err:.2%}"
    big = inside & (ref >= 1.0)
    assert big.sum() >= 8
    assert np.abs(raster[big] / ref[big] - 1).max() < 0.01
    bgn = rgi.BgnDate.loc[ids].astype(str).str[:4].astype(int).to_numpy()
    assert (np.floor(year) == bgn).all()  # inventory year from each outline's date


@needs_data
def test_region_without_dem_rejects_a_dem_sensor_set(params, region, tmp_path):
    with pytest.raises(InputDataError, match="has a 'dem' group but the region has no DEM"):
        ingest_region(region, tmp_path / "cubes", params.data, SensorsConfig(), progress=False)
    assert not (tmp_path / "cubes").exists()


def test_prepare_names_a_missing_source_file(tmp_path):
    with pytest.raises(InputDataError, match="file missing") as err:
        prepare_everest_region(tmp_path, tmp_path / "raw")
    assert str(tmp_path / NIR_FILE) in err.value.message


# ------------------------------------------------------------------------------------- split
@needs_data
def test_split_leaks_no_glacier(folds, cubes):
    every = set(read_index(cubes).glacier_id)
    tested = [g for f in folds for g in f.test]
    assert len(tested) == len(set(tested)) and set(tested) == every  # each glacier tested exactly once
    for f in folds:
        train, val, test = set(f.train), set(f.val), set(f.test)
        assert train and val and test
        assert not (train & test) and not (val & test) and not (train & val)
    lon = read_index(cubes).set_index("glacier_id").lon
    assert lon[folds[0].test].max() < lon[folds[1].test].min()  # West half, then East half


@needs_data
def test_heldout_pixels_belong_to_test_glaciers(params, cubes, folds):
    fits = {f.index: fit_fold_threshold(cubes, f, "NIR") for f in folds}
    layout = region_layout(params)
    prob, cube_conf = heldout_predictions(params, layout, folds, threshold_predictor(fits))
    evaluated = np.isfinite(prob)
    label_fold = np.zeros(len(layout.ids) + 1, int) - 1
    for f in folds:
        label_fold[[layout.ids.index(g) + 1 for g in f.test]] = f.index
    assert (label_fold[layout.nearest[evaluated]] >= 0).all()
    assert (layout.distance_m[evaluated] <= params.data.buffer_m).all()
    result, areas = method_result(layout, prob, cube_conf)
    assert 0.2 < result["heldout_pixels"]["iou"] < 0.9 and 0.2 < result["iou"] < 0.9
    assert result["area"]["n_glaciers"] >= 55
    assert areas.raster_km2[areas.inside_scene].sum() == pytest.approx(
        areas.reference_km2[areas.inside_scene].sum(), rel=0.005)


# ---------------------------------------------------------------------------------- baseline
@needs_data
def test_threshold_is_chosen_from_training_pixels_only(cubes, folds, tmp_path):
    fold = folds[0]
    before = fit_fold_threshold(cubes, fold, "NIR")
    assert before.n_pixels == cube_pixels(cubes, fold.train + fold.val, "NIR")[0].size
    copy = tmp_path / "cubes"
    shutil.copytree(cubes, copy)
    index = read_index(copy)
    rng = np.random.default_rng(1)

    def scramble(glacier_ids):
        for path in index[index.glacier_id.isin(glacier_ids)].path:
            cube = read_cube(copy / path)
            cube.data[:] = rng.uniform(0, 255, cube.data.shape).astype(np.float32)
            cube.mask_all = 1 - cube.mask_all
            write_cube(copy / path, cube)

    scramble(fold.test)  # the test side changes completely ...
    assert fit_fold_threshold(copy, fold, "NIR") == before  # ... and the threshold does not
    scramble(fold.train[:5])  # the training side changes: the fit sees it
    assert fit_fold_threshold(copy, fold, "NIR") != before
