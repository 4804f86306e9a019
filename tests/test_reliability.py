"""Reliability (issue #8): bad inputs, killed stages, tracking outages, unsafe files.

Only what other test files do not already cover (docs/reliability.md maps every fault to its
test): a bad-input matrix run through the CLI for every stage that reads user files, SIGKILL of
ingest / simulate / inference with a re-run, MLflow outages, unsafe weight files, and binding.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from rasterio.warp import Resampling, calculate_default_transform, reproject
from shapely.geometry import Polygon, box

from glaciermap import cli
from glaciermap.data.cubes import read_cube, read_index
from glaciermap.data.folds import write_folds
from glaciermap.errors import GlaciermapError

from conftest import DATA, FOLDS, SIM

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
PY = sys.executable


# ----------------------------------------------------------------------------------- helpers
def _run_cli(argv: list[str], capsys, monkeypatch) -> tuple[int, list[str]]:
    """Run `glaciermap` in-process; return the exit code and stderr lines."""
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main() replaces it
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.err.strip().splitlines()


def _assert_clear_error(code: int, lines: list[str], path: Path | str, problem: str) -> None:
    """Exit 2 and exactly one `error: <file>: <problem>` line (warnings may precede it).

    A YAML syntax error is the one exception: YAML's own excerpt with a caret at the fault
    follows the line (a few lines, no traceback).
    """
    assert code == 2, lines
    errors = [ln for ln in lines if not ln.startswith("warning: ")]
    if "not valid YAML" in problem:
        assert "line 1, column" in "\n".join(errors), errors
        errors = errors[:1]
    assert len(errors) == 1, lines
    assert errors[0].startswith(f"error: {path}: "), errors[0]
    assert problem in errors[0], errors[0]


def _params(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(json.loads(json.dumps(sections, default=str))))
    return path


def _rewrite_raster(path: Path, *, data: np.ndarray | None = None, crs="keep") -> None:
    with rasterio.open(path) as ds:
        profile, old, desc = ds.profile, ds.read(), ds.descriptions
    profile.update(count=(old if data is None else data).shape[0])
    if crs != "keep":
        profile["crs"] = crs
    path.unlink()
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(old if data is None else data)
        ds.descriptions = desc


def _edit_outlines(raw: Path, fn) -> Path:
    path = raw / "outlines.gpkg"
    gdf = gpd.read_file(path)
    gdf = fn(gdf)
    path.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no CRS" writer warning in that case
        gdf.to_file(path)
    return path


def _edit_manifest(raw: Path, fn) -> Path:
    path = raw / "region.yaml"
    m = yaml.safe_load(path.read_text())
    fn(m)
    path.write_text(yaml.safe_dump(m))
    return path


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _tmp_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if ".tmp-" in p.name]


# ------------------------------------------------------------------- bad input: ingest (CLI)
def _dem_all_nan(raw):
    p = raw / "dem.tif"
    with rasterio.open(p) as ds:
        _rewrite_raster(p, data=np.full((1, ds.height, ds.width), np.nan, np.float32))
    return p, "DEM has no valid elevation (all no data / NaN / implausible values)"


def _dem_all_sentinel(raw):  # -9999 everywhere and no nodata tag: used to ingest as elevation
    p = raw / "dem.tif"
    with rasterio.open(p) as ds:
        profile = ds.profile
    profile["nodata"] = None
    p.unlink()
    with rasterio.open(p, "w", **profile) as ds:
        ds.write(np.full((1, profile["height"], profile["width"]), -9999.0, np.float32))
    return p, "DEM has no valid elevation (all -9999)"


def _dem_no_crs(raw):
    _rewrite_raster(raw / "dem.tif", crs=None)
    return raw / "dem.tif", "raster has no CRS"


def _optical_junk(raw):
    p = raw / "scenes" / "2015" / "optical.tif"
    p.write_bytes(b"II*\x00" + np.random.default_rng(0).bytes(4000))
    return p, "cannot read raster (corrupt or not a GeoTIFF)"


def _sar_truncated(raw):  # opens (header intact), fails only when a cube reads its tiles
    return _truncate(raw / "scenes" / "2023" / "sar.tif", 0.3), "cannot read raster data (corrupt or truncated file)"


def _all_cloud(raw):
    p = raw / "scenes" / "2016" / "cloud.tif"
    with rasterio.open(p) as ds:
        _rewrite_raster(p, data=np.ones((1, ds.height, ds.width), np.uint8))
    return p, "scene is 100% cloud / cloud shadow"


def _cloud_other_crs(raw):  # sensors disagreeing on the CRS where they must share a grid
    p = raw / "scenes" / "2015" / "cloud.tif"
    _rewrite_raster(p, crs="EPSG:32633")
    return p, "cloud mask grid"


def _outlines_corrupt(raw):
    p = raw / "outlines.gpkg"
    p.write_bytes(np.random.default_rng(0).bytes(3000))
    return p, "cannot read outlines"


def _outlines_no_crs(raw):
    return _edit_outlines(raw, lambda g: g.set_crs(None, allow_override=True)), "outlines have no CRS"


def _outlines_none(raw):  # an empty region: the inventory file holds no outline
    return _edit_outlines(raw, lambda g: g.iloc[:0]), "no outlines in file"


def _outlines_point(raw):
    def fn(g):
        g.loc[1, "geometry"] = g.geometry.iloc[1].centroid
        return g
    return _edit_outlines(raw, fn), "non-polygon geometry (['Point'])"


def _outlines_empty_geometry(raw):
    def fn(g):
        g.loc[2, "geometry"] = Polygon()
        return g
    return _edit_outlines(raw, fn), "empty geometry for glacier(s)"


def _outlines_duplicate_id(raw):
    def fn(g):
        g.loc[3, "glacier_id"] = g.glacier_id.iloc[2]
        return g
    return _edit_outlines(raw, fn), "duplicate glacier ids"


def _outlines_outside(raw):
    def fn(g):
        g.geometry = g.geometry.translate(xoff=3.0)
        return g
    return _edit_outlines(raw, fn), "no outline overlaps the optical scenes"


def _outlines_bad_date(raw):
    def fn(g):
        g["date"] = g["date"].astype(str)
        g.loc[0, "date"] = "sometime"
        return g
    return _edit_outlines(raw, fn), "unparseable inventory date"


def _manifest_no_inventory(raw):
    return _edit_manifest(raw, lambda m: m.update(inventory_epochs=[])), "inventory_epochs is empty"


def _manifest_wrong_types(raw):
    def fn(m):
        m["epochs"]["2015"]["date"] = "someday"
        m["cloudmasks"] = True
    return _edit_manifest(raw, fn), "invalid manifest: 'epochs.2015.date'"


INGEST_CASES = {f.__name__.lstrip("_"): f for f in (
    _dem_all_nan, _dem_all_sentinel, _dem_no_crs, _optical_junk, _sar_truncated, _all_cloud, _cloud_other_crs,
    _outlines_corrupt, _outlines_no_crs, _outlines_none, _outlines_point, _outlines_empty_geometry,
    _outlines_duplicate_id, _outlines_outside, _outlines_bad_date, _manifest_no_inventory,
    _manifest_wrong_types)}


def _ingest_argv(tmp_path: Path, raw: Path, out: Path, **data) -> list[str]:
    params = _params(tmp_path / "params.yaml", data={"buffer_m": DATA.buffer_m, **data})
    return ["--params", str(params), "-q", "ingest", "--raw", str(raw), "--out", str(out)]


@pytest.mark.parametrize("case", sorted(INGEST_CASES))
def test_ingest_bad_input_is_one_clear_line_and_writes_nothing(case, raw_copy, tmp_path, capsys, monkeypatch):
    bad, problem = INGEST_CASES[case](raw_copy)
    products = tmp_path / "products"
    products.mkdir()
    code, lines = _run_cli(_ingest_argv(tmp_path, raw_copy, products / "cubes"), capsys, monkeypatch)
    _assert_clear_error(code, lines, bad, problem)
    assert list(products.iterdir()) == []  # no output folder, no temporary leftovers


def test_ingest_error_is_one_line_without_gdal_chatter_in_a_real_process(raw_copy, tmp_path):
    """The console script itself (not just main()): one stderr line, exit 2, no traceback."""
    bad = _truncate(raw_copy / "scenes" / "2023" / "optical.tif", 0.1)
    proc = subprocess.run([PY, "-m", "glaciermap.cli", *_ingest_argv(tmp_path, raw_copy, tmp_path / "out" / "cubes")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith(f"error: {bad}: cannot read raster data (corrupt or truncated file)")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def test_sensors_in_different_crs_are_reprojected(raw_copy, cubes_dir, cube_index, tmp_path, capsys, monkeypatch):
    """SAR delivered in another CRS than the optical scene is no error: each is warped to the cube grid."""
    path = raw_copy / "scenes" / "2023" / "sar.tif"
    with rasterio.open(path) as src:
        dst_crs = "EPSG:3035"
        transform, w, h = calculate_default_transform(src.crs, dst_crs, src.width, src.height, *src.bounds)
        profile = {**src.profile, "crs": dst_crs, "transform": transform, "width": w, "height": h}
        data, desc = src.read(), src.descriptions
        out = np.full((src.count, h, w), np.nan, np.float32)
        for i in range(src.count):
            reproject(data[i], out[i], src_transform=src.transform, src_crs=src.crs, dst_transform=transform,
                      dst_crs=dst_crs, resampling=Resampling.bilinear, dst_nodata=np.nan)
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(out)
        dst.descriptions = desc
    code, lines = _run_cli(_ingest_argv(tmp_path, raw_copy, tmp_path / "cubes"), capsys, monkeypatch)
    assert code == 0, lines
    row = cube_index[(cube_index.epoch == "2023")].sort_values("area_km2").iloc[-1]
    new, ref = read_cube(tmp_path / "cubes" / row.path), read_cube(cubes_dir / row.path)
    on = new.mask_glacier == 1
    vv_new, vv_ref = new.data[new.bands.index("VV")][on], ref.data[ref.bands.index("VV")][on]
    both = np.isfinite(vv_new) & np.isfinite(vv_ref)  # the SAR has layover/shadow gaps of its own
    assert both.sum() > 0.9 * np.isfinite(vv_ref).sum()  # resampling twice widens them by a pixel at most
    assert np.corrcoef(vv_new[both], vv_ref[both])[0, 1] > 0.9  # same signal on the cube grid


def test_multipart_outline_is_one_glacier(raw_copy, tmp_path, capsys, monkeypatch):
    utm = "EPSG:32632"
    state = {}

    def split(g):
        i = int(g.to_crs(utm).area.argmax())
        poly = g.to_crs(utm).geometry.iloc[i]
        x0, y0, x1, y1 = poly.bounds
        cx = (x0 + x1) / 2
        parts = poly.intersection(box(x0 - 1, y0 - 1, cx - 30, y1 + 1)).union(
            poly.intersection(box(cx + 30, y0 - 1, x1 + 1, y1 + 1)))
        assert parts.geom_type == "MultiPolygon"  # precondition: two parts, 60 m apart
        state.update(gid=g.glacier_id.iloc[i], area=parts.area, length=parts.length)
        g.loc[i, "geometry"] = gpd.GeoSeries([parts], crs=utm).to_crs(g.crs).iloc[0]
        return g

    _edit_outlines(raw_copy, split)
    code, lines = _run_cli(_ingest_argv(tmp_path, raw_copy, tmp_path / "cubes"), capsys, monkeypatch)
    assert code == 0, lines
    index = read_index(tmp_path / "cubes")
    rows = index[index.glacier_id == state["gid"]]
    assert len(rows) == index.epoch.nunique() - 1  # one cube per epoch (inventory + recent), not per part
    cube = read_cube(tmp_path / "cubes" / rows[rows.role == "inventory"].path.iloc[0])
    assert abs(cube.mask_glacier.sum() * cube.grid.res**2 - state["area"]) <= state["length"] * cube.grid.res
    assert cube.attrs["area_km2"] == pytest.approx(cube.mask_glacier.sum() * cube.grid.res**2 / 1e6, rel=1e-9)


# -------------------------------------------------------------- bad input: other stages (CLI)
@pytest.fixture
def folds_params(tmp_path, cubes_dir):
    """A private copy of the cubes and params pointing folds at a products folder."""
    cubes = tmp_path / "cubes"
    shutil.copytree(cubes_dir, cubes)
    products = tmp_path / "products"
    params = _params(tmp_path / "params.yaml", data={"cubes_dir": cubes},
                     folds={"k": FOLDS.k, "min_train_area_km2": FOLDS.min_train_area_km2,
                            "path": products / "folds.json"}, train={"folds": list(range(FOLDS.k))})
    return params, cubes, products


def _index_empty(cubes):
    (cubes / "index.csv").write_text("")
    return cubes / "index.csv", "cannot read cube index (empty or corrupt)"


def _index_garbage(cubes):
    (cubes / "index.csv").write_bytes(np.random.default_rng(0).bytes(2000))
    return cubes / "index.csv", "cannot read cube index (empty or corrupt)"


def _index_ragged(cubes):  # pandas' parser error ends in a newline: still one line for the user
    (cubes / "index.csv").write_text("glacier_id,epoch\na,2015\nb,2015,extra\n")
    return cubes / "index.csv", "cannot read cube index (empty or corrupt)"


def _index_wrong_columns(cubes):
    (cubes / "index.csv").write_text("name,value\na,1\n")
    return cubes / "index.csv", "not a cube index: column(s)"


def _index_missing(cubes):
    (cubes / "index.csv").unlink()
    return cubes / "index.csv", "cube index missing"


def _cubes_truncated(cubes):
    for p in (cubes).rglob("*.nc"):
        _truncate(p, 0.4)
    return cubes, "cannot read cube"


FOLDS_CASES = {f.__name__.lstrip("_"): f for f in (
    _index_empty, _index_garbage, _index_ragged, _index_wrong_columns, _index_missing, _cubes_truncated)}


@pytest.mark.parametrize("case", sorted(FOLDS_CASES))
def test_folds_bad_cubes_is_a_clear_error(case, folds_params, capsys, monkeypatch):
    params, cubes, products = folds_params
    bad, problem = FOLDS_CASES[case](cubes)
    code, lines = _run_cli(["--params", str(params), "-q", "folds"], capsys, monkeypatch)
    if case == "cubes_truncated":  # the first cube read is named
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"error: {cubes}/"), lines
        assert ".nc: cannot read cube" in lines[0] and "re-run `glaciermap ingest`" in lines[0]
    else:
        _assert_clear_error(code, lines, bad, problem)
    assert not products.exists()


@pytest.mark.parametrize("text, problem", [
    ("folds: {k: many}\n", "'folds.k': Input should be a valid integer"),
    ("folds: [unclosed\n", "not valid YAML"),
    ("- folds\n", "top level must be a mapping"),
    ("folds: {kk: 3}\n", "unknown key 'folds.kk'"),
], ids=["wrong_type", "bad_yaml", "not_a_mapping", "unknown_key"])
def test_bad_params_yaml_stops_any_stage(text, problem, tmp_path, capsys, monkeypatch):
    params = tmp_path / "params.yaml"
    params.write_text(text)
    monkeypatch.chdir(tmp_path)
    code, lines = _run_cli(["--params", str(params), "-q", "folds"], capsys, monkeypatch)
    _assert_clear_error(code, lines, params, problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


@pytest.mark.parametrize("text, problem", [
    ("train: [unclosed\n", "not valid YAML"),
    ("- train\n", "top level must be a mapping of sections"),
    ("train: {lr: fast}\n", "'train.lr': Input should be a valid number"),
    ("trian: {lr: 0.1}\n", "unknown key 'trian'"),
    (None, "overrides file missing"),
], ids=["bad_yaml", "not_a_mapping", "wrong_type", "unknown_key", "missing"])
def test_config_apply_rejects_bad_overrides_and_keeps_params(text, problem, tmp_path, capsys, monkeypatch):
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    before = params.read_bytes()
    overrides = tmp_path / "profile.yaml"
    if text is not None:
        overrides.write_text(text)
    code, lines = _run_cli(["--params", str(params), "config", "apply", str(overrides)], capsys, monkeypatch)
    _assert_clear_error(code, lines, overrides, problem)
    assert params.read_bytes() == before
    assert not _tmp_leftovers(tmp_path)


def _sim_dem(tmp_path: Path) -> Path:
    from rasterio import Affine

    path = tmp_path / "dem.tif"
    data = np.full((200, 200), 2500, np.float32) + np.linspace(0, 600, 200, dtype=np.float32)[None]
    with rasterio.open(path, "w", driver="GTiff", width=200, height=200, count=1, dtype="float32",
                       crs="EPSG:32632", transform=Affine(30, 0, 640000, 0, -30, 5190000), nodata=np.nan) as ds:
        ds.write(data, 1)
    return path


def _simulate_input(case: str, folder: Path) -> tuple[list[str], Path, str]:
    """(extra CLI args, the bad file, the expected problem) for one simulate case."""
    if case == "dem_missing":
        return ["--dem", str(folder / "gone.tif")], folder / "gone.tif", "cannot read DEM"
    if case == "dem_junk":
        bad = folder / "junk.tif"
        bad.write_bytes(b"II*\x00" + np.random.default_rng(0).bytes(3000))
        return ["--dem", str(bad)], bad, "cannot read DEM"
    if case == "outlines_corrupt":
        bad = folder / "bad.gpkg"
        bad.write_bytes(np.random.default_rng(0).bytes(3000))
        return ["--outlines", str(bad)], bad, "cannot read outlines"
    bad = _truncate(_sim_dem(folder), 0.5)  # dem_truncated: the header opens, the pixels do not
    return ["--dem", str(bad)], bad, "cannot read DEM"


@pytest.mark.parametrize("case", [
    "dem_missing", "dem_junk", "outlines_corrupt",
    "dem_truncated",
])
def test_simulate_bad_real_input_is_a_clear_error(case, tmp_path, capsys, monkeypatch):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    args, bad, problem = _simulate_input(case, inputs)
    params = _params(tmp_path / "params.yaml", simulate={"seed": 1})  # no box: the whole DEM is the region
    out = tmp_path / "products" / "raw"
    try:
        code, lines = _run_cli(["--params", str(params), "-q", "simulate", "--out", str(out), *args],
                               capsys, monkeypatch)
    except Exception as err:  # an uncaught library error is the failure this test looks for
        pytest.fail(f"traceback instead of a clear error: {type(err).__name__}: {err}")
    _assert_clear_error(code, lines, bad, problem)
    assert not out.exists() and not _tmp_leftovers(tmp_path / "products")


@pytest.fixture
def mlflow_restored(monkeypatch):
    """Tracking tests change mlflow's global URI and two environment variables: put them back."""
    import mlflow

    from glaciermap.tracking import runs as tracking

    before = mlflow.get_tracking_uri()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv(tracking._FROM_PARAMS, raising=False)
    yield
    mlflow.set_tracking_uri(before)


@pytest.mark.parametrize("case", ["folds_missing", "folds_corrupt", "folds_not_ours"])
def test_infer_missing_or_corrupt_folds(case, tmp_path, cubes_dir, capsys, monkeypatch, mlflow_restored):
    folds = tmp_path / "folds.json"
    problem = {"folds_missing": "folds file missing",
               "folds_corrupt": "cannot read folds (corrupt or not written by `glaciermap folds`)",
               "folds_not_ours": "cannot read folds (corrupt or not written by `glaciermap folds`)"}[case]
    if case == "folds_corrupt":
        folds.write_text('{"k": 3, "folds": [{"index": 0, "tra')  # killed writer of an old version
    elif case == "folds_not_ours":
        folds.write_text('{"k": 3, "folds": [{"index": 0}]}')
    params = _params(tmp_path / "params.yaml", data={"cubes_dir": cubes_dir}, folds={"path": folds, "k": 3},
                     train={"folds": [0, 1, 2]}, tracking={"tracking_uri": (tmp_path / "mlruns").as_uri()})
    out = tmp_path / "predictions"
    code, lines = _run_cli(["--params", str(params), "-q", "infer", "--out", str(out)], capsys, monkeypatch)
    _assert_clear_error(code, lines, folds, problem)
    assert not out.exists()


def test_area_change_empty_table_is_a_clear_error(tmp_path, capsys, monkeypatch):
    areas = tmp_path / "areas.csv"
    areas.write_text("")
    params = _params(tmp_path / "params.yaml", data={"raw_dir": tmp_path / "raw", "cubes_dir": tmp_path / "cubes"})
    try:
        code, lines = _run_cli(["--params", str(params), "-q", "area-change", "--areas", str(areas),
                                "--out", str(tmp_path / "ac"), "--metrics", str(tmp_path / "m.json")],
                               capsys, monkeypatch)
    except Exception as err:
        pytest.fail(f"traceback instead of a clear error: {type(err).__name__}: {err}")
    _assert_clear_error(code, lines, areas, "")


def test_area_change_table_missing_columns_names_the_file(tmp_path, capsys, monkeypatch):
    areas = tmp_path / "areas.csv"
    areas.write_text("glacier_id,foo\nG1,2\n")
    params = _params(tmp_path / "params.yaml", data={"raw_dir": tmp_path / "raw", "cubes_dir": tmp_path / "cubes"})
    code, lines = _run_cli(["--params", str(params), "-q", "area-change", "--areas", str(areas),
                            "--out", str(tmp_path / "ac"), "--metrics", str(tmp_path / "m.json")],
                           capsys, monkeypatch)
    _assert_clear_error(code, lines, areas, "missing required column(s)")
    assert not (tmp_path / "ac").exists() and not (tmp_path / "m.json").exists()


def _areas_csv(path: Path, ids: list[str]) -> Path:
    """An area table as `glaciermap infer` writes it (1 km2 glaciers shrinking 1 %/yr, all kept)."""
    pd.DataFrame({"glacier_id": ids, "area_inventory_km2": 1.0, "fold": 0, "year_inv": 2015.6, "year_recent": 2023.6,
                  "pred_area_inv_km2": 1.0, "pred_area_recent_km2": 0.92, "masked_frac_inv": 0.0,
                  "masked_frac_recent": 0.0, "recall_test": 0.9}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case", ["other_cubes", "rasters_missing"])
def test_area_change_checks_every_input_before_writing(case, tmp_path, cubes_dir, cube_index, capsys, monkeypatch):
    """An area table from other cubes (ids not in the index), or missing probability rasters: one
    line naming the table, and no output at all (it used to write the tables and two figures, then
    crash with a traceback in the map figure)."""
    ids = sorted(cube_index.glacier_id.unique())
    (tmp_path / "predictions").mkdir()
    areas = _areas_csv(tmp_path / "predictions" / "areas.csv", ["X1", "X2", ids[0]] if case == "other_cubes" else ids)
    params = _params(tmp_path / "params.yaml", data={"raw_dir": tmp_path / "raw", "cubes_dir": cubes_dir})
    code, lines = _run_cli(["--params", str(params), "-q", "area-change", "--areas", str(areas),
                            "--out", str(tmp_path / "ac"), "--metrics", str(tmp_path / "m.json")],
                           capsys, monkeypatch)
    problem = ("2 of 3 glacier(s) of the area table are not in the cube index" if case == "other_cubes"
               else "probability raster(s) missing")
    _assert_clear_error(code, lines, areas, problem)
    assert not (tmp_path / "ac").exists() and not (tmp_path / "m.json").exists()


# ------------------------------------------------------------------------- killed long stages
HANG_RUNNER = """
import os, sys, time
sys.path.insert(0, {tests!r})
import glaciermap.data.ingest as ingest
import glaciermap.data.simulate.region as region

def stop_here():  # a known point of the stage: say so, then wait for the test's SIGKILL
    open(os.environ["GLACIERMAP_TEST_READY"], "w").write(str(os.getpid()))
    while True:
        time.sleep(3600)

_write_cube, _strips = ingest.write_cube, region.strips
written = []

def write_cube_then_stop(path, cube):  # the real writer; after the second cube, stop
    out = _write_cube(path, cube)
    written.append(path)
    if len(written) == 2:
        stop_here()
    return out

def strips_then_stop(*args, **kwargs):  # dem.tif is written before the scenes: stop at the first strip
    stop_here()
    yield from _strips(*args, **kwargs)

ingest.write_cube, region.strips = write_cube_then_stop, strips_then_stop
if sys.argv[1] == "infer":
    import test_reliability as t
    from glaciermap.config import load_params
    from glaciermap.inference.run import infer
    t.install_fake_models(t.Fakes(stop_after=3, stop=stop_here))
    infer(load_params(sys.argv[2]), "unet", "optical", __import__("pathlib").Path(sys.argv[3]), progress=False)
else:
    from glaciermap.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def _kill_at_hang_point(tmp_path: Path, *argv: str, timeout: float = 120.0) -> None:
    """Run the stage until it stops at its known point (HANG_RUNNER), then SIGKILL it there.

    The stage itself says when it is there (it writes the ready file and sleeps): no race
    between a polling test and a stage that might finish first.
    """
    runner, ready = tmp_path / "hang_runner.py", tmp_path / "ready"
    runner.write_text(HANG_RUNNER.format(tests=str(TESTS)))
    proc = subprocess.Popen([PY, str(runner), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "GLACIERMAP_TEST_READY": str(ready)})
    try:
        _wait_for(ready, proc, timeout)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _wait_for(ready: Path, proc: subprocess.Popen, timeout: float) -> None:
    """Until the stage signals it reached its hang point; fail if it ends or hangs elsewhere."""
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail(f"the stage ended (rc {proc.returncode}) before its hang point:\n{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"the stage did not reach its hang point within {timeout} s")
        time.sleep(0.02)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("previous", [False, True], ids=["no_previous_output", "previous_output"])
def test_killed_ingest_leaves_old_or_no_cubes_and_a_rerun_completes(previous, raw_region, cubes_dir, cube_index,
                                                                    tmp_path, capsys, monkeypatch):
    products = tmp_path / "products"
    products.mkdir()
    out = products / "cubes"
    if previous:  # an older, different cube set: must survive the kill untouched
        shutil.copytree(cubes_dir, out)
        (out / "index.csv").write_text((out / "index.csv").read_text() + "\n")
        before = _snapshot(out)
    argv = _ingest_argv(tmp_path, raw_region, out, workers=1)
    _kill_at_hang_point(tmp_path, *argv)  # after two cubes were written to the temporary folder
    assert len([p for p in products.glob(".cubes.tmp-*/*/*.nc") if not p.name.startswith(".")]) == 2
    if previous:
        assert _snapshot(out) == before  # old output intact
    else:
        assert not out.exists()  # no output at all, not a partial one
    # what the kill left is a hidden temporary sibling, never under the output's name
    assert all(p.name.startswith(".cubes.tmp-") for p in products.iterdir() if p.name != "cubes")
    code, lines = _run_cli(argv, capsys, monkeypatch)
    assert code == 0, lines
    pd.testing.assert_frame_equal(read_index(out), cube_index)
    assert not _tmp_leftovers(products)  # the re-run also removed the killed run's temporary sibling
    assert sorted(p.name for p in out.iterdir()) == sorted(["index.csv", "skipped.csv", *cube_index.epoch.unique()])


def test_killed_simulate_leaves_old_or_no_region_and_a_rerun_completes(tmp_path, capsys, monkeypatch):
    products = tmp_path / "products"
    out = products / "raw"
    out.mkdir(parents=True)
    (out / "old.txt").write_text("previous region")
    params = _params(tmp_path / "params.yaml", simulate=SIM.model_dump(mode="json"))
    argv = ["--params", str(params), "-q", "simulate", "--out", str(out)]
    _kill_at_hang_point(tmp_path, *argv)  # mid-region: dem.tif written, the scenes not
    assert any(products.glob(".raw.tmp-*/dem.tif"))
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]
    assert all(p.name.startswith(".raw.tmp-") for p in products.iterdir() if p.name != "raw")
    code, lines = _run_cli(argv, capsys, monkeypatch)
    assert code == 0, lines
    assert not (out / "old.txt").exists()
    assert (out / "region.yaml").exists() and (out / "truth" / "areas.csv").exists()
    assert not _tmp_leftovers(products)


# ------------------------------------------------------------- inference resume (fake models)
class Fakes:
    """Stand-ins for the registry and the network: deterministic probabilities, calls counted."""

    def __init__(self, value: float | None = None, stop_after: int | None = None, stop=None):
        self.value, self.calls = value, []
        self.stop_after, self.stop = stop_after, stop  # call `stop` instead of predicting after N cubes
        self.run_ids = {}  # (fold, seed) -> the member's MLflow run (default: run-of-fold<k>-seed<s>)
        self.members = []  # (glacier id, the member's fold, its seed) of every prediction

    def predict(self, prepared, bundle):
        cube = read_cube(prepared)
        if len(self.calls) == self.stop_after:
            self.stop()
        self.calls.append(Path(prepared).name + "@" + Path(prepared).parent.name)
        self.members.append((Path(prepared).stem, bundle.fold, bundle.seed))
        if self.value is not None:
            return np.full(cube.mask_glacier.shape, self.value, np.float32)
        if bundle.seed == 1:  # a second member, less sure: 0.3 off the glacier, 0.7 on it
            return (0.3 + 0.4 * cube.mask_glacier).astype(np.float32)
        return (0.1 + 0.8 * cube.mask_glacier).astype(np.float32)


def install_fake_models(fakes: Fakes, monkeypatch=None) -> None:
    """fold_models gives fake members (fold, seed) of every fold and seed; predictions are recorded."""
    import glaciermap.data.windows as windows
    import glaciermap.inference.run as run

    def bundle(fold: int, seed: int) -> SimpleNamespace:
        run_id = fakes.run_ids.get((fold, seed), f"run-of-fold{fold}-seed{seed}")
        return SimpleNamespace(groups={}, stats={}, patch_size=64, fold=fold, seed=seed,
                               extra={"mlflow_run_id": run_id})

    patches = {(run, "fold_models"): lambda params, model, sensor_set, registry: {
                   f: [(None, bundle(f, s)) for s in params.train.seeds] for f in params.train.folds},
               (windows, "predict_cube_file"): lambda net, bundle, path, **kw: (fakes.predict(path, bundle), None)}
    for (module, name), fn in patches.items():
        if monkeypatch is None:
            setattr(module, name, fn)
        else:
            monkeypatch.setattr(module, name, fn)


@pytest.fixture
def infer_setup(tmp_path, cubes_dir, folds, monkeypatch):
    from glaciermap.config import load_params

    folds_path = write_folds(tmp_path / "folds.json", folds, FOLDS)
    params_path = _params(tmp_path / "params.yaml", data={"cubes_dir": cubes_dir},
                          folds={"path": folds_path, "k": FOLDS.k}, train={"folds": list(range(FOLDS.k))})
    fakes = Fakes()
    install_fake_models(fakes, monkeypatch)
    return load_params(params_path), params_path, fakes


def test_killed_inference_reuses_finished_rasters_and_redoes_bad_ones(infer_setup, cube_index, tmp_path):
    from glaciermap.inference.run import infer, read_probability

    params, params_path, fakes = infer_setup
    ref = infer(params, "unet", "optical", tmp_path / "reference", progress=False)
    assert len(fakes.calls) == len(cube_index)
    out = tmp_path / "predictions"

    _kill_at_hang_point(tmp_path, "infer", str(params_path), str(out))  # when 3 rasters are written
    finished = sorted(p for p in out.glob("*/*.tif") if not p.name.startswith("."))
    assert len(finished) == 3
    assert not (out / "areas.csv").exists() and not (out / "areas_long.csv").exists()  # tables come last
    assert not (out / "provenance.json").exists()  # and what made them, after them
    for p in finished:  # every raster under its final name is complete
        row = cube_index[cube_index.path == f"{p.parent.name}/{p.stem}.nc"].iloc[0]
        cube = read_cube(params.data.cubes_dir / row.path)
        assert read_probability(p, cube.grid, valid=cube.mask_invalid == 0) is not None
    _truncate(finished[0], 0.3)  # e.g. a disk that filled up: must be recomputed, not trusted
    fakes.calls.clear()
    table = infer(params, "unet", "optical", out, progress=False)
    redone = len(cube_index) - len(finished) + 1
    assert len(fakes.calls) == redone
    assert f"{finished[0].stem}.nc@{finished[0].parent.name}" in fakes.calls
    pd.testing.assert_frame_equal(table, ref)
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["areas.csv", "areas_long.csv", "outlines.gpkg",
                                                                    "provenance.json"]


@pytest.mark.parametrize("damage", ["truncated", "empty", "out_of_range", "nan", "wrong_shape", "one_band",
                                    "two_band"])
def test_read_probability_rejects_damaged_rasters(damage, tmp_path):
    from rasterio import Affine
    from rasterio.crs import CRS

    from glaciermap.data.raw import Grid
    from glaciermap.inference.run import read_probability, write_probability

    grid = Grid(CRS.from_epsg(32632), Affine(10, 0, 600000, 0, -10, 5100000), 60, 40)
    prob = np.random.default_rng(0).random((40, 60)).astype(np.float32)
    path = tmp_path / "G1.tif"
    write_probability(path, prob, np.zeros_like(prob), grid)
    got = read_probability(path, grid)
    assert got is not None and np.array_equal(got[0], prob)
    if damage == "truncated":
        _truncate(path, 0.5)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "out_of_range":
        write_probability(path, prob + 1.0, np.zeros_like(prob), grid)
    elif damage == "nan":
        write_probability(path, np.where(prob > 0.5, np.nan, prob), np.zeros_like(prob), grid)
    elif damage == "wrong_shape":
        write_probability(path, prob[:30], np.zeros_like(prob[:30]),
                          Grid(grid.crs, grid.transform, 60, 30))
    else:  # one band, or two: probability and spread without the uncertainty band (before #16)
        bands = 1 if damage == "one_band" else 2
        with rasterio.open(path, "w", driver="GTiff", width=60, height=40, count=bands, dtype="float32",
                           crs=grid.crs, transform=grid.transform) as ds:
            ds.write(np.stack([prob] * bands))
    assert read_probability(path, grid) is None


def test_unseen_pixels_are_nodata_and_a_raster_from_before_is_predicted_again(tmp_path):
    """A raster whose p is NaN off the seen pixels is NaN (the GeoTIFF's nodata) there in every band and is
    read back against the same mask; one with values there (written before unseen pixels were NaN) or
    NaN on a seen pixel is not trusted."""
    from rasterio import Affine
    from rasterio.crs import CRS

    from glaciermap.data.raw import Grid
    from glaciermap.inference.run import read_probability, write_probability

    grid = Grid(CRS.from_epsg(32632), Affine(10, 0, 600000, 0, -10, 5100000), 60, 40)
    prob = np.random.default_rng(0).random((40, 60)).astype(np.float32)
    seen = np.ones((40, 60), bool)
    seen[:, :15] = False  # beyond the scene edge
    path = tmp_path / "G1.tif"
    write_probability(path, np.where(seen, prob, np.nan), np.where(seen, 0.0, np.nan), grid)  # as map_glacier does
    with rasterio.open(path) as src:
        assert np.isnan(src.nodata)
        bands = src.read()
    assert np.isnan(bands[:, ~seen]).all() and np.isfinite(bands[:, seen]).all()
    got = read_probability(path, grid, valid=seen)
    assert got is not None and np.array_equal(got[0][seen], prob[seen])
    assert read_probability(path, grid) is None  # NaN is a damaged raster where no mask says it is unseen
    assert read_probability(path, grid, valid=np.ones_like(seen)) is None  # NaN on a seen pixel
    write_probability(path, prob, np.zeros_like(prob), grid)  # the old format: ~0.5 beyond the edge
    assert read_probability(path, grid, valid=seen) is None


def test_read_probability_rejects_a_raster_on_another_grid(tmp_path):
    from rasterio import Affine
    from rasterio.crs import CRS

    from glaciermap.data.raw import Grid
    from glaciermap.inference.run import read_probability, write_probability

    grid = Grid(CRS.from_epsg(32632), Affine(10, 0, 600000, 0, -10, 5100000), 60, 40)
    shifted = Grid(grid.crs, Affine(10, 0, 650000, 0, -10, 5100000), 60, 40)
    prob = np.full((40, 60), 0.7, np.float32)
    write_probability(tmp_path / "G1.tif", prob, np.zeros_like(prob), shifted)
    assert read_probability(tmp_path / "G1.tif", grid) is None


def test_a_glacier_is_mapped_only_by_the_members_of_the_fold_that_held_it_out(infer_setup, folds, cube_index,
                                                                               tmp_path):
    """Two folds' worth of members (seeds 0 and 1 per fold): every cube is predicted by exactly the two
    members of the fold whose test set holds its glacier, none of which trained or validated on it; the
    raster is their mean (0.1/0.9 and 0.3/0.7 off/on the glacier -> 0.2/0.8) and spread (0.1 everywhere)."""
    from glaciermap.config import updated
    from glaciermap.inference.run import infer, read_probability

    params, _, fakes = infer_setup
    params = updated(params, train=updated(params.train, seeds=[0, 1]))
    table = infer(params, "unet", "optical", tmp_path / "predictions", progress=False)
    test_fold = {g: f.index for f in folds for g in f.test}
    assert len(fakes.members) == 2 * len(cube_index)
    for glacier, fold, seed in fakes.members:
        assert fold == test_fold[glacier] and glacier not in folds[fold].train + folds[fold].val
    by_cube = {}
    for call, member in zip(fakes.calls, fakes.members):
        by_cube.setdefault(call, []).append(member[1:])
    assert all(sorted(m) == [(test_fold[c.split(".nc@")[0]], 0), (test_fold[c.split(".nc@")[0]], 1)]
               for c, m in by_cube.items()) and len(by_cube) == len(cube_index)
    assert dict(zip(table.glacier_id, table.fold)) == {g: test_fold[g] for g in table.glacier_id}
    for _, r in cube_index.iterrows():
        cube = read_cube(params.data.cubes_dir / r.path)
        seen = cube.mask_invalid == 0
        prob, std = read_probability(tmp_path / "predictions" / r.epoch / f"{r.glacier_id}.tif", cube.grid,
                                     valid=seen)
        np.testing.assert_allclose(prob[seen], (0.2 + 0.6 * cube.mask_glacier)[seen], atol=1e-6)
        np.testing.assert_allclose(std[seen], 0.1, atol=1e-6)
        assert np.isnan(prob[~seen]).all() and np.isnan(std[~seen]).all()  # unseen: no statement
    # the outlines are the visible p >= 0.5 pixels: their area is the table's, holes where unseen
    long = pd.read_csv(tmp_path / "predictions" / "areas_long.csv", dtype={"glacier_id": str, "epoch": str})
    outlines = gpd.read_file(tmp_path / "predictions" / "outlines.gpkg")
    drawn = outlines.assign(km2=outlines.area / 1e6).set_index(["glacier_id", "epoch"]).km2
    counted = long.set_index(["glacier_id", "epoch"]).pred_area_km2
    assert (counted > 0).sum() == len(drawn) and np.allclose(drawn, counted[drawn.index], rtol=1e-6)
    assert (long.masked_frac > 0).any()  # some of them had pixels to leave out


def test_evaluate_scores_the_mean_probability_of_the_folds_members(infer_setup, folds, monkeypatch):
    """Member 0 says 0.6 everywhere (alone: every pixel glacier), member 1 says 0.45 on the glacier and
    0.2 off it (alone: no glacier); their mean, 0.525 on and 0.4 off, is exactly the glacier (IoU 1)."""
    import glaciermap.data.windows as windows
    from glaciermap.analysis.evaluate import evaluate_fold

    params = infer_setup[0]

    def predict(net, bundle, path, **kw):
        mask = read_cube(path).mask_glacier.astype(np.float32)
        prob = np.full_like(mask, 0.6) if bundle.seed == 0 else 0.2 + 0.25 * mask
        return prob, SimpleNamespace(target=mask.astype(np.uint8), valid=np.ones(mask.shape, bool), debris=None)

    monkeypatch.setattr(windows, "predict_cube_file", predict)
    member = [(None, SimpleNamespace(fold=0, seed=s, patch_size=64)) for s in (0, 1)]
    scores = {name: evaluate_fold(m, params, folds[0].test)["iou"]
              for name, m in {"mean": member, "seed0": member[:1], "seed1": member[1:]}.items()}
    assert scores["mean"] == 1.0 and scores["seed0"] < 1.0 and scores["seed1"] == 0.0


@pytest.mark.parametrize("tta", [False, True])
def test_infer_evaluate_and_the_benchmark_predict_with_the_same_settings(infer_setup, folds, tmp_path, monkeypatch,
                                                                          tta):
    """`infer.tta` (and stride, batch size, precision) reach every prediction: a test score is of
    the maps infer makes (evaluate once predicted without flips whatever infer.tta said)."""
    import glaciermap.data.windows as windows
    from glaciermap.analysis.benchmark import model_predictor
    from glaciermap.analysis.evaluate import evaluate_fold
    from glaciermap.config import updated
    from glaciermap.inference.run import infer
    from glaciermap.tracking import registry

    params, _, _ = infer_setup
    params = updated(params, infer=updated(params.infer, tta=tta, batch_size=5, precision="32"))
    seen: list[dict] = []

    def predict(net, bundle, path, **kw):
        seen.append(kw)
        mask = read_cube(path).mask_glacier.astype(np.float32)
        return mask, SimpleNamespace(target=mask.astype(np.uint8), valid=np.ones(mask.shape, bool), debris=None)

    monkeypatch.setattr(windows, "predict_cube_file", predict)
    monkeypatch.setattr(registry, "fold_models", lambda params, model, sensor_set, registry=False: {
        f: [(None, SimpleNamespace(fold=f, seed=0, patch_size=64, groups={}, stats={}, extra={}))]
        for f in params.train.folds})
    infer(params, "unet", "optical", tmp_path / "predictions", progress=False)
    n_infer = len(seen)
    evaluate_fold([(None, SimpleNamespace(fold=0, seed=0, patch_size=64))], params, folds[0].test)
    model_predictor(params, "unet", "optical")(0, params.data.cubes_dir / read_index(params.data.cubes_dir).path[0])
    assert n_infer and len(seen) > n_infer + 1
    expected = {"stride": params.patches.eval_stride, "batch_size": 5, "tta": tta, "precision": "32"}
    assert all({k: kw[k] for k in expected} == expected for kw in seen)


def test_a_member_that_predicts_nan_is_named_by_its_alias(infer_setup, tmp_path):
    from glaciermap.config import updated
    from glaciermap.inference.run import infer

    params, _, fakes = infer_setup
    params = updated(params, train=updated(params.train, seeds=[0, 3]))
    good = fakes.predict
    fakes.predict = lambda path, bundle: good(path, bundle) * (np.nan if bundle.seed == 3 else 1)
    with pytest.raises(GlaciermapError, match=r"model glaciermap-unet-optical@fold-\d-seed-3 predicted values "
                                              r"outside \[0, 1\] or NaN for glacier"):
        infer(params, "unet", "optical", tmp_path / "predictions", progress=False)


@pytest.mark.parametrize("value", [np.nan, 1.5])
def test_infer_rejects_nan_or_out_of_range_predictions(value, infer_setup, tmp_path):
    from glaciermap.inference.run import infer

    params, _, fakes = infer_setup
    fakes.value = value
    with pytest.raises(GlaciermapError):
        infer(params, "unet", "optical", tmp_path / "predictions", progress=False)


# ------------------------------------------------------------------------- tracking outages
DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens


def test_unreachable_tracking_server_stops_train_before_compute(tmp_path, cubes_dir, folds, capsys, monkeypatch,
                                                                mlflow_restored):
    monkeypatch.chdir(tmp_path)
    folds_path = write_folds(tmp_path / "in" / "folds.json", folds, FOLDS)  # a valid request: only MLflow fails
    params = _params(tmp_path / "params.yaml", data={"cubes_dir": cubes_dir},
                     folds={**FOLDS.model_dump(mode="json"), "path": folds_path}, train={"folds": [0]})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", DEAD)
    code, lines = _run_cli(["--params", str(params), "-q", "train", "--model", "unet", "--sensors", "optical",
                            "--fold", "0"], capsys, monkeypatch)
    assert code == 2 and len(lines) == 1, lines  # the health check's error: no MLflow call, so no retries
    assert lines[0].startswith(f"error: MLflow tracking server {DEAD} is unreachable"), lines
    assert "set tracking.offline_fallback: true" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "params.yaml"]  # no run folder, metrics, database


def test_a_dhdt_set_on_cubes_without_dhdt_stops_train_before_compute(tmp_path, cubes_dir, folds, capsys,
                                                                     monkeypatch):
    """Cubes built from a region without a dh/dt map (or before it had one), asked for a dhdt
    sensor set: one line naming region.yaml, before any run folder, metric or database exists."""
    monkeypatch.chdir(tmp_path)
    folds_path = write_folds(tmp_path / "in" / "folds.json", folds, FOLDS)
    params = _params(tmp_path / "params.yaml", data={"cubes_dir": cubes_dir, "raw_dir": tmp_path / "data"},
                     sensors={"groups": {"optical": ["B2", "B3", "B4", "B8", "B11", "B12"], "dhdt": ["dhdt"]},
                              "sets": {"optical_dhdt": ["optical", "dhdt"]}},
                     folds={**FOLDS.model_dump(mode="json"), "path": folds_path},
                     train={"folds": [0], "sensor_sets": ["optical_dhdt"]}, infer={"sensor_set": "optical_dhdt"},
                     tracking={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    code, lines = _run_cli(["--params", str(params), "-q", "train", "--model", "unet", "--sensors", "optical_dhdt",
                            "--fold", "0"], capsys, monkeypatch)
    _assert_clear_error(code, lines, tmp_path / "data" / "region.yaml",
                        "sensor set(s) ['optical_dhdt'] use the dhdt group, but the training cubes have no dhdt band")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "params.yaml"]


def test_unreachable_server_with_offline_fallback_logs_locally(tmp_path, monkeypatch, mlflow_restored):
    from glaciermap.config import TrackingConfig
    from glaciermap.tracking import runs as tracking

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", DEAD)
    with pytest.warns(UserWarning, match=f"MLflow server {DEAD} unreachable: logging to sqlite:///mlflow-offline.db"):
        uri = tracking.resolve_tracking_uri(TrackingConfig(offline_fallback=True))
    assert uri == tracking.OFFLINE_URI and (tmp_path / "mlflow-offline.db").exists()


# --------------------------------------------------------------------- unsafe files, binding
class _Payload:
    """Unpickling this creates a marker file: proof that code in a weights file ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_code_in_a_weights_file_is_refused_not_run(tmp_path):
    import torch

    from glaciermap.errors import ConfigError
    from glaciermap.models import ModelConfig, build_model

    marker = tmp_path / "pwned"
    evil = tmp_path / "encoder.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _Payload(marker)}, evil)
    with open(evil, "rb") as f:  # precondition: plain pickle loading would run it
        assert b"touch" in f.read()
    with pytest.raises(ConfigError, match="cannot read encoder weights") as err:
        build_model(ModelConfig(name="unet", encoder_weights_path=evil), {"optical": 6})
    assert err.value.path == str(evil)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(marker)))  # control: the payload does work when unpickled
    assert marker.exists()


def test_nothing_binds_beyond_localhost():
    """glaciermap opens no server; the documented UIs keep their localhost defaults."""
    files = [*ROOT.glob("src/glaciermap/**/*.py"), *ROOT.glob("scripts/*"), ROOT / "README.md",
             ROOT / "dvc.yaml", *ROOT.glob("docs/*.md")]
    for f in (f for f in files if f.is_file() and f.name != "reliability.md"):
        text = f.read_text(errors="ignore")
        assert "0.0.0.0" not in text, f
        for line in text.splitlines():
            if "mlflow ui" in line or "mlflow server" in line or "optuna-dashboard" in line:
                assert "--host" not in line, (f, line)
