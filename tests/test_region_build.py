"""`glaciermap region build`: standard products (Sentinel-2 L2A SAFE / zip / STAC COGs, HyP3 RTC and
coherence, Copernicus DEM tiles, RGI outlines) -> raw region, checked against hand-computed values,
then ingested; bad products give one-line errors naming the file and write nothing."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import yaml
from pyproj import Transformer
from rasterio.transform import from_origin

import products_fixtures as pf
from glaciermap.config import DataConfig, Params, SensorsConfig
from glaciermap.data.cubes import read_cube, read_index
from glaciermap.data.ingest import ingest_region
from glaciermap.data.products import RegionBuildConfig
from glaciermap.data.products import cli as rb_cli
from glaciermap.data.products.build import build_region
from glaciermap.data.products.outlines import read_outlines
from glaciermap.data.products.sentinel2 import open_s2
from glaciermap.data.raw import open_region
from glaciermap.errors import ConfigError, InputDataError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-alps"
BANDS = {"B2": "B02", "B3": "B03", "B4": "B04", "B8": "B08", "B11": "B11", "B12": "B12"}
#: the SCL -> cloud.tif mapping as the issue states it (unlisted classes, snow / ice 11 among them: clear)
SCL_CODES = {8: 1, 9: 1, 10: 1, 3: 2, 0: 255, 1: 255}


# ----------------------------------------------------------------------------------- helpers
def _to10(a: np.ndarray) -> np.ndarray:
    """A 20 m array on the 10 m grid: each pixel becomes 2 x 2 (nearest neighbour)."""
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)


def _expected_reflectance(p: pf.Safe, band: str) -> np.ndarray:
    dn = p.dn[band] if band in pf.OPTICAL_10 else _to10(p.dn[band])
    out = (dn.astype(np.float64) + p.offset) / 10000.0
    out[dn == 0] = np.nan
    return out


def _expected_cloud(p: pf.Safe) -> np.ndarray:
    scl = _to10(p.scl)
    cloud = np.zeros_like(scl)
    for k, v in SCL_CODES.items():
        cloud[scl == k] = v
    nodata = np.zeros(scl.shape, bool)
    for band in BANDS.values():
        nodata |= (p.dn[band] if band in pf.OPTICAL_10 else _to10(p.dn[band])) == 0
    cloud[nodata] = 255
    return cloud


def _read(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile, tuple]:
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds.descriptions


def _scene_of(region: Path, product: Path) -> str:
    scenes = json.loads((region / "build.json").read_text())["scenes"]
    return next(name for name, s in scenes.items() if s["sentinel2"] == str(product))


def _assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.tmp-*"))


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def products(tmp_path_factory):
    """Three Sentinel-2 L2A acquisitions (baseline 05.09 SAFE, 02.04 zipped SAFE, STAC COGs), RTC in
    power, a coherence pair, two DEM tiles and RGI 7 outlines dated 2016."""
    root = tmp_path_factory.mktemp("products")
    safe23 = pf.make_safe(root, date="20230825", baseline="0509", seed=0)
    zip16 = pf.make_safe(root, date="20160828", baseline="0204", seed=1, zip_it=True)
    stac23 = pf.make_stac(root, date="2023-08-30")
    rtc = pf.make_rtc(root / "s1", "20230822", scale="p")
    coh = pf.make_coherence(root / "s1", "20230813", "20230825")
    tiles = pf.make_dem_tiles(root / "dem")
    pf.make_outlines(root / "rgi7" / "rgi7.shp", kind="rgi7")
    return {"root": root, "safe23": safe23, "zip16": zip16, "stac23": stac23, "rtc": rtc, "coh": coh,
            "tiles": tiles, "outlines": root / "rgi7" / "rgi7.shp"}


@pytest.fixture(scope="module")
def region(products):
    """The region of `products`; DEM at 20 m (finer than the tiles' ~21 x 31 m pixels, so bilinear
    resampling interpolates between 2 x 2 pixels; downsampling widens GDAL's kernel)."""
    out = products["root"] / "region"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = build_region([products["safe23"].path, products["zip16"].path, products["stac23"].path],
                              products["outlines"], out, RegionBuildConfig(dem_resolution_m=20.0),
                              s1=[products["root"] / "s1"], dem=products["tiles"])
    return out, result


# -------------------------------------------------------------------------------------- tests
def test_optical_reflectance_grid_and_band_names(products, region):
    out, _ = region
    for key in ("safe23", "zip16", "stac23"):
        p = products[key]
        data, profile, desc = _read(out / "scenes" / _scene_of(out, p.path) / "optical.tif")
        assert desc == tuple(BANDS)
        assert profile["dtype"] == "float32" and profile["crs"].to_epsg() == 32632
        assert profile["transform"] == from_origin(pf.X0, pf.Y0, 10, 10)
        assert data.shape == (6, pf.N10, pf.N10)
        for i, band in enumerate(BANDS.values()):
            np.testing.assert_allclose(data[i], _expected_reflectance(p, band), rtol=0, atol=1e-6,
                                       err_msg=f"{key} {band}")
    # baseline 05.09 subtracts 1000 DN, 02.04 nothing, the STAC item says the archive already did
    assert (products["safe23"].offset, products["zip16"].offset, products["stac23"].offset) == (-1000, 0, 0)


def test_cloud_mask_from_scene_classification(products, region):
    out, _ = region
    for key in ("safe23", "zip16", "stac23"):
        p = products[key]
        cloud, profile, _ = _read(out / "scenes" / _scene_of(out, p.path) / "cloud.tif")
        expected = _expected_cloud(p)
        np.testing.assert_array_equal(cloud[0], expected, err_msg=key)
        assert profile["dtype"] == "uint8" and profile["nodata"] == 255
        snow = (_to10(p.scl) == 11) & (expected != 255)
        assert snow.any() and (cloud[0][snow] == 0).all()  # snow and ice stay clear


def test_region_yaml_epochs_alternates_and_outlines(products, region):
    out, result = region
    m = yaml.safe_load((out / "region.yaml").read_text())
    assert (m["id_column"], m["date_column"]) == ("rgi_id", "src_date")
    assert m["inventory_epochs"] == ["2016"]  # the outlines are dated 2016-08-01
    assert m["dem"] == "dem.tif" and m["outlines"] == "outlines.gpkg"
    assert list(m["epochs"]) == ["2016", "2023"]
    assert str(m["epochs"]["2016"]["date"]) == products["zip16"].date
    # season mode: the 2023 products are one epoch; its main scene is the one least masked
    masked = {k: np.mean(_expected_cloud(products[k]) != 0) for k in ("safe23", "stac23")}
    main, alt = sorted(masked, key=masked.get)
    assert str(m["epochs"]["2023"]["date"]) == products[main].date
    assert {k: str(v) for k, v in m["epochs"]["2023"]["alternates"].items()} == {"2023-alt1": products[alt].date}
    assert _scene_of(out, products[main].path) == "2023"
    raw = open_region(out)
    assert set(raw.scenes) == {"2016", "2023", "2023-alt1"}
    gdf = gpd.read_file(out / "outlines.gpkg")
    assert sorted(gdf.rgi_id) == ["RGI2000-v7.0-G-11-03113", "RGI2000-v7.0-G-11-03114"]
    assert result.n_outlines == 2 and result.epochs == {"2016": ["2016"], "2023": ["2023", "2023-alt1"]}


def test_sar_db_and_coherence_matched_by_date(products, region):
    out, _ = region
    assert not (out / "scenes" / "2016" / "sar.tif").exists()  # no Sentinel-1 within 12 days of 2016
    data, profile, desc = _read(out / "scenes" / "2023" / "sar.tif")
    assert desc == ("VV", "VH", "coh")
    assert profile["transform"] == from_origin(pf.X0, pf.Y0, 20, 20)
    for i, pol in enumerate(("VV", "VH")):
        power = products["rtc"][pol].astype(np.float64)
        expected = np.where(power > 0, 10 * np.log10(np.where(power > 0, power, 1)), np.nan)
        np.testing.assert_allclose(data[i], expected, atol=1e-4)
    np.testing.assert_allclose(data[2], products["coh"], atol=1e-6)


def test_dem_mosaic_of_two_tiles_with_void(products, region):
    out, _ = region
    with rasterio.open(out / "dem.tif") as ds:
        dem, t = ds.read(1), ds.transform
        assert ds.res == (20.0, 20.0) and ds.dtypes[0] == "float32" and ds.crs.to_epsg() == 32632
    rows, cols = np.mgrid[: dem.shape[0], : dem.shape[1]]
    x, y = t.c + (cols + 0.5) * t.a, t.f + (rows + 0.5) * t.e
    lon, lat = Transformer.from_crs(pf.CRS, "EPSG:4326", always_xy=True).transform(x, y)
    expected = pf.dem_plane(lon, lat)
    near_void = np.hypot(x - pf.VOID_XY[0], y - pf.VOID_XY[1]) < 150
    # bilinear resampling of a plane is the plane: both tiles, and across their seam
    np.testing.assert_allclose(dem[~near_void], expected[~near_void], atol=0.05)
    r, c = int((t.f - pf.VOID_XY[1]) // 20), int((pf.VOID_XY[0] - t.c) // 20)
    assert np.isnan(dem[r, c])  # the void stays no data


def test_ingest_runs_on_the_built_region(products, region, tmp_path):
    out, _ = region
    cubes = tmp_path / "cubes"
    ingest_region(out, cubes, DataConfig(resolution_m=10.0, buffer_m=100.0), SensorsConfig(), progress=False)
    index = read_index(cubes)
    assert sorted(index.glacier_id.unique()) == ["RGI2000-v7.0-G-11-03113", "RGI2000-v7.0-G-11-03114"]
    assert set(index.epoch) == {"2016", "2023"}
    assert set(index[index.epoch == "2023"].has_sar) == {True}
    cube = read_cube(cubes / index[index.epoch == "2023"].path.iloc[0])
    assert {"B2", "B12", "VV", "coh", "dem"} <= set(cube.bands)


def test_epochs_by_date_rgi6_and_amplitude(products, tmp_path):
    root = tmp_path
    amp = pf.make_rtc(root / "s1", "20230828", scale="a", seed=4)
    pf.make_outlines(root / "rgi6.shp", kind="rgi6", dates=("2023-08-01", "2023-08-01"))
    cfg = RegionBuildConfig(epochs_by="date", sar_window_days=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coherence bands absent: NaN with a warning
        build_region([products["safe23"].path, products["stac23"].path], root / "rgi6.shp", root / "out", cfg,
                     s1=sorted((root / "s1").glob("*.tif")))
    m = yaml.safe_load((root / "out" / "region.yaml").read_text())
    assert (m["id_column"], m["date_column"]) == ("RGIId", "BgnDate")
    assert list(m["epochs"]) == ["2023-08-25", "2023-08-30"]
    assert all("alternates" not in e for e in m["epochs"].values())
    assert m["dem"] is None and m["inventory_epochs"] == ["2023-08-25"]  # BgnDate 20230899 -> mid-August
    # 2023-08-28 is within 3 days of both; amplitude: dB = 20 log10(a)
    for scene in m["epochs"]:
        data, _, _ = _read(root / "out" / "scenes" / scene / "sar.tif")
        a = amp["VV"].astype(np.float64)
        np.testing.assert_allclose(data[0], np.where(a > 0, 20 * np.log10(np.where(a > 0, a, 1)), np.nan),
                                   atol=1e-4)
        assert np.isnan(data[2]).all()
    open_region(root / "out")


def test_stac_offset_rules(tmp_path):
    """Offset applied by the archive -> 0; else raster:bands offset / scale; else from the baseline."""
    applied = open_s2(pf.make_stac(tmp_path / "a", offset_applied=True).path)
    not_applied = open_s2(pf.make_stac(tmp_path / "b", offset_applied=False).path)
    bare = open_s2(pf.make_stac(tmp_path / "c", offset_applied=None, raster_offset=None).path)
    assert set(applied.offset.values()) == {0.0}
    assert set(not_applied.offset.values()) == {-1000.0}
    assert set(bare.offset.values()) == {-1000.0}  # baseline 05.09 without scale metadata
    assert applied.quantification == not_applied.quantification == 10000.0


def test_cli_with_config_file(products, tmp_path, capsys):
    cfg = tmp_path / "rb.yaml"
    cfg.write_text(yaml.safe_dump({"region_build": {"scl_to_cloud": {0: 255, 1: 255, 2: 2, 3: 2, 9: 1},
                                                    "name": "tiny"}}))
    parser = argparse.ArgumentParser()
    rb_cli.configure(parser)
    out = tmp_path / "out"
    args = parser.parse_args(["--s2", str(products["safe23"].path), "--outlines", str(products["outlines"]),
                              "--dem", str(products["tiles"][0].parent), "--out", str(out), "--config", str(cfg)])
    rb_cli.run(args, Params())
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"region written to {out}") and "\n" not in line
    assert yaml.safe_load((out / "region.yaml").read_text())["name"] == "tiny"
    cloud = _read(out / "scenes" / "2023" / "cloud.tif")[0][0]
    scl, valid = _to10(products["safe23"].scl), _expected_cloud(products["safe23"]) != 255
    assert (cloud[(scl == 2) & valid] == 2).all() and (cloud[(scl == 8) & valid] == 0).all()
    cfg.write_text(yaml.safe_dump({"region_build": {"scl_to_clouds": {}}}))
    with pytest.raises(ConfigError, match="scl_to_clouds"):
        rb_cli.run(parser.parse_args(["--s2", "x", "--outlines", "y", "--config", str(cfg)]), Params())


# ------------------------------------------------------------------------------------- errors
# each returns (the product to give, the file the error must name)
def _l1c(root: Path) -> tuple[Path, Path]:
    p = pf.make_safe(root, level="L1C").path
    return p, p


def _corrupt(root: Path) -> tuple[Path, Path]:
    p = pf.make_safe(root).path
    bad = next(p.rglob("*_B03_10m.jp2"))
    bad.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"garbage" * 50)
    return p, bad


def _truncated(root: Path) -> tuple[Path, Path]:
    p = pf.make_safe(root).path
    bad = next(p.rglob("*_B04_10m.jp2"))
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return p, bad


def _other_crs(root: Path) -> tuple[Path, Path]:
    p = pf.make_safe(root, date="20230830", crs="EPSG:32633", origin=(180_000.0, 5_195_000.0)).path
    return p, p


def _far_away(root: Path) -> tuple[Path, Path]:
    p = pf.make_safe(root, date="20230830", origin=(pf.X0 + 50_000, pf.Y0)).path
    return p, p


@pytest.mark.parametrize("make_bad, problem", [
    (_l1c, "Level-1C"), (_corrupt, "cannot read raster"), (_truncated, "cannot read raster"),
    (_other_crs, "EPSG:32633"), (_far_away, "does not overlap any outline"),
], ids=["l1c", "corrupt-jp2", "truncated-jp2", "crs-mismatch", "no-overlap"])
def test_bad_products_name_the_file_and_write_nothing(products, tmp_path, make_bad, problem):
    product, named = make_bad(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(InputDataError) as err:  # the good product first: the bad one is its odd neighbour
        build_region([products["safe23"].path, product], products["outlines"], out,
                     s1=[products["root"] / "s1"], dem=products["tiles"])
    msg = err.value.message
    assert str(named) in msg and problem in msg and "\n" not in msg, msg
    _assert_nothing_written(out)


def test_bad_dem_tile_and_s1_name_the_file(products, tmp_path):
    other = tmp_path / "Copernicus_DSM_COG_10_N46_00_E012_00_DEM.tif"
    pf.write_tif(other, [np.ones((5, 5), np.float32)], 30.0)  # UTM, the other tiles are EPSG:4326
    out = tmp_path / "out"
    with pytest.raises(InputDataError, match="share one CRS") as err:
        build_region([products["safe23"].path], products["outlines"], out, dem=[*products["tiles"], other])
    assert str(other) in err.value.message
    odd = tmp_path / "S1A_scene_VV.tif"
    pf.write_tif(odd, [np.ones((5, 5), np.float32)], 20.0)
    with pytest.raises(InputDataError, match="HyP3") as err:
        build_region([products["safe23"].path], products["outlines"], out, s1=[odd])
    assert str(odd) in err.value.message
    _assert_nothing_written(out)


def test_output_folder_that_is_not_a_region_is_never_replaced(products, tmp_path):
    keep = tmp_path / "downloads"
    (keep / "notes.txt").parent.mkdir()
    (keep / "notes.txt").write_text("mine")
    with pytest.raises(InputDataError, match="not a raw region"):
        build_region([products["safe23"].path], products["outlines"], keep)
    assert (keep / "notes.txt").read_text() == "mine"
    region = tmp_path / "old-region"  # a region holding the outlines to build from
    region.mkdir()
    (region / "region.yaml").write_text("name: old\n")
    for f in products["outlines"].parent.iterdir():
        (region / f.name).write_bytes(f.read_bytes())
    with pytest.raises(InputDataError, match="inside the output folder"):
        build_region([products["safe23"].path], region / products["outlines"].name, region)
    assert (region / "region.yaml").read_text() == "name: old\n"


@pytest.mark.skipif(not REAL.exists(), reason="real RGI files not present")
def test_real_rgi_columns_found_by_name():
    for name, cols in [("rgi7g_hef_complex.shp", ("rgi_id", "src_date")),
                       ("Hintereisferner_RGI6.shp", ("RGIId", "BgnDate"))]:
        gdf, idc, datec = read_outlines(REAL / name, None, None)
        assert (idc, datec) == cols and len(gdf) > 0


def test_region_build_is_a_glaciermap_command(products, tmp_path, capsys):
    """`glaciermap region build` reaches the builder; a bad input is one line and exit 2."""
    from glaciermap import cli

    params = tmp_path / "params.yaml"
    params.write_text("{}\n")
    out = tmp_path / "region"
    base = ["--params", str(params), "-q", "region", "build", "--outlines", str(products["outlines"]),
            "--dem", str(products["tiles"][0].parent), "--out", str(out)]
    assert cli.main([*base, "--s2", str(products["safe23"].path)]) == 0
    assert (out / "region.yaml").exists()
    capsys.readouterr()
    assert cli.main([*base[:-1], str(tmp_path / "other"), "--s2", str(tmp_path / "missing.SAFE")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "missing.SAFE" in err[0]
    assert not (tmp_path / "other").exists()
