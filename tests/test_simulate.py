"""Scene simulator: format, truth consistency, retreat, spectra, determinism, real inputs, errors."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml
from pydantic import ValidationError
import rasterio.warp
from rasterio import features
from rasterio.enums import Resampling
from rasterio.transform import Affine
from scipy import ndimage

from glaciermap.data.simulate import SimulateConfig, simulate_region
from glaciermap.data.simulate.surface import (DEBRIS, FIRN, FOREFIELD, GLACIER_CLASSES, ICE, LIA_REACH_M, ROCK,
                                              lia_forefield)
from glaciermap.errors import InputDataError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-alps"
OPTICAL = ["B2", "B3", "B4", "B8", "B11", "B12"]


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> tuple[Path, SimulateConfig]:
    cfg = SimulateConfig(seed=7, width_km=6.0, height_km=4.0, n_glaciers=14, cloud_cover=0.15)
    out = simulate_region(cfg, tmp_path_factory.mktemp("sim") / "raw", progress=False)
    return out, cfg


def _read(path: Path, band: int | None = None) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(band) if band else ds.read()


def _decimal_year(d: dt.date) -> float:
    start = dt.date(d.year, 1, 1)
    return d.year + (d - start).days / (dt.date(d.year + 1, 1, 1) - start).days


# ------------------------------------------------------------------------------------ format
def test_layout_manifest_and_rasters(region):
    root, cfg = region
    manifest = yaml.safe_load((root / "region.yaml").read_text())
    assert manifest["id_column"] == "glacier_id" and manifest["date_column"] == "date"
    assert manifest["inventory_epochs"] == ["2015", "2016"]
    assert list(manifest["epochs"]) == ["2015", "2016", "2023"]
    for name, info in manifest["epochs"].items():
        assert isinstance(info["date"], dt.date) and info["date"].year == int(name)
        assert info["date"].month in (8, 9)  # late summer
    with rasterio.open(root / "dem.tif") as ds:
        assert ds.crs.to_epsg() == 32632 and ds.res == (30.0, 30.0) and ds.count == 1
        assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        dem = ds.read(1)
        assert 1400 < np.nanmin(dem) and np.nanmax(dem) < 3900 and np.isfinite(dem).all()
    for epoch in manifest["epochs"]:
        scene = root / "scenes" / epoch
        with rasterio.open(scene / "optical.tif") as ds:
            assert list(ds.descriptions) == OPTICAL
            assert ds.res == (10.0, 10.0) and ds.crs.to_epsg() == 32632
            assert ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
            assert ds.profile["tiled"] and ds.profile["compress"] == "deflate"
            assert (ds.width, ds.height) == (600, 400)
            opt_bounds = ds.bounds
        with rasterio.open(scene / "cloud.tif") as ds:
            assert ds.dtypes[0] == "uint8" and ds.nodata == 255
            assert set(np.unique(ds.read(1))) <= {0, 1, 2}
        with rasterio.open(scene / "sar.tif") as ds:
            assert list(ds.descriptions) == ["VV", "VH", "coh"] and ds.res == (20.0, 20.0)
            assert ds.bounds == opt_bounds
            sar = ds.read()
            assert 0.0 < np.isnan(sar[0]).mean() < 0.3  # some layover / radar shadow
            assert np.nanmin(sar[2]) >= 0 and np.nanmax(sar[2]) <= 1


def test_inventory_outlines_like_rgi(region):
    root, _ = region
    inv = gpd.read_file(root / "outlines.gpkg")
    assert inv.crs.to_epsg() == 4326
    assert {"glacier_id", "date", "area_km2"} <= set(inv.columns)
    assert inv["glacier_id"].str.fullmatch(r"G\d{4}").all() and inv["glacier_id"].is_unique
    dates = pd.to_datetime(inv["date"], format="%Y-%m-%d")
    assert set(dates.dt.year) <= {2015, 2016}
    assert len(inv) >= 5 and (inv.area_km2 < 0.1).sum() >= 2  # a few small ones
    utm = inv.to_crs(32632)
    assert np.allclose(utm.area / 1e6, inv["area_km2"], rtol=1e-4, atol=1e-6)
    # no two glaciers overlap (sharing a border is fine)
    for a, b in itertools.combinations(utm.geometry, 2):
        assert a.intersection(b).area < 1.0


# ------------------------------------------------------------------------------------- truth
def test_truth_areas_match_rasterised_outlines(region):
    root, _ = region
    areas = pd.read_csv(root / "truth" / "areas.csv", dtype={"epoch": str})
    assert list(areas.columns) == ["glacier_id", "epoch", "year", "area_km2"]
    with rasterio.open(root / "scenes" / "2015" / "optical.tif") as ds:
        transform, shape, res = ds.transform, (ds.height, ds.width), ds.res[0]
    for epoch in ("2015", "2016", "2023"):
        truth = gpd.read_file(root / "truth" / f"outlines_{epoch}.gpkg")
        assert truth.crs.to_epsg() == 32632
        ref = areas[areas.epoch == epoch].set_index("glacier_id")["area_km2"]
        for gid, geom in zip(truth.glacier_id, truth.geometry):
            n_px = features.rasterize([(geom, 1)], out_shape=shape, transform=transform).sum()
            tol_km2 = geom.length * res / 1e6  # one pixel row along the perimeter
            assert abs(n_px * res * res / 1e6 - ref[gid]) <= tol_km2, (epoch, gid)
            assert ref[gid] == pytest.approx(geom.area / 1e6, rel=1e-6)
        # the surface classes of the scene are exactly the rasterised truth
        cls = _read(root / "truth" / f"surface_{epoch}.tif", 1)
        union = features.rasterize([(g, 1) for g in truth.geometry], out_shape=shape, transform=transform)
        assert np.array_equal(np.isin(cls, GLACIER_CLASSES), union.astype(bool))


def _fraction_on(mask: np.ndarray, src: rasterio.io.DatasetReader, dst: rasterio.io.DatasetReader) -> np.ndarray:
    """Fraction of each `dst` pixel covered by `mask` (a bool array on `src`'s grid)."""
    out = np.full(dst.shape, np.nan, np.float32)
    rasterio.warp.reproject(mask.astype(np.float32), out, src_transform=src.transform, src_crs=src.crs,
                            dst_transform=dst.transform, dst_crs=dst.crs, resampling=Resampling.average)
    return out


def test_dhdt_sign_units_and_voids(region):
    """dhdt.tif (docs/data-format.md): m/yr, negative = thinning, most on low and debris-covered
    tongues, ~0 on stable ground, with noise and some voids (NaN), at 100 m over the scene."""
    root, cfg = region
    manifest = yaml.safe_load((root / "region.yaml").read_text())
    assert manifest["dhdt"] == "dhdt.tif" and manifest["dhdt_period"] == [2000, 2015]
    with rasterio.open(root / "dhdt.tif") as ds, rasterio.open(root / "truth" / "surface_2015.tif") as surf, \
            rasterio.open(root / "dem.tif") as dem_ds:
        assert list(ds.descriptions) == ["dhdt"] and ds.units == ("m/yr",) and ds.res == (100.0, 100.0)
        assert ds.crs == dem_ds.crs and ds.dtypes[0] == "float32" and np.isnan(ds.nodata)
        tags = ds.tags(1)
        assert tags["units"] == "m/yr" and tags["sign"].startswith("negative = surface lowering")
        assert (tags["start_year"], tags["end_year"]) == ("2000", "2015")
        dhdt = ds.read(1)
        cls = surf.read(1)
        ice = _fraction_on(np.isin(cls, GLACIER_CLASSES), surf, ds)
        debris = _fraction_on(cls == DEBRIS, surf, ds)
        z = np.full(ds.shape, np.nan, np.float32)
        rasterio.warp.reproject(rasterio.band(dem_ds, 1), z, dst_transform=ds.transform, dst_crs=ds.crs,
                                resampling=Resampling.average)
    assert 0.02 < np.isnan(dhdt).mean() < 0.25  # voids, as published products have
    stable, glacier = ice < 0.01, ice > 0.9
    assert abs(np.nanmean(dhdt[stable])) < 0.3 and np.nanmean(np.abs(dhdt[stable])) < 0.6
    assert np.nanstd(dhdt[stable]) > 0.1  # noisy, not a clean mask
    low, high = np.nanpercentile(z[glacier], [25, 75])
    tongues, upper = np.nanmean(dhdt[glacier & (z < low)]), np.nanmean(dhdt[glacier & (z > high)])
    assert tongues < -1.5 and tongues < upper - 1.0 and upper < 0.0
    assert (debris > 0.5).sum() >= 10 and np.nanmean(dhdt[debris > 0.5]) < np.nanmean(dhdt[glacier]) - 1.0


def test_retreat(region):
    root, cfg = region
    areas = pd.read_csv(root / "truth" / "areas.csv", dtype={"epoch": str})
    inv = gpd.read_file(root / "outlines.gpkg")
    manifest = yaml.safe_load((root / "region.yaml").read_text())
    year = {e: _decimal_year(v["date"]) for e, v in manifest["epochs"].items()}
    inv_epoch = inv.set_index("glacier_id")["date"].str[:4]
    a = areas.pivot(index="glacier_id", columns="epoch", values="area_km2")
    a_inv = np.array([a.loc[g, inv_epoch[g]] for g in a.index])
    a_rec = a["2023"].to_numpy()
    dt_y = np.array([year["2023"] - year[inv_epoch[g]] for g in a.index])
    assert np.allclose(a_inv, inv.set_index("glacier_id").loc[a.index, "area_km2"], rtol=1e-5)
    assert (a_rec <= a_inv + 1e-12).all() and (a["2016"] <= a["2015"] + 1e-12).all()
    assert (a_rec < a_inv).sum() >= 0.8 * len(a_inv)
    # small glaciers lose a larger fraction on average
    lost = 1 - a_rec / a_inv
    small = a_inv < np.median(a_inv)
    assert lost[small].mean() > lost[~small].mean()
    # regional rate close to the configured one
    rate = 100 * (a_rec - a_inv).sum() / (a_inv * dt_y).sum()
    assert rate == pytest.approx(cfg.regional_rate_pct_per_yr, rel=0.15)
    # tiny glaciers can vanish: they are then absent from the recent truth outlines
    assert (a_inv < 0.05).any() and (a_rec == 0).sum() >= 1
    recent = gpd.read_file(root / "truth" / "outlines_2023.gpkg")
    assert set(recent.glacier_id) == set(a.index[a_rec > 0])
    rates = pd.read_csv(root / "truth" / "rates.csv")
    assert np.allclose(rates.set_index("glacier_id").loc[a.index, "rate_pct_per_yr"],
                       100 * (a_rec - a_inv) / a_inv / dt_y, rtol=1e-4, atol=1e-6)


def test_little_ice_age_forefield_is_bare_from_the_first_epoch(region):
    """Real inventory-year scenes show the ground each tongue left since ~1850: so must ours, or a
    model never sees, in training, the surface that later retreat exposes."""
    root, _ = region
    with rasterio.open(root / "truth" / "surface_2015.tif") as ds:
        first, res = ds.read(1), ds.res[0]
    last = _read(root / "truth" / "surface_2023.tif", 1)
    ice = np.isin(first, GLACIER_CLASSES)
    bare = first == FOREFIELD
    assert bare.sum() >= 0.1 * ice.sum()  # not a rarity in the training scenes
    # beside the ice, within the largest reach (+ the 2-px closing that joins the patches)
    dist = ndimage.distance_transform_edt(~ice, sampling=res)
    assert dist[bare].max() <= LIA_REACH_M[2] + 2 * res
    # ground once left stays bare; retreat adds more of it
    assert (last[bare] == FOREFIELD).all() and (last == FOREFIELD).sum() > bare.sum()


def test_lia_forefield_lies_down_valley_of_the_tongue():
    """A glacier on a valley floor that falls 100 m per km to the east: its forefield lies below
    the terminus (east), none above its head (west), none inside it, none on walls."""
    res = 30.0
    x = np.arange(200) * res
    z = np.broadcast_to(3000.0 - 0.1 * x, (60, 200)).copy()
    labels = np.zeros(z.shape, np.int32)
    labels[20:40, 60:120] = 1  # 0.6 x 1.8 km: A = 1.08 km2 -> reach 200 + 400 * 1.04 = 616 m
    slope = np.zeros(z.shape)
    ff = lia_forefield(z, slope, labels, res)
    assert not (ff & (labels > 0)).any()
    assert ff[20:40, 120:135].all()                # in front of the tongue
    assert ff[10:20, 100:120].all()                # beside its lower half
    assert not ff[:, :90].any()                    # nothing beside its upper half, above its head
    assert not ff[:, 140:].any()                   # no further than the reach (616 m < 21 px)
    ff_wall = lia_forefield(z, np.full(z.shape, np.radians(40.0)), labels, res)
    assert not ff_wall.any()


# ----------------------------------------------------------------------------------- spectra
def test_spectra_illumination_clouds_sar(region):
    root, _ = region
    opt = _read(root / "scenes" / "2016" / "optical.tif")
    cloud = _read(root / "scenes" / "2016" / "cloud.tif", 1)
    cls, cast = _read(root / "truth" / "surface_2016.tif")
    b2, b3, b4, b11 = opt[0], opt[1], opt[2], opt[4]
    with np.errstate(invalid="ignore", divide="ignore"):
        ndsi = (b3 - b11) / (b3 + b11)
    clear = cloud == 0
    lit = clear & (cast == 0) & (b3 + b11 > 0.02)  # NDSI is undefined on black pixels
    clean_glacier = lit & np.isin(cls, (ICE, FIRN))
    rock = lit & (cls == ROCK)
    assert clean_glacier.sum() > 500 and rock.sum() > 5000
    assert ndsi[clean_glacier].mean() > 0.4
    assert ndsi[rock].mean() < 0.1
    # cast shadows are darker (same class, clear sky)
    shaded_rock = clear & (cast == 1) & (cls == ROCK)
    assert shaded_rock.sum() > 100
    assert b4[shaded_rock].mean() < 0.6 * b4[rock].mean()
    # clouds are bright in the blue band
    assert (cloud == 1).sum() > 100
    assert b2[cloud == 1].mean() > b2[clear].mean() + 0.1
    # InSAR coherence is lower on glaciers
    with rasterio.open(root / "scenes" / "2016" / "sar.tif") as ds:
        coh = ds.read(3)
        truth = gpd.read_file(root / "truth" / "outlines_2016.gpkg")
        on = features.rasterize([(g, 1) for g in truth.geometry], out_shape=coh.shape,
                                transform=ds.transform).astype(bool)
    ok = np.isfinite(coh)
    assert np.nanmean(coh[on & ok]) + 0.2 < np.nanmean(coh[~on & ok])


# ------------------------------------------------------------------------------ determinism
def _arrays(root: Path) -> dict[str, np.ndarray]:
    out = {"dem": _read(root / "dem.tif")}
    for e in ("2015", "2023"):
        for f in ("optical", "cloud", "sar"):
            out[f"{e}/{f}"] = _read(root / "scenes" / e / f"{f}.tif")
    return out


def test_deterministic_for_a_seed(tmp_path):
    cfg = SimulateConfig(seed=11, width_km=3.0, height_km=3.0, n_glaciers=4)
    a = simulate_region(cfg, tmp_path / "a", progress=False)
    b = simulate_region(cfg, tmp_path / "b", progress=False)
    c = simulate_region(cfg.model_copy(update={"seed": 12}), tmp_path / "c", progress=False)
    ra, rb, rc = _arrays(a), _arrays(b), _arrays(c)
    for k in ra:
        np.testing.assert_array_equal(ra[k], rb[k], err_msg=k)
    assert not np.array_equal(ra["dem"], rc["dem"])
    assert not np.array_equal(ra["2015/optical"], rc["2015/optical"])
    # files are byte-identical too (GeoPackage timestamps are pinned)
    for rel in ("dem.tif", "outlines.gpkg", "scenes/2023/optical.tif", "truth/areas.csv",
                "truth/outlines_2023.gpkg", "region.yaml"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_existing_output_replaced_only_on_success(tmp_path):
    out = tmp_path / "raw"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    bad = tmp_path / "nocrs.tif"
    _write_dem(bad, crs=None)
    with pytest.raises(InputDataError):
        simulate_region(SimulateConfig(dem_path=bad), out, progress=False)
    assert (out / "keep.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nocrs.tif", "raw"]  # no temp left
    simulate_region(SimulateConfig(seed=1, width_km=3, height_km=3, n_glaciers=3), out, progress=False)
    assert not (out / "keep.txt").exists() and (out / "region.yaml").exists()


# ------------------------------------------------------------------------------- real inputs
@pytest.mark.skipif(not (REAL / "hef_srtm.tif").exists(),
                    reason=f"real Alps sample data not found at {REAL}")
def test_real_dem_and_outlines(tmp_path):
    rgi = gpd.read_file(REAL / "rgi7g_hef_complex.shp")
    cfg = SimulateConfig(dem_path=REAL / "hef_srtm.tif", outlines_path=REAL / "rgi7g_hef_complex.shp",
                         center_lon=10.765, center_lat=46.80, width_km=9.0, height_km=6.0)
    root = simulate_region(cfg, tmp_path / "raw", progress=False)
    with rasterio.open(root / "scenes" / "2015" / "optical.tif") as ds:
        assert ds.crs.to_epsg() == 32632
    with rasterio.open(root / "dem.tif") as ds:
        assert ds.crs.to_epsg() == 32632
        dem = ds.read(1)
        assert 1500 < np.nanmin(dem) and np.nanmax(dem) < 3800  # the real Oetztal range
    inv = gpd.read_file(root / "outlines.gpkg")
    assert len(inv) >= 2 and set(inv.glacier_id) <= set(rgi.rgi_id)
    names = set(rgi.set_index("rgi_id").loc[inv.glacier_id, "glac_name"].dropna())
    assert "Hintereisferner" in names  # the box is centred on it
    real_km2 = rgi.set_index("rgi_id").to_crs(32632).area / 1e6
    areas = pd.read_csv(root / "truth" / "areas.csv", dtype={"epoch": str})
    first = areas[areas.epoch == "2015"].set_index("glacier_id")["area_km2"]
    assert np.allclose(first.to_numpy(), real_km2.loc[first.index].to_numpy(), rtol=1e-6)
    regional = json.loads((root / "truth" / "regional.json").read_text())
    assert regional["outlines_left_out"]  # outlines crossing the region edge are listed


def test_whole_dem_used_when_no_box_given():
    cfg = SimulateConfig(dem_path=REAL / "hef_srtm.tif")
    assert not cfg.explicit_box
    assert SimulateConfig(dem_path=REAL / "hef_srtm.tif", width_km=5).explicit_box


# -------------------------------------------------------------------------------- bad inputs
def _write_dem(path: Path, crs: str | None = "EPSG:32632", value: float | None = 2500.0) -> None:
    data = np.full((100, 100), np.nan if value is None else value, np.float32)
    if value is not None:
        data += np.linspace(0, 500, 100, dtype=np.float32)[None, :]
    transform = Affine(30.0, 0.0, 640000.0, 0.0, -30.0, 5190000.0)
    with rasterio.open(path, "w", driver="GTiff", width=100, height=100, count=1, dtype="float32",
                       crs=crs, transform=transform, nodata=np.nan) as ds:
        ds.write(data, 1)


def test_dem_without_crs(tmp_path):
    dem = tmp_path / "nocrs.tif"
    _write_dem(dem, crs=None)
    with pytest.raises(InputDataError, match="no CRS") as err:
        simulate_region(SimulateConfig(dem_path=dem), tmp_path / "out", progress=False)
    assert str(dem) in str(err.value)


def test_dem_unreadable_or_all_nan(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    with pytest.raises(InputDataError) as err:
        simulate_region(SimulateConfig(dem_path=junk), tmp_path / "out", progress=False)
    assert str(junk) in str(err.value)
    nan = tmp_path / "nan.tif"
    _write_dem(nan, value=None)
    with pytest.raises(InputDataError, match="no valid elevation") as err:
        simulate_region(SimulateConfig(dem_path=nan), tmp_path / "out", progress=False)
    assert str(nan) in str(err.value)


def test_outlines_outside_dem(tmp_path):
    dem = tmp_path / "dem.tif"
    _write_dem(dem)
    far = gpd.GeoDataFrame({"glacier_id": ["X1"]}, geometry=gpd.points_from_xy([7.0], [45.0]).buffer(0.01),
                           crs="EPSG:4326")
    outlines = tmp_path / "far.gpkg"
    far.to_file(outlines)
    with pytest.raises(InputDataError, match="no outline overlaps") as err:
        simulate_region(SimulateConfig(dem_path=dem, outlines_path=outlines), tmp_path / "out",
                        progress=False)
    assert str(outlines) in str(err.value)
    assert not (tmp_path / "out").exists()


def test_config_validation():
    with pytest.raises(ValidationError, match="recent_year"):
        SimulateConfig(recent_year=2016)
    with pytest.raises(ValidationError, match="inventory_years"):
        SimulateConfig(inventory_years=[2016, 2015])
    with pytest.raises(ValidationError, match="projected"):
        SimulateConfig(crs="EPSG:4326")
    with pytest.raises(ValidationError, match="dhdt_period"):
        SimulateConfig(dhdt_period=(2019, 2000))
    assert SimulateConfig(inventory_years=[2010]).dhdt_years == (1995, 2010)  # the 15 years before
    with pytest.raises(ValidationError):
        SimulateConfig(unknown_key=1)


@pytest.mark.skipif(not (REAL / "hef_srtm.tif").exists(),
                    reason=f"real Alps sample data not found at {REAL}")
def test_dem_taller_than_one_write_strip_matches_the_source(tmp_path):
    """dem.tif is written in 512-row strips: a DEM grid taller than that (the whole ~26 km SRTM
    tile at 30 m: ~870 rows) must match the source DEM, not repeat the last strip over the file."""
    from rasterio.warp import Resampling, reproject

    cfg = SimulateConfig(dem_path=REAL / "hef_srtm.tif", outlines_path=REAL / "rgi7g_hef_complex.shp",
                         resolution_m=30.0, sar=False, inventory_years=[2015], recent_year=2016,
                         cloud_cover=0.0)
    root = simulate_region(cfg, tmp_path / "raw", progress=False)
    with rasterio.open(root / "dem.tif") as ds:
        assert ds.height > 512
        written = ds.read(1)
        src_on_grid = np.full(written.shape, np.nan, np.float32)
        with rasterio.open(REAL / "hef_srtm.tif") as src:
            reproject(src.read(1).astype(np.float32), src_on_grid, src_transform=src.transform,
                      src_crs=src.crs, dst_transform=ds.transform, dst_crs=ds.crs, dst_nodata=np.nan,
                      resampling=Resampling.bilinear)
    ok = np.isfinite(written) & np.isfinite(src_on_grid)
    assert ok.mean() > 0.9
    r = np.corrcoef(written[ok], src_on_grid[ok])[0, 1]
    assert r >= 0.99, r
    assert np.median(np.abs(written[ok] - src_on_grid[ok])) < 20.0  # metres


def test_outlines_left_out_of_the_box_are_all_listed(tmp_path):
    """Outlines beyond the region (wholly outside, or across its edge) are listed with the reason
    in truth/skipped.csv and counted in one warning (those wholly outside used to vanish)."""
    dem = tmp_path / "dem.tif"
    _write_dem(dem)  # 3 x 3 km at 30 m, from x=640000, y=5190000 down
    pts = {"IN": (641500, 5188500, 300), "EDGE": (640000, 5188500, 300), "FAR1": (700000, 5188500, 300),
           "FAR2": (641500, 5100000, 300)}
    gdf = gpd.GeoDataFrame({"glacier_id": list(pts)},
                           geometry=[gpd.points_from_xy([x], [y])[0].buffer(r) for x, y, r in pts.values()],
                           crs="EPSG:32632")
    gdf.to_file(tmp_path / "outlines.gpkg")
    cfg = SimulateConfig(dem_path=dem, outlines_path=tmp_path / "outlines.gpkg", sar=False,
                         inventory_years=[2015], recent_year=2016)
    with pytest.warns(UserWarning, match=r"3 outline\(s\) left out.*truth/skipped.csv"):
        root = simulate_region(cfg, tmp_path / "raw", progress=False)
    listed = pd.read_csv(root / "truth" / "skipped.csv").set_index("glacier_id").reason.to_dict()
    assert listed == {"EDGE": "crosses the edge of the simulated region",
                      "FAR1": "outside the simulated region", "FAR2": "outside the simulated region"}
    assert json.loads((root / "truth" / "regional.json").read_text())["outlines_left_out"] == ["EDGE", "FAR1", "FAR2"]
    assert gpd.read_file(root / "outlines.gpkg").glacier_id.tolist() == ["IN"]


def test_a_region_too_large_for_memory_is_refused_with_the_estimate():
    with pytest.raises(ValidationError, match=r"needs about 56\.2 GiB.*max_memory_gib = 16"):
        SimulateConfig(width_km=200, height_km=200)  # 400 million pixels at 10 m
    SimulateConfig(width_km=200, height_km=200, resolution_m=30.0)  # 44 Mpx: about 6.5 GiB, fits


def test_a_killed_simulate_leaves_nothing_the_next_run_keeps(tmp_path):
    """A temporary folder left by a killed run (its pid is gone) is removed by the next run."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = tmp_path / f".raw.tmp-{dead}-0123abcd"
    stale.mkdir()
    simulate_region(SimulateConfig(seed=1, width_km=3, height_km=3, n_glaciers=3, sar=False), tmp_path / "raw",
                    progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]


def test_duplicate_ids_of_divides_say_what_to_do():
    """Real RGI divides share their RGIId (95 polygons, 42 ids): the error says how to proceed."""
    path = REAL / "divides_alps.shp"
    if not path.exists():
        pytest.skip(f"real divides not available at {path}")
    from rasterio.crs import CRS

    from glaciermap.data.simulate.glaciers import read_outlines

    with pytest.raises(InputDataError) as err:
        read_outlines(path, CRS.from_epsg(32632), "RGIId")
    assert "duplicate glacier ids in column 'RGIId'" in err.value.problem
    assert "53 polygon(s) repeat an id" in err.value.problem
    assert "unique per polygon" in err.value.hint and "dissolve(by='RGIId')" in err.value.hint
