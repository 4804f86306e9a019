"""Ingest adapters: Diaconu & Bamber per-glacier NetCDF and GlaViTU tile HDF5 -> glaciermap cubes.

Small files are written in each layout (random values, the layouts' exact names and attributes),
converted, and checked: masks, areas and bands survive; cubes go through folds, one training
epoch and inference; almost-right files give one clear error naming the file and the problem.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import yaml
from pyproj import CRS
from rasterio import Affine

from glaciermap import cli
from glaciermap.config import DataConfig, SensorsConfig, deep_merge, parse_params
from glaciermap.data.adapters import ingest_dandb_netcdf, ingest_dataset, ingest_glavitu_hdf5
from glaciermap.data.cubes import read_cube, read_index
from glaciermap.errors import InputDataError

ROOT = Path(__file__).resolve().parents[1]
UTM = CRS.from_epsg(32632)
RES = 10.0
S2 = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B11", "B12"]
MASK_BANDS = ["FILL_MASK", "CLOUD_MASK", "SHADOW_MASK"]
OPTICAL = ["B2", "B3", "B4", "B8", "B11", "B12"]
DEM = ["dem", "slope", "hillshade"]
DOC_ATTRS = {"glacier_id", "epoch", "year", "inventory_year", "area_km2", "crs", "res", "lon", "lat"}
N_GLACIERS, EPOCHS = 6, ("2015", "2023")
SETS = ["optical_dem"]


# ------------------------------------------------------------------------------ layout writers
def _blob(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def write_dandb_glacier(path: Path, gid: int, rng: np.random.Generator, *, year: float | None = None,
                        drop_band: str | None = None, crs: bool = True) -> Path:
    """One glacier file: band_data (bands + mask bands, named by long_name), masks, dem, CF CRS."""
    h, w = 40 + 4 * gid, 56
    x0, y0 = 300_000.0 + 6_000.0 * gid, 5_100_000.0  # glaciers spread West -> East
    names = [n for n in S2 + MASK_BANDS if n != drop_band]
    bands = {n: rng.uniform(0, 1, (h, w)).astype(np.float32) for n in S2}
    bands["B3"][rng.random((h, w)) < 0.02] = np.nan  # NaN reflectance = no data
    fill = np.ones((h, w), np.float32)
    fill[:, :3] = 0
    bands.update(FILL_MASK=fill, CLOUD_MASK=_blob(h, w, 5, 40, 4, 8).astype(np.float32),
                 SHADOW_MASK=_blob(h, w, h - 6, 10, 3, 6).astype(np.float32))
    ids = np.full((h, w), -1, np.int32)
    ids[_blob(h, w, h - 4, w - 5, 4, 6)] = 100 + gid  # a neighbour in the corner
    crt = _blob(h, w, h / 2, w / 2, h / 4 + gid % 3, w / 4)
    ids[crt] = gid
    debris = crt & (np.arange(h)[:, None] > h / 2 + 2)
    gm = {"grid_mapping": "spatial_ref"} if crs else {}
    data_vars = {
        "band_data": (("band", "y", "x"), np.stack([bands[n] for n in names]),
                      {"long_name": names, **gm}),
        "mask_crt_g": (("y", "x"), crt.astype(np.int8), gm),
        "mask_all_g_id": (("y", "x"), ids, gm),
        "mask_debris_crt_g": (("y", "x"), debris.astype(np.int8), gm),
        "dem": (("y", "x"), (2500 + 3 * np.arange(h)[:, None] + rng.normal(0, 1, (h, w))).astype(np.float32), gm),
    }
    if crs:
        data_vars["spatial_ref"] = ((), np.int32(0), {
            **UTM.to_cf(), "GeoTransform": f"{x0} {RES} 0 {y0} 0 {-RES}"})
    ds = xr.Dataset(data_vars, coords={"band": np.arange(1, len(names) + 1),
                                       "x": x0 + RES * (np.arange(w) + 0.5), "y": y0 - RES * (np.arange(h) + 0.5)},
                    attrs={} if year is None else {"year": year})
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def write_dandb(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for e in EPOCHS:
        for g in range(N_GLACIERS):
            write_dandb_glacier(root / e / f"g_{g:04d}.nc", g, rng, year=float(e) + 0.6 if e == "2015" else None)
    return root


def write_glavitu_tile(f: h5py.File, name: str, rng: np.random.Generator, i: int, *, sar: bool = True,
                       channels_first: bool = False, crs: bool = True, label: str = "outlines") -> None:
    """One tile group: channels-last feature arrays, the label and georeferencing attributes."""
    h = w = 64
    g = f.create_group(name)
    optical = rng.uniform(0, 1, (h, w, 6)).astype(np.float32)
    optical[rng.random((h, w)) < 0.03, 2] = np.nan
    g["optical"] = np.moveaxis(optical, -1, 0) if channels_first else optical
    elev = 2000 + 5 * np.arange(h)[:, None] + rng.normal(0, 1, (h, w))
    g["dem"] = np.stack([elev, rng.uniform(0, 40, (h, w))], axis=-1).astype(np.float32)
    if sar:
        g["sar"] = rng.normal(-12, 3, (h, w, 2)).astype(np.float32)
        g["coherence"] = rng.uniform(0, 1, (h, w, 1)).astype(np.float32)
    g[label] = (_blob(h, w, 30, 20 + i, 14, 10 + i) | _blob(h, w, 50, 50, 6, 8)).astype(np.uint8)
    if crs:
        g.attrs["crs"] = "EPSG:32632"
    g.attrs["transform"] = np.array(tuple(Affine(RES, 0, 400_000 + 5_000 * i, 0, -RES, 5_000_000))[:6])
    g.attrs["year"] = 2020


def write_glavitu(root: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    with h5py.File(root / "train.h5", "w") as f:
        for i in range(4):
            write_glavitu_tile(f, f"tile_{i:03d}", rng, i, label="outlines" if i % 2 else "groundtruth")
    with h5py.File(root / "test.h5", "w") as f:
        write_glavitu_tile(f, "tile_a", rng, 4)
        write_glavitu_tile(f, "tile_b", rng, 5, sar=False)  # no SAR / coherence on this tile
    return root


@pytest.fixture(scope="module")
def dandb_root(tmp_path_factory) -> Path:
    return write_dandb(tmp_path_factory.mktemp("dandb") / "dataset")


@pytest.fixture(scope="module")
def glavitu_root(tmp_path_factory) -> Path:
    return write_glavitu(tmp_path_factory.mktemp("glavitu") / "dataset")


def _ingest_glavitu(src: Path, out: Path, sets=SETS, **cfg) -> tuple:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = ingest_glavitu_hdf5(src, out, DataConfig(**cfg), SensorsConfig(), sets, progress=False)
    return index, [str(w.message) for w in caught]


# ------------------------------------------------------------------------- D&B NetCDF layout
def test_dandb_cubes_keep_masks_bands_grid_and_areas(dandb_root, tmp_path):
    out = tmp_path / "cubes"
    index = ingest_dandb_netcdf(dandb_root, out, DataConfig(), SensorsConfig(), SETS, progress=False)
    assert read_index(out)[["glacier_id", "epoch", "path"]].equals(index[["glacier_id", "epoch", "path"]])
    assert len(index) == N_GLACIERS * len(EPOCHS)
    assert sorted(index.role.unique()) == ["inventory", "recent"]
    assert set(index[index.role == "inventory"].epoch) == {"2015"}
    for _, row in index.iterrows():
        cube = read_cube(out / row.path)
        with xr.open_dataset(dandb_root / row.epoch / f"{row.glacier_id}.nc", engine="h5netcdf",
                             decode_coords="all") as src:
            names = list(src.band_data.attrs["long_name"])
            stack = src.band_data.values
            crt, ids = src.mask_crt_g.values, src.mask_all_g_id.values
            dem, debris = src.dem.values, src.mask_debris_crt_g.values
            xs, ys = src.x.values, src.y.values
        band = {n: stack[names.index(n)] for n in names}
        # masks identical pixel for pixel, so a glacier's pixel count and area survive
        np.testing.assert_array_equal(cube.mask_glacier, crt == 1)
        np.testing.assert_array_equal(cube.mask_all, ids != -1)
        expected_invalid = ((band["FILL_MASK"] == 0) | (band["CLOUD_MASK"] == 1) | (band["SHADOW_MASK"] == 1)
                            | ~np.isfinite(np.stack([band[b] for b in OPTICAL])).all(axis=0))
        np.testing.assert_array_equal(cube.mask_invalid, expected_invalid)
        assert cube.mask_invalid[:, :3].all() and np.isnan(band["B3"]).any()
        assert row.area_km2 == pytest.approx((crt == 1).sum() * RES ** 2 / 1e6)
        assert cube.attrs["debris_fraction"] == pytest.approx(debris[crt == 1].mean())
        # this glacier's debris; the neighbour's surface is unknown (mask_debris_crt_g describes only this one)
        np.testing.assert_array_equal(cube.mask_debris, np.where((ids != -1) & (crt != 1), 2, debris == 1))
        # bands: the configured groups the dataset offers (no SAR in Sentinel-2 files), values as they were
        assert cube.bands == OPTICAL + DEM and not row.has_sar
        np.testing.assert_array_equal(cube.select(OPTICAL), np.stack([band[b] for b in OPTICAL]))
        np.testing.assert_array_equal(cube.select(["dem"])[0], dem)
        # grid and attributes as a raw-region cube has them
        assert cube.grid.crs.to_epsg() == 32632 and cube.grid.res == RES
        np.testing.assert_allclose(cube.grid.xy_coords()[0], xs)
        np.testing.assert_allclose(cube.grid.xy_coords()[1], ys)
        assert DOC_ATTRS <= set(cube.attrs)
        assert cube.attrs["inventory_year"] == pytest.approx(2015.6) and row.inventory_year == pytest.approx(2015.6)
        assert row.year == pytest.approx(2015.6 if row.epoch == "2015" else 2023.0)
        assert 5 < row.lon < 12 and 44 < row.lat < 48


def test_dandb_dhdt_variable_becomes_the_dhdt_band(tmp_path):
    """A `dhdt` variable (y, x; DL4GAM's name for the Hugonnet et al. 2021 dh/dt) is offered as band
    `dhdt`, values as stored; a dhdt sensor set on files without it names what they have."""
    sensors = SensorsConfig(groups={"optical": OPTICAL, "dhdt": ["dhdt"]},
                            sets={"optical": ["optical"], "optical_dhdt": ["optical", "dhdt"]})
    path = write_dandb_glacier(tmp_path / "with" / "2015" / "g_0000.nc", 0, np.random.default_rng(0))
    with xr.open_dataset(path, engine="h5netcdf", decode_coords="all") as ds:
        ds = ds.load()
    dhdt = np.linspace(-3.0, 0.5, ds.sizes["y"] * ds.sizes["x"], dtype=np.float32).reshape(ds.sizes["y"], -1)
    dhdt[0, :5] = np.nan  # a void stays NaN
    ds["dhdt"] = (("y", "x"), dhdt, {"units": "m/yr"})
    path.unlink()
    ds.to_netcdf(path, engine="h5netcdf")
    index = ingest_dandb_netcdf(tmp_path / "with", tmp_path / "cubes", DataConfig(), sensors, ["optical_dhdt"],
                                progress=False)
    cube = read_cube(tmp_path / "cubes" / index.path.iloc[0])
    assert cube.bands == OPTICAL + ["dhdt"]
    np.testing.assert_array_equal(cube.select(["dhdt"])[0], dhdt)
    write_dandb_glacier(tmp_path / "without" / "2015" / "g_0000.nc", 0, np.random.default_rng(0))
    with pytest.raises(InputDataError, match=r"lacks band\(s\) dhdt: \['dhdt'\] \(sensor sets \['optical_dhdt'\]\)"):
        ingest_dandb_netcdf(tmp_path / "without", tmp_path / "c2", DataConfig(), sensors, ["optical_dhdt"],
                            progress=False)


def test_dandb_inventory_epoch_comes_from_params(dandb_root, tmp_path):
    index = ingest_dandb_netcdf(dandb_root, tmp_path / "cubes", DataConfig(dandb_inventory_epoch="2023"),
                                SensorsConfig(), SETS, progress=False)
    assert set(index[index.role == "inventory"].epoch) == {"2023"}
    with pytest.raises(InputDataError, match=r"folder 'inv' not found; epoch folders: \['2015', '2023'\]"):
        ingest_dandb_netcdf(dandb_root, tmp_path / "c2", DataConfig(dandb_inventory_epoch="inv"),
                            SensorsConfig(), SETS, progress=False)


def test_dandb_band_the_dataset_lacks_lists_what_it_has(dandb_root, tmp_path):
    with pytest.raises(InputDataError) as err:
        ingest_dandb_netcdf(dandb_root, tmp_path / "cubes", DataConfig(), SensorsConfig(), ["optical_sar"],
                            progress=False)
    msg = err.value.message
    assert "g_0000.nc" in msg and "lacks band(s) sar: ['VV', 'VH', 'coh']" in msg
    assert "it has ['B1', 'B2'" in msg and "'hillshade'" in msg
    assert not (tmp_path / "cubes").exists()
    # sensor groups name bands by their long_name: any subset of what the files hold works
    sensors = SensorsConfig(groups={"optical": ["B8A", "B4", "B3"], "dem": ["dem"]},
                            sets={"custom": ["optical", "dem"]})
    index = ingest_dandb_netcdf(dandb_root, tmp_path / "c2", DataConfig(), sensors, ["custom"], progress=False)
    assert read_cube(tmp_path / "c2" / index.path[0]).bands == ["B8A", "B4", "B3", "dem"]


# ---------------------------------------------------------------------- GlaViTU HDF5 layout
def test_glavitu_cubes_keep_labels_bands_and_report_missing_features(glavitu_root, tmp_path):
    out = tmp_path / "cubes"
    index, warned = _ingest_glavitu(glavitu_root, out)
    assert len(index) == 6 and set(index.split) == {"train", "test"} and (index.role == "inventory").all()
    assert any("features missing from tiles: coherence (1 tile(s)), sar (1 tile(s))" in w for w in warned), warned
    for _, row in index.iterrows():
        cube = read_cube(out / row.path)
        with h5py.File(glavitu_root / f"{row.split}.h5", "r") as f:
            g = f[row.tile]
            label = g["outlines" if "outlines" in g else "groundtruth"][()]
            optical, dem = g["optical"][()], g["dem"][()]
            sar = g["sar"][()] if "sar" in g else None
            transform = tuple(g.attrs["transform"])
        np.testing.assert_array_equal(cube.mask_glacier, label == 1)
        np.testing.assert_array_equal(cube.mask_all, label == 1)
        np.testing.assert_array_equal(cube.mask_invalid, ~np.isfinite(optical).all(axis=-1))
        assert row.area_km2 == pytest.approx(label.sum() * RES ** 2 / 1e6)
        np.testing.assert_array_equal(cube.select(OPTICAL), np.moveaxis(optical, -1, 0))
        np.testing.assert_array_equal(cube.select(["dem", "slope"]), np.moveaxis(dem, -1, 0))
        assert tuple(cube.grid.transform)[:6] == pytest.approx(transform)
        assert cube.grid.crs.to_epsg() == 32632 and DOC_ATTRS <= set(cube.attrs)
        if sar is None:  # optional group missing: its bands left out, the tile reported
            assert cube.bands == OPTICAL + DEM and not row.has_sar
            assert row.missing_features == "sar coherence"
        else:
            assert cube.bands == OPTICAL + ["VV", "VH", "coh"] + DEM and row.has_sar
            np.testing.assert_array_equal(cube.select(["VV", "VH"]), np.moveaxis(sar, -1, 0))


def test_glavitu_tile_lacking_a_needed_feature_is_skipped_or_fails(glavitu_root, tmp_path):
    index, warned = _ingest_glavitu(glavitu_root, tmp_path / "cubes", ["optical_dem", "optical_sar_dem"])
    assert len(index) == 5 and "tile_b" not in set(index.tile)
    assert any("tile 'tile_b' lacks ['coherence', 'sar'] needed by sensor set(s) ['optical_sar_dem']: tile skipped"
               in w for w in warned), warned
    with pytest.raises(InputDataError) as err:
        _ingest_glavitu(glavitu_root, tmp_path / "c2", ["optical_sar_dem"], glavitu_on_missing_feature="error")
    assert err.value.path == str(glavitu_root / "test.h5")
    assert "tile 'tile_b' lacks ['coherence', 'sar']" in err.value.message
    assert not (tmp_path / "c2").exists()


def test_glavitu_tile_without_georeferencing_is_skipped(tmp_path):
    src = write_glavitu(tmp_path / "dataset")
    with h5py.File(src / "test.h5", "a") as f:
        write_glavitu_tile(f, "tile_c", np.random.default_rng(1), 6, crs=False)
        del f["tile_c"].attrs["transform"]
    index, warned = _ingest_glavitu(src, tmp_path / "cubes")
    assert len(index) == 6 and "tile_c" not in set(index.tile)
    assert any("tile 'tile_c' lacks ['georeferencing'] needed by sensor set(s) ['optical_dem']" in w
               for w in warned), warned


def test_glavitu_band_the_dataset_lacks_lists_what_it_has(glavitu_root, tmp_path):
    sensors = SensorsConfig(groups={"optical": OPTICAL + ["B8A"]}, sets={"optical": ["optical"]})
    with pytest.raises(InputDataError) as err:
        ingest_glavitu_hdf5(glavitu_root, tmp_path / "cubes", DataConfig(), sensors, ["optical"], progress=False)
    assert "lacks band(s) optical: ['B8A']" in err.value.message
    assert "it has ['B2', 'B3', 'B4', 'B8', 'B11', 'B12', 'dem', 'slope', 'VV', 'VH', 'coh', 'hillshade']" \
        in err.value.message
    # channel names are params: renamed channels are looked up by their new names
    cfg = DataConfig(glavitu_channels={"optical": ["b", "g", "r", "n", "s1", "s2"], "dem": ["z", "slope"]})
    sensors = SensorsConfig(groups={"optical": ["r", "g", "b"], "dem": ["z"]}, sets={"rgb": ["optical", "dem"]})
    index = ingest_glavitu_hdf5(glavitu_root, tmp_path / "c2", cfg, sensors, ["rgb"], progress=False)
    assert read_cube(tmp_path / "c2" / index.path[0]).bands == ["r", "g", "b", "z"]


# ------------------------------------------------------------------------ almost-right files
def _bad_dandb(root: Path, case: str) -> tuple[Path, str]:
    write_dandb(root)
    bad = root / "2023" / "g_0003.nc"
    if case == "missing_mask_band":
        write_dandb_glacier(bad, 3, np.random.default_rng(1), drop_band="CLOUD_MASK")
        return bad, "band_data lacks mask band(s) ['CLOUD_MASK']"
    write_dandb_glacier(bad, 3, np.random.default_rng(1), crs=False)
    return bad, "no CRS: band_data has no CF grid mapping"


def _bad_glavitu(root: Path, case: str) -> tuple[Path, str]:
    write_glavitu(root)
    bad = root / "test.h5"
    with h5py.File(bad, "a") as f:
        kw = {"channels_first": True} if case == "channels_first" else {"crs": False}
        write_glavitu_tile(f, "tile_c", np.random.default_rng(1), 6, **kw)
    if case == "channels_first":
        return bad, "tile 'tile_c': 'optical' is channels-first (6, 64, 64); expected channels-last (H, W, 6)"
    return bad, "tile 'tile_c': has transform but no crs attribute"


@pytest.mark.parametrize("fmt,case", [("dandb-netcdf", "missing_mask_band"), ("dandb-netcdf", "no_crs"),
                                      ("glavitu-hdf5", "channels_first"), ("glavitu-hdf5", "no_crs")])
def test_cli_names_the_file_and_the_problem(fmt, case, tmp_path, capsys, monkeypatch):
    src = tmp_path / "dataset"
    bad, problem = (_bad_dandb if fmt == "dandb-netcdf" else _bad_glavitu)(src, case)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"cubes_dir": str(tmp_path / "products" / "cubes")}}))
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main() replaces it
    code = cli.main(["--params", str(params), "-q", "ingest", "--format", fmt, "--raw", str(src)])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert lines[-1].startswith(f"error: {bad}: {problem}"), captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "products").exists() or list((tmp_path / "products").iterdir()) == []


def test_unknown_format_is_a_config_error(tmp_path):
    from glaciermap.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown dataset format 'geotiff'"):
        ingest_dataset("geotiff", tmp_path, tmp_path / "cubes", DataConfig(), SensorsConfig(), SETS)


# ------------------------------------------------- ingest -> folds -> one epoch -> inference
@pytest.mark.parametrize("fmt", ["dandb-netcdf", "glavitu-hdf5"])
def test_adapter_cubes_train_and_predict(fmt, dandb_root, glavitu_root, tmp_path, monkeypatch, capsys):
    from glaciermap.data.windows import prepare_cube
    from glaciermap.data.folds import make_folds, write_folds
    from glaciermap.data.windows import predict_cube
    from glaciermap.models.serialize import load_bundle
    from glaciermap.tracking.runs import RunSpec
    from glaciermap.training.run import train_run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw = deep_merge(raw, yaml.safe_load((ROOT / "experiments" / "tiny.yaml").read_text()))
    raw = deep_merge(raw, {
        "data": {"cubes_dir": str(tmp_path / "cubes")},
        "folds": {"k": 2, "path": str(tmp_path / "folds.json")},
        "train": {"folds": [0], "max_epochs": 1, "runs_dir": str(tmp_path / "runs")},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    })
    params_path = tmp_path / "params.yaml"
    params_path.write_text(yaml.safe_dump(raw))
    params = parse_params(raw)
    src = dandb_root if fmt == "dandb-netcdf" else glavitu_root
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    assert cli.main(["--params", str(params_path), "-q", "ingest", "--format", fmt, "--raw", str(src)]) == 0
    assert "cubes written to" in capsys.readouterr().out
    index = read_index(params.data.cubes_dir)
    folds = make_folds(index, params.data.cubes_dir, params.folds, progress=False)
    write_folds(params.folds.path, folds, params.folds)
    result = train_run(params, RunSpec("unet", "optical_dem", 0), progress=False,
                       run_dir=tmp_path / "run", metrics_dir=None)
    assert result["epochs"] >= 0 and (tmp_path / "run" / "model").is_dir()
    model, bundle = load_bundle(tmp_path / "run" / "model")
    test_id = folds[0].test[0]
    path = index[(index.glacier_id == test_id) & (index.role == "inventory")].path.iloc[0]
    cube = prepare_cube(params.data.cubes_dir / path, bundle.groups, bundle.stats)
    prob = predict_cube(model, cube, bundle.groups, size=params.patches.size, stride=params.patches.eval_stride)
    assert prob.shape == cube.target.shape and 0 <= prob.min() and prob.max() <= 1


# ------------------------------------------------- one index-row home for both cube writers (#14)
def test_raw_region_and_adapter_index_rows_agree_for_the_same_glacier(cubes_dir, cube_index, tmp_path):
    """A glacier ingested from a raw region, then written in the D&B layout from its own cube
    (same grid, same mask) and converted by the adapter, gets the same area and location in both
    indexes: area = mask pixels x pixel area, lon/lat = the mask centroid in EPSG:4326."""
    row = cube_index[cube_index.role == "inventory"].sort_values("area_km2").iloc[-1]
    cube = read_cube(cubes_dir / row.path)
    h, w = cube.mask_glacier.shape
    names = OPTICAL + MASK_BANDS
    stack = np.concatenate([cube.select(OPTICAL), np.ones((1, h, w)), cube.mask_invalid[None],
                            np.zeros((1, h, w))]).astype(np.float32)
    xs, ys = cube.grid.xy_coords()
    gm = {"grid_mapping": "spatial_ref"}
    ds = xr.Dataset({
        "band_data": (("band", "y", "x"), stack, {"long_name": names, **gm}),
        "mask_crt_g": (("y", "x"), cube.mask_glacier.astype(np.int8), gm),
        "mask_all_g_id": (("y", "x"), np.where(cube.mask_all == 1, 1, -1).astype(np.int32), gm),
        "dem": (("y", "x"), cube.select(["dem"])[0], gm),
        "spatial_ref": ((), np.int32(0), CRS.from_wkt(cube.grid.crs.to_wkt()).to_cf()),
    }, coords={"band": np.arange(1, len(names) + 1), "x": xs, "y": ys}, attrs={"year": float(row.year)})
    src = tmp_path / "dataset" / "inv" / f"{row.glacier_id}.nc"
    src.parent.mkdir(parents=True)
    ds.to_netcdf(src, engine="h5netcdf")
    index = ingest_dandb_netcdf(src.parents[1], tmp_path / "cubes", DataConfig(), SensorsConfig(), SETS,
                                progress=False)
    adapted = index.iloc[0]
    assert adapted.glacier_id == row.glacier_id
    expected_km2 = cube.mask_glacier.sum() * cube.grid.res ** 2 / 1e6
    for col in ("area_km2", "lon", "lat", "x", "y", "glacier_invalid_fraction", "height", "width"):
        assert adapted[col] == pytest.approx(row[col], rel=1e-12, abs=1e-12), col
    assert row.area_km2 == pytest.approx(expected_km2, rel=1e-12)
    assert read_cube(tmp_path / "cubes" / adapted.path).attrs["area_km2"] == pytest.approx(cube.attrs["area_km2"])


# ------------------------------------------------ GlaViTU as published (original code's layout)
PUB_H, PUB_W, PAD_H, PAD_W = 96, 128, 8, 16  # unpadded tile size and padding on every side


def write_published_glavitu_tile(f: h5py.File, name: str, i: int, rng: np.random.Generator) -> dict:
    """A tile as the original GlaViTU code reads it: zero-padded arrays, one-hot groundtruth (glacier
    last), SAR as co_pol_sar / cross_pol_sar / in_sar, thermal, a lon/lat box, region labels."""
    h, w = PUB_H + 2 * PAD_H, PUB_W + 2 * PAD_W
    inner = (slice(PAD_H, PAD_H + PUB_H), slice(PAD_W, PAD_W + PUB_W))

    def padded(c: int, fill) -> np.ndarray:
        a = np.zeros((h, w, c), np.float32)
        a[inner] = fill(c)
        return a

    g = f.create_group(name)
    g["optical"] = padded(6, lambda c: rng.uniform(0, 1, (PUB_H, PUB_W, c)))
    g["dem"] = padded(2, lambda c: np.stack([2500 + 4 * np.arange(PUB_H)[:, None] + np.zeros((PUB_H, PUB_W)),
                                             np.full((PUB_H, PUB_W), 20.0)], axis=-1))
    for ds, v in (("co_pol_sar", -11.0), ("cross_pol_sar", -17.0), ("in_sar", 0.4), ("thermal", 280.0)):
        g[ds] = padded(1, lambda c, v=v: np.full((PUB_H, PUB_W, c), v))
    glacier = _blob(PUB_H, PUB_W, 50, 60 + i, 30, 40)
    onehot = np.zeros((h, w, 2), np.uint8)  # the padding belongs to neither class
    onehot[inner] = np.stack([~glacier, glacier], axis=-1)
    g["groundtruth"] = onehot
    lon0, lat0 = 10.0 + 0.05 * i, 46.5
    box = {"xmin": lon0, "xmax": lon0 + PUB_W * 10 / 76_630, "ymin": lat0, "ymax": lat0 + PUB_H * 10 / 111_200}
    g.attrs.update(padding_height=PAD_H, padding_width=PAD_W, original_height=PUB_H, original_width=PUB_W,
                   region="ALP", subregion=f"ALP-{i % 2}", **box)
    return {"glacier_px": int(glacier.sum()), **box}


def write_published_glavitu(root: Path) -> dict[str, dict]:
    rng = np.random.default_rng(3)
    root.mkdir(parents=True, exist_ok=True)
    tiles = {}
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        with h5py.File(root / f"{split}_ps384_igarss23.hdf5", "w") as f:
            for j in range(n):
                i = len(tiles)
                tiles[f"{split}_ps384_igarss23-tile{i}"] = write_published_glavitu_tile(f, f"tile{i}", i, rng)
    return tiles


def test_glavitu_published_layout_is_read_as_it_is(tmp_path):
    from glaciermap.config import FoldsConfig
    from glaciermap.data.folds import make_folds

    tiles = write_published_glavitu(tmp_path / "dataset")
    out = tmp_path / "cubes"
    index, warned = _ingest_glavitu(tmp_path / "dataset", out, ["optical_sar_dem"])
    assert sorted(index.glacier_id) == sorted(tiles)
    # the published split, and the region labels the original scores by, reach the index
    assert dict(zip(index.glacier_id, index.split)) == {g: g.split("_")[0] for g in tiles}
    assert set(index.region) == {"ALP"} and set(index.subregion) == {"ALP-0", "ALP-1"}
    # SAR under its published names: no tile lacks anything; thermal is named as ignored
    assert (index.missing_features.fillna("") == "").all() and index.has_sar.all()
    assert any("not named in data.glavitu_channels ignored: thermal (4 tile(s))" in w for w in warned), warned
    for _, row in index.iterrows():
        t = tiles[row.glacier_id]
        cube = read_cube(out / row.path)
        # lon/lat box -> local UTM (zone 32 at 10 E), square pixels of about the tile's 10 m
        assert cube.grid.crs.to_epsg() == 32632 and cube.grid.res == pytest.approx(10, rel=0.1)
        # padding cropped: about PUB_H x PUB_W pixels of 10 m (not the padded size), all of them valid
        assert cube.grid.height * cube.grid.width * cube.grid.res ** 2 == pytest.approx(PUB_H * PUB_W * 100,
                                                                                          rel=0.1)
        assert row.glacier_invalid_fraction == 0 and row.invalid_fraction < 0.05
        assert row.area_km2 == pytest.approx(t["glacier_px"] * 100 / 1e6, rel=0.05)
        assert t["xmin"] < row.lon < t["xmax"] and t["ymin"] < row.lat < t["ymax"]
        valid = cube.mask_invalid == 0
        for band, v in (("VV", -11.0), ("VH", -17.0), ("coh", 0.4)):
            assert cube.select([band])[0][valid] == pytest.approx(v, rel=1e-6), band
    # folds.method: published trains on train, validates on val, tests on test
    fold, = make_folds(read_index(out), out, FoldsConfig(method="published", min_train_area_km2=0), progress=False)
    assert (fold.train, fold.val, fold.test) == (
        [g for g in sorted(tiles) if g.startswith("train")], [g for g in tiles if g.startswith("val")],
        [g for g in tiles if g.startswith("test")])
    # thermal is kept when configured and used by a sensor group
    channels = {**DataConfig().glavitu_channels, "thermal": ["TIR"]}
    sensors = SensorsConfig(groups={"optical": OPTICAL, "thermal": ["TIR"]}, sets={"ot": ["optical", "thermal"]})
    index2 = ingest_glavitu_hdf5(tmp_path / "dataset", tmp_path / "c2", DataConfig(glavitu_channels=channels),
                                 sensors, ["ot"], progress=False)
    cube = read_cube(tmp_path / "c2" / index2.path[0])
    assert cube.bands == OPTICAL + ["TIR"]
    assert cube.select(["TIR"])[0][cube.mask_invalid == 0] == pytest.approx(280.0)


def test_glavitu_project_variant_with_padding_crops_it(tmp_path):
    """Padding attributes also apply to tiles georeferenced by crs + transform (the transform is
    the padded array's): the cube starts at the first unpadded pixel."""
    src = write_glavitu(tmp_path / "dataset")
    with h5py.File(src / "test.h5", "a") as f:
        f["tile_a"].attrs.update(padding_height=4, padding_width=2)
        transform = tuple(f["tile_a"].attrs["transform"])
    index, _ = _ingest_glavitu(src, tmp_path / "cubes")
    cube = read_cube(tmp_path / "cubes" / index[index.tile == "tile_a"].path.iloc[0])
    assert (cube.grid.height, cube.grid.width) == (64 - 8, 64 - 4)
    assert cube.grid.transform.c == pytest.approx(transform[2] + 2 * RES)
    assert cube.grid.transform.f == pytest.approx(transform[5] - 4 * RES)


# --------------------------------------------- D&B as published: <epoch>/<rgi_id>/<glacier_nr>/<file>.nc
def test_dandb_published_nested_layout_is_read_as_it_is(dandb_root, tmp_path):
    """The published tree holds each glacier in <epoch>/<rgi_id>/<glacier_nr>/; two glaciers of one
    RGI outline share a group. Cubes equal those of the flattened layout, file for file."""
    rgi = {g: f"RGI60-11.{1000 + g // 2:05d}" for g in range(N_GLACIERS)}  # glaciers two by two
    rng = np.random.default_rng(0)
    for e in EPOCHS:  # the same files as `dandb_root`, written into the published tree
        for g in range(N_GLACIERS):
            write_dandb_glacier(tmp_path / "published" / e / rgi[g] / str(g % 2) / f"{rgi[g]}_{e}.nc", g, rng,
                                year=float(e) + 0.6 if e == "2015" else None)
    index = ingest_dandb_netcdf(tmp_path / "published", tmp_path / "cubes", DataConfig(), SensorsConfig(), SETS,
                                progress=False)
    expected = {f"{rgi[g]}_{g % 2}": rgi[g] for g in range(N_GLACIERS)}
    assert len(index) == N_GLACIERS * len(EPOCHS)
    assert dict(zip(index.glacier_id, index.group)) == expected
    assert dict(zip(read_index(tmp_path / "cubes").glacier_id, read_index(tmp_path / "cubes").group)) == expected
    flat = ingest_dandb_netcdf(dandb_root, tmp_path / "flat", DataConfig(), SensorsConfig(), SETS, progress=False)
    name = {f"g_{g:04d}": f"{rgi[g]}_{g % 2}" for g in range(N_GLACIERS)}
    flat = flat.assign(glacier_id=flat.glacier_id.map(name)).set_index(["glacier_id", "epoch"])
    nested = index.set_index(["glacier_id", "epoch"]).loc[flat.index]
    for col in ("role", "year", "area_km2", "lon", "lat", "invalid_fraction"):
        assert nested[col].tolist() == flat[col].tolist(), col
    a = read_cube(tmp_path / "cubes" / nested.path.iloc[0])
    b = read_cube(tmp_path / "flat" / flat.path.iloc[0])
    np.testing.assert_array_equal(a.data, b.data)
    # a second file in one glacier folder is ambiguous
    extra = tmp_path / "published" / "2023" / rgi[0] / "0" / "other.nc"
    write_dandb_glacier(extra, 0, rng)
    with pytest.raises(InputDataError, match=r"two files for glacier 'RGI60-11.01000_0'"):
        ingest_dandb_netcdf(tmp_path / "published", tmp_path / "c3", DataConfig(), SensorsConfig(), SETS,
                            progress=False)
