"""Ingest: raw region -> per-glacier cubes (masks, georeferencing, bands, index, real data, bad input)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr
import yaml
from pyproj import Transformer
from rasterio import features
from shapely.geometry import Polygon, box
from shapely.ops import polylabel

from glaciermap import cli
from glaciermap.config import DataConfig, SensorsConfig, updated
from glaciermap.data.cubes import read_cube, read_index
from glaciermap.data.ingest import ingest_region
from glaciermap.data.simulate import simulate_region
from glaciermap.data.simulate.surface import GLACIER_CLASSES
from glaciermap.errors import ConfigError, GlaciermapError, InputDataError

from conftest import DATA, SIM, without_truth

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-alps"
# band names as docs/data-format.md lists them (section 2, `data` variable), in that order
DOC_BANDS = ["B2", "B3", "B4", "B8", "B11", "B12", "VV", "VH", "coh", "dem", "slope", "hillshade"]
DOC_ATTRS = {"glacier_id", "epoch", "year", "inventory_year", "area_km2", "crs", "res", "lon", "lat"}


# ----------------------------------------------------------------------------------- helpers
def _outlines(raw: Path) -> gpd.GeoDataFrame:
    return gpd.read_file(raw / "outlines.gpkg").set_index("glacier_id")


def _manifest(raw: Path) -> dict:
    return yaml.safe_load((raw / "region.yaml").read_text())


def _decimal_year(d: dt.date) -> float:
    start = dt.date(d.year, 1, 1)
    return d.year + (d - start).days / (dt.date(d.year + 1, 1, 1) - start).days


def _inventory_cubes(cubes_dir: Path, index: pd.DataFrame):
    for _, row in index[index.role == "inventory"].iterrows():
        yield row, read_cube(cubes_dir / row.path)


def _largest_polygon(geom) -> Polygon:
    return max(getattr(geom, "geoms", [geom]), key=lambda g: g.area)


def _rewrite_raster(path: Path, *, data: np.ndarray | None = None, crs="keep",
                    descriptions: list[str] | None = None, nodata="keep") -> None:
    """Rewrite a GeoTIFF in place with changed data, CRS (None = none), band descriptions or
    nodata tag (None = no tag)."""
    with rasterio.open(path) as ds:
        profile, old, desc = ds.profile, ds.read(), list(ds.descriptions)
    data = old if data is None else data
    profile.update(count=data.shape[0])
    if crs != "keep":
        profile["crs"] = crs
    if nodata != "keep":
        profile["nodata"] = nodata
    path.unlink()
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        ds.descriptions = tuple(descriptions or desc)


def _assert_error_names(err: GlaciermapError, path: Path, *problem: str) -> None:
    msg = err.message
    assert str(path) in msg, msg
    for p in problem:
        assert p in msg, msg


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


# --------------------------------------------------------------------------- masks and grids
def test_mask_area_matches_outline_area(raw_region, cubes_dir, cube_index):
    outlines = _outlines(raw_region)
    checked = 0
    for row, cube in _inventory_cubes(cubes_dir, cube_index):
        res = cube.grid.res
        geom = outlines.loc[[row.glacier_id]].to_crs(cube.grid.crs).geometry.iloc[0]
        mask_area = cube.mask_glacier.sum() * res**2
        assert abs(mask_area - geom.area) <= geom.length * res, row.glacier_id  # one pixel row
        # area_km2 counts the mask's pixels (cubes.glacier_location), as inference counts predictions
        assert cube.attrs["area_km2"] == pytest.approx(mask_area / 1e6, rel=1e-9)
        assert row.area_km2 == pytest.approx(mask_area / 1e6, rel=1e-9)
        # the label holds every outline on the grid (neighbours too), clipped to the cube
        inside = outlines.to_crs(cube.grid.crs).geometry.intersection(box(*cube.grid.bounds))
        all_area = cube.mask_all.sum() * res**2
        assert abs(all_area - inside.area.sum()) <= inside.length.sum() * res
        assert (cube.mask_all >= cube.mask_glacier).all()
        checked += 1
    assert checked == len(outlines)


def test_known_point_lands_in_the_right_pixel(raw_region, cubes_dir, cube_index):
    """A point deep inside each outline, given in lon/lat, falls in a glacier pixel of its cube,
    and that pixel holds the scene's value at that point."""
    outlines = _outlines(raw_region)  # EPSG:4326
    tested = compared = 0
    for _, row in cube_index[cube_index.role == "inventory"].iterrows():
        path = cubes_dir / row.path
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            xs, ys = ds["x"].values, ds["y"].values
            crs = rasterio.crs.CRS.from_wkt(ds["spatial_ref"].attrs["crs_wkt"])
            mask = ds["mask_glacier"].values
            b4 = ds["data"].sel(band="B4").values
        res = float(xs[1] - xs[0])
        lonlat = polylabel(_largest_polygon(outlines.geometry[row.glacier_id]), tolerance=1e-7)
        x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lonlat.x, lonlat.y)
        utm_geom = outlines.loc[[row.glacier_id]].to_crs(crs).geometry.iloc[0]
        if utm_geom.boundary.distance(gpd.points_from_xy([x], [y])[0]) < 0.75 * res:
            continue  # too thin for the pixel centre to be inside for sure
        col, r = int(np.argmin(np.abs(xs - x))), int(np.argmin(np.abs(ys - y)))
        assert abs(xs[col] - x) <= res / 2 and abs(ys[r] - y) <= res / 2, "point outside the cube grid"
        assert mask[r, col] == 1, row.glacier_id
        with rasterio.open(raw_region / "scenes" / row.epoch / "optical.tif") as scene:
            sx, sy = Transformer.from_crs(crs, scene.crs, always_xy=True).transform(x, y)
            scene_b4 = next(scene.sample([(sx, sy)], indexes=[3]))[0]
        if np.isfinite(scene_b4) or np.isfinite(b4[r, col]):  # both NaN: outside the scene
            assert b4[r, col] == pytest.approx(scene_b4, abs=1e-6), row.glacier_id
            compared += 1
        tested += 1
    assert tested >= 5 and compared >= 5


def test_glacier_mask_lies_on_the_scene_glacier_pixels(raw_region, cubes_dir, cube_index):
    """The simulator's truth (never read by ingest) classifies every scene pixel: each pixel of
    mask_glacier must be glacier ice/snow/debris in the inventory scene. A mask shifted by even
    one pixel against the data puts its edge on rock. (Simulated outlines run on a 5 m lattice,
    so some pass exactly through pixel centres: those pixels may fall either way.)"""
    for _, row in cube_index[cube_index.role == "inventory"].iterrows():
        cube = read_cube(cubes_dir / row.path)
        truth = gpd.read_file(raw_region / "truth" / f"outlines_{row.epoch}.gpkg").set_index("glacier_id")
        with rasterio.open(raw_region / "truth" / f"surface_{row.epoch}.tif") as ds:
            assert ds.crs == cube.grid.crs  # precondition: same UTM zone, same 10 m lattice
            cls = ds.read(1)
            t = ds.transform
        rows, cols = np.nonzero(cube.mask_glacier)
        xs, ys = cube.grid.xy_coords()
        r = np.floor((ys[rows] - t.f) / t.e).astype(int)
        c = np.floor((xs[cols] - t.c) / t.a).astype(int)
        inside = (r >= 0) & (r < cls.shape[0]) & (c >= 0) & (c < cls.shape[1])
        assert inside.all(), row.glacier_id  # simulated glaciers are clipped to the scene
        off = ~np.isin(cls[r, c], GLACIER_CLASSES)
        on_edge = gpd.points_from_xy(xs[cols[off]], ys[rows[off]]).distance(
            truth.geometry[row.glacier_id].boundary) < 1e-3
        assert on_edge.all() and off.sum() <= 0.01 * off.size, (row.glacier_id, off.sum())


def test_cube_grid_is_10m_utm(raw_region, cubes_dir, cube_index):
    lon_min, lat_min, lon_max, lat_max = _outlines(raw_region).total_bounds
    zone = int(((lon_min + lon_max) / 2 + 180) // 6) + 1
    epsg = (32600 if (lat_min + lat_max) / 2 >= 0 else 32700) + zone
    for _, row in cube_index.iterrows():
        cube = read_cube(cubes_dir / row.path)
        t = cube.grid.transform
        assert cube.grid.crs.to_epsg() == epsg
        assert (t.a, t.b, t.d, t.e) == (10.0, 0.0, 0.0, -10.0)
        assert t.c % 10 == 0 and t.f % 10 == 0  # snapped to whole pixels
        assert cube.attrs["crs"] == f"EPSG:{epsg}" and cube.attrs["res"] == 10.0
        assert cube.data.shape[1:] == (row.height, row.width)


def test_recent_cubes_share_the_inventory_grid_and_masks(cubes_dir, cube_index, raw_region):
    dates = {e: v["date"] for e, v in _manifest(raw_region)["epochs"].items()}
    for gid, rows in cube_index.groupby("glacier_id"):
        inv = read_cube(cubes_dir / rows[rows.role == "inventory"].path.iloc[0])
        for p in rows[rows.role == "recent"].path:
            rec = read_cube(cubes_dir / p)
            assert rec.grid == inv.grid
            np.testing.assert_array_equal(rec.mask_glacier, inv.mask_glacier)
            np.testing.assert_array_equal(rec.mask_all, inv.mask_all)
            assert rec.attrs["year"] == pytest.approx(_decimal_year(dates[rec.attrs["epoch"]]))
            assert not np.array_equal(rec.data[:6], inv.data[:6], equal_nan=True)  # another scene


# ---------------------------------------------------------------------------- bands and masks
def test_bands_dtypes_and_attrs(cubes_dir, cube_index):
    for _, row in cube_index.iterrows():
        with xr.open_dataset(cubes_dir / row.path, engine="h5netcdf") as ds:
            assert [str(b) for b in ds["band"].values] == DOC_BANDS
            assert ds["data"].dims == ("band", "y", "x") and ds["data"].dtype == np.float32
            for m in ("mask_glacier", "mask_all", "mask_invalid"):
                assert ds[m].dims == ("y", "x") and ds[m].dtype == np.uint8
                assert set(np.unique(ds[m].values)) <= {0, 1}
            assert ds["mask_glacier"].values.any(), row.glacier_id
            assert DOC_ATTRS <= set(ds.attrs)
            assert (ds.attrs["glacier_id"], ds.attrs["epoch"]) == (row.glacier_id, row.epoch)
            on_glacier = ds["mask_glacier"].values == 1
            dem = ds["data"].sel(band=["dem", "slope", "hillshade"]).values
            assert np.isfinite(dem[:, on_glacier]).all()  # the DEM covers every glacier


def _scene_pixels(cube, transform, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inside, rows, cols): the scene pixel under each cube pixel (same 10 m UTM pixels)."""
    xs, ys = cube.grid.xy_coords()
    cols = np.floor((xs[None, :] - transform.c) / transform.a).astype(int).repeat(len(ys), axis=0)
    rows = np.floor((ys[:, None] - transform.f) / transform.e).astype(int).repeat(len(xs), axis=1)
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    return inside, rows[inside], cols[inside]


def _expected_invalid(cube, scene_dir: Path) -> np.ndarray:
    """cloud / shadow / no data of the scene under each cube pixel, from the raw files."""
    with rasterio.open(scene_dir / "optical.tif") as opt, rasterio.open(scene_dir / "cloud.tif") as cl:
        assert opt.crs == cube.grid.crs and opt.res == (cube.grid.res, cube.grid.res)
        optical, cloud = opt.read(), cl.read(1)
        inside, r, c = _scene_pixels(cube, opt.transform, (opt.height, opt.width))
    expected = np.ones(cube.mask_invalid.shape, np.uint8)  # outside the scene: no data
    expected[inside] = (cloud[r, c] != 0) | ~np.isfinite(optical[:, r, c]).all(axis=0)
    return expected


def test_mask_invalid_is_cloud_shadow_and_no_data(raw_region, cubes_dir, cube_index):
    """Scene and cube grids are both whole 10 m pixels of the same UTM zone, so every cube pixel
    is one scene pixel: mask_invalid must be exactly cloud/shadow/no-data of that pixel."""
    n_invalid = n_valid = 0
    for _, row in cube_index.iterrows():
        cube = read_cube(cubes_dir / row.path)
        scene_dir = raw_region / "scenes" / row.epoch
        np.testing.assert_array_equal(cube.mask_invalid, _expected_invalid(cube, scene_dir), err_msg=row.path)
        # and the optical bands are the scene's pixels
        with rasterio.open(scene_dir / "optical.tif") as opt:
            optical = opt.read()
            inside, r, c = _scene_pixels(cube, opt.transform, (opt.height, opt.width))
        np.testing.assert_allclose(cube.data[:6][:, inside], optical[:, r, c], atol=1e-6)
        assert np.isnan(cube.data[:6][:, ~inside]).all()
        n_invalid += int(cube.mask_invalid.sum())
        n_valid += int((cube.mask_invalid == 0).sum())
    assert n_invalid > 0 and n_valid > 0


# ---------------------------------------------------------------- several acquisitions per epoch
@pytest.fixture(scope="module")
def multi_acq_region(tmp_path_factory) -> Path:
    """The tiny region with three acquisitions per epoch (5 days apart)."""
    cfg = SIM.model_copy(update={"acquisitions_per_epoch": 3})
    return simulate_region(cfg, tmp_path_factory.mktemp("multi") / "raw", progress=False)


def test_alternates_are_listed_and_leave_the_main_scenes_unchanged(multi_acq_region, raw_region):
    manifest = _manifest(multi_acq_region)
    for epoch, info in manifest["epochs"].items():
        assert list(info["alternates"]) == [f"{epoch}-alt1", f"{epoch}-alt2"]
        assert [d - info["date"] for d in info["alternates"].values()] == [dt.timedelta(days=5),
                                                                           dt.timedelta(days=10)]
        clouds = []
        for scene in [epoch, *info["alternates"]]:
            with rasterio.open(multi_acq_region / "scenes" / scene / "cloud.tif") as ds:
                clouds.append(ds.read(1))
        assert not np.array_equal(clouds[0], clouds[1])  # each acquisition has its own sky
        for name in ("optical.tif", "cloud.tif", "sar.tif"):  # the main scene as with one acquisition
            with rasterio.open(multi_acq_region / "scenes" / epoch / name) as a, \
                    rasterio.open(raw_region / "scenes" / epoch / name) as b:
                np.testing.assert_array_equal(a.read(), b.read(), err_msg=f"{epoch}/{name}")



def _scene_optical(cube, scene_dir: Path) -> np.ndarray:
    """The scene's optical bands under each cube pixel (NaN outside the scene), from the raw file."""
    with rasterio.open(scene_dir / "optical.tif") as opt:
        optical = opt.read()
        inside, r, c = _scene_pixels(cube, opt.transform, (opt.height, opt.width))
    out = np.full((optical.shape[0], *cube.mask_invalid.shape), np.nan, np.float32)
    out[:, inside] = optical[:, r, c]
    return out


def test_fill_gaps_takes_masked_pixels_from_the_other_acquisitions(multi_acq_region, tmp_path):
    """data.fill_gaps: a pixel is masked only where every acquisition of the epoch masks it; each
    pixel the clearest acquisition masks holds the optical values of the clearest other one that
    sees it; unmasked pixels and SAR stay the clearest acquisition's."""
    plain = ingest_region(multi_acq_region, tmp_path / "plain", DATA, SensorsConfig(), progress=False)
    filled = ingest_region(multi_acq_region, tmp_path / "filled", updated(DATA, fill_gaps=True), SensorsConfig(),
                           progress=False)
    manifest = _manifest(multi_acq_region)
    n_filled = 0
    for (_, a), (_, b) in zip(plain.iterrows(), filled.iterrows(), strict=True):
        assert (a.glacier_id, a.epoch, a.scene) == (b.glacier_id, b.epoch, b.scene)  # same clearest
        ca, cb = read_cube(tmp_path / "plain" / a.path), read_cube(tmp_path / "filled" / b.path)
        scenes = [a.epoch, *manifest["epochs"][a.epoch]["alternates"]]
        masks = {s: _expected_invalid(ca, multi_acq_region / "scenes" / s).astype(bool) for s in scenes}
        np.testing.assert_array_equal(cb.mask_invalid.astype(bool), np.logical_and.reduce(list(masks.values())))
        optical = [i for i, band in enumerate(ca.bands) if band in SensorsConfig().groups["optical"]]
        seen = ~masks[a.scene]
        np.testing.assert_array_equal(cb.data[:, seen], ca.data[:, seen])  # the clearest where it sees
        sar = [i for i in range(len(ca.bands)) if i not in optical]
        np.testing.assert_array_equal(cb.data[sar], ca.data[sar])
        used = [s for s in cb.attrs["filled_from"].split(",") if s]
        todo = masks[a.scene].copy()
        for s in used:  # in the order fill_gaps took them: each gave what it sees of what was left
            take = todo & ~masks[s]
            assert take.any(), (a.glacier_id, s)
            np.testing.assert_allclose(cb.data[optical][:, take],
                                       _scene_optical(ca, multi_acq_region / "scenes" / s)[:, take], rtol=1e-6)
            todo &= ~take
        assert cb.attrs["filled_fraction"] == pytest.approx((masks[a.scene] & ~cb.mask_invalid.astype(bool)).mean())
        assert b.glacier_invalid_fraction <= a.glacier_invalid_fraction
        n_filled += len(used) > 0
    assert n_filled > 0  # the tiny region's clouds leave something to fill
    assert filled.glacier_invalid_fraction.sum() < plain.glacier_invalid_fraction.sum()


def test_each_glacier_is_mapped_from_its_clearest_acquisition(multi_acq_region, cube_index, tmp_path):
    index = ingest_region(multi_acq_region, tmp_path / "cubes", DATA, SensorsConfig(), progress=False)
    manifest = _manifest(multi_acq_region)
    picked_alternate = 0
    for _, row in index.iterrows():
        info = manifest["epochs"][row.epoch]
        cube = read_cube(tmp_path / "cubes" / row.path)
        on = cube.mask_glacier == 1
        masked = {s: float(_expected_invalid(cube, multi_acq_region / "scenes" / s)[on].mean())
                  for s in [row.epoch, *info["alternates"]]}
        assert row.scene == cube.attrs["scene"] and row.scene in masked
        assert masked[row.scene] == min(masked.values()), (row.glacier_id, row.epoch, masked)
        if masked[row.epoch] == min(masked.values()):
            assert row.scene == row.epoch  # a tie keeps the main acquisition
        np.testing.assert_array_equal(cube.mask_invalid,
                                      _expected_invalid(cube, multi_acq_region / "scenes" / row.scene))
        date = info["date"] if row.scene == row.epoch else info["alternates"][row.scene]
        assert row.year == pytest.approx(_decimal_year(date)) == cube.attrs["year"]
        picked_alternate += row.scene != row.epoch
    assert picked_alternate > 0  # the clouds of the tiny region make some alternate clearer
    # fewer masked glacier pixels than with the main scenes alone (same glaciers, same grids)
    one = cube_index.set_index(["glacier_id", "epoch"]).glacier_invalid_fraction
    many = index.set_index(["glacier_id", "epoch"]).glacier_invalid_fraction
    assert (many <= one.loc[many.index] + 1e-12).all() and many.sum() < one.loc[many.index].sum()


# ------------------------------------------------------------------------------------- index
def test_index_has_inventory_and_recent_rows(raw_region, cubes_dir, cube_index):
    manifest = _manifest(raw_region)
    outlines = _outlines(raw_region)
    years = {e: _decimal_year(v["date"]) for e, v in manifest["epochs"].items()}
    recent = [e for e in manifest["epochs"] if e not in manifest["inventory_epochs"]]
    assert recent  # the simulated region has a recent epoch
    assert set(cube_index.glacier_id) == set(outlines.index)
    for gid, rows in cube_index.groupby("glacier_id"):
        inv_year = _decimal_year(pd.Timestamp(outlines.loc[gid, "date"]).date())
        nearest = min(manifest["inventory_epochs"], key=lambda e: abs(years[e] - inv_year))
        assert sorted(zip(rows.role, rows.epoch)) == sorted(
            [("inventory", nearest)] + [("recent", e) for e in recent]), gid
        assert rows.inventory_year.tolist() == pytest.approx([inv_year] * len(rows))
        for _, row in rows.iterrows():
            assert row.year == pytest.approx(years[row.epoch])
            assert (cubes_dir / row.path).is_file()
            assert row.path == f"{row.epoch}/{gid}.nc"
        c = outlines.geometry[gid]  # centroid in lon/lat, close to the projected centroid
        assert rows.lon.iloc[0] == pytest.approx(c.centroid.x, abs=1e-4)
        assert rows.lat.iloc[0] == pytest.approx(c.centroid.y, abs=1e-4)
    # nothing but index.csv, skipped.csv (empty: every outline lies inside) and the epoch folders
    assert sorted(p.name for p in cubes_dir.iterdir()) == sorted(["index.csv", "skipped.csv",
                                                                  *cube_index.epoch.unique()])
    assert pd.read_csv(cubes_dir / "skipped.csv").empty


def test_parallel_ingest_gives_the_same_cubes(raw_region, cubes_dir, cube_index, tmp_path):
    cfg = DATA.model_copy(update={"workers": 2})
    index = ingest_region(raw_region, tmp_path / "cubes", cfg, SensorsConfig(), progress=False)
    pd.testing.assert_frame_equal(index.reset_index(drop=True), read_index(tmp_path / "cubes"),
                                  check_dtype=False)
    pd.testing.assert_frame_equal(read_index(tmp_path / "cubes"), cube_index)
    for p in cube_index.path:
        a, b = read_cube(cubes_dir / p), read_cube(tmp_path / "cubes" / p)
        np.testing.assert_array_equal(a.data, b.data)
        np.testing.assert_array_equal(a.mask_all, b.mask_all)


# --------------------------------------------------------------------------------- real data
# stem, id column, date column, name column, min/max elevation columns
REAL_FILES = {
    "rgi7": ("rgi7g_hef_complex", "rgi_id", "src_date", "glac_name", "zmin_m", "zmax_m"),
    "rgi6": ("Hintereisferner_RGI6", "RGIId", "BgnDate", "Name", "Zmin", "Zmax"),
}


def _real_region(root: Path, stem: str, id_column: str, date_column: str) -> Path:
    """A raw region from the real outlines and the real SRTM DEM (both linked, read as they are),
    with synthetic 30 m scenes around Hintereisferner (no real imagery is available)."""
    root.mkdir()
    for f in REAL.glob(f"{stem}.*"):
        os.symlink(f, root / f.name)
    for f in REAL.glob("hef_srtm.*"):
        os.symlink(f, root / f.name)
    # scene box: Hintereisferner and its western neighbours, inside the DEM
    x0, y0, x1, y1 = Transformer.from_crs("EPSG:4326", "EPSG:32632", always_xy=True).transform_bounds(
        10.69, 46.775, 10.77, 46.83)
    res = 30.0
    x0, y1 = np.floor(x0 / res) * res, np.ceil(y1 / res) * res
    w, h = int(np.ceil((x1 - x0) / res)), int(np.ceil((y1 - y0) / res))
    transform = rasterio.Affine(res, 0, x0, 0, -res, y1)
    rng = np.random.default_rng(0)
    epochs = {"2003": dt.date(2003, 8, 15), "2023": dt.date(2023, 8, 20)}
    for epoch in epochs:
        scene = root / "scenes" / epoch
        scene.mkdir(parents=True)
        common = dict(driver="GTiff", width=w, height=h, crs="EPSG:32632", transform=transform)
        with rasterio.open(scene / "optical.tif", "w", count=6, dtype="float32", nodata=np.nan,
                           **common) as ds:
            ds.write(rng.uniform(0, 1, (6, h, w)).astype(np.float32))
            ds.descriptions = ("B2", "B3", "B4", "B8", "B11", "B12")
        with rasterio.open(scene / "cloud.tif", "w", count=1, dtype="uint8", nodata=255, **common) as ds:
            ds.write(np.zeros((1, h, w), np.uint8))
    (root / "region.yaml").write_text(yaml.safe_dump({
        "name": "real-hef", "id_column": id_column, "date_column": date_column,
        "outlines": f"{stem}.shp", "dem": "hef_srtm.tif", "inventory_epochs": ["2003"],
        "epochs": {e: {"date": d} for e, d in epochs.items()},
    }))
    return root


@pytest.mark.skipif(not (REAL / "rgi7g_hef_complex.shp").exists(),
                    reason=f"real Alps sample data (OGGM) not found at {REAL}")
@pytest.mark.parametrize("which", sorted(REAL_FILES))
def test_real_outlines_and_dem(which, tmp_path):
    stem, id_column, date_column, name_column, zmin_column, zmax_column = REAL_FILES[which]
    raw = _real_region(tmp_path / "raw", stem, id_column, date_column)
    real = gpd.read_file(REAL / f"{stem}.shp").set_index(id_column)
    with rasterio.open(raw / "scenes" / "2003" / "optical.tif") as ds:
        scene_box = box(*ds.bounds)
    utm = real.to_crs(32632).geometry
    coverage = utm.intersection(scene_box).area / utm.area
    expected = set(real.index[coverage >= 0.5])  # Hintereisferner crosses the scene edge (~24% outside)
    assert len(expected) >= 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = ingest_region(raw, tmp_path / "cubes",
                              DataConfig(buffer_m=320.0, edge_policy="keep", min_coverage=0.5), SensorsConfig(),
                              progress=False)
    skipped = [str(w.message) for w in caught if "left out" in str(w.message)]
    assert len(skipped) == (len(expected) < len(real))  # one warning counting the skipped outlines
    assert set(index.glacier_id) == expected
    listed = pd.read_csv(tmp_path / "cubes" / "skipped.csv")
    assert set(listed.glacier_id) == set(real.index) - expected
    assert index.coverage.to_numpy() == pytest.approx(coverage[index.glacier_id].to_numpy(), abs=1e-3)
    assert "Hintereisferner" in set(real.loc[list(expected), name_column])
    inv = index[index.role == "inventory"]
    assert len(inv) == len(expected) and set(index.role) == {"inventory", "recent"}
    for _, row in inv.iterrows():
        cube = read_cube(tmp_path / "cubes" / row.path)
        res = cube.grid.res
        geom = real.loc[[row.glacier_id]].to_crs(cube.grid.crs).geometry.iloc[0]
        assert abs(cube.mask_glacier.sum() * res**2 - geom.area) <= geom.length * res, row.glacier_id
        assert cube.attrs["glacier_id"] == row.glacier_id
        assert cube.bands == DOC_BANDS[:6] + DOC_BANDS[9:]  # no sar.tif: no SAR bands
        # the real DEM is georeferenced: on the glacier it spans the RGI elevation range
        dem = cube.data[cube.bands.index("dem")][cube.mask_glacier == 1]
        zmin, zmax = real.loc[row.glacier_id, zmin_column], real.loc[row.glacier_id, zmax_column]
        assert zmin - 150 < np.median(dem) < zmax + 150
        assert np.percentile(dem, 5) > zmin - 150 and np.percentile(dem, 95) < zmax + 150
    # the inventory date column of either RGI version is read (RGI6: YYYYMMDD, 99 = unknown day: the 15th)
    expected_year = _decimal_year(dt.date(2003, 7, 30) if which == "rgi7" else dt.date(2003, 7, 15))
    assert inv.inventory_year.to_numpy() == pytest.approx(expected_year)


# --------------------------------------------------------------------------------- bad input
def _ingest(raw: Path, out: Path):
    return ingest_region(raw, out, DATA, SensorsConfig(), progress=False)


@pytest.mark.parametrize("rel, band", [("scenes/2015/optical.tif", "B11"), ("scenes/2023/sar.tif", "coh")])
def test_missing_band(raw_copy, tmp_path, rel, band):
    path = raw_copy / rel
    with rasterio.open(path) as ds:
        names, data = list(ds.descriptions), ds.read()
    keep = [i for i, n in enumerate(names) if n != band]
    _rewrite_raster(path, data=data[keep], descriptions=[names[i] for i in keep])
    with pytest.raises(InputDataError) as err:
        _ingest(raw_copy, tmp_path / "cubes")
    _assert_error_names(err.value, path, f"missing band(s) {[band]}", str([names[i] for i in keep]))
    assert not (tmp_path / "cubes").exists()


@pytest.mark.parametrize("rel", ["dem.tif", "scenes/2016/optical.tif", "scenes/2023/sar.tif"])
def test_raster_without_crs(raw_copy, tmp_path, rel):
    path = raw_copy / rel
    _rewrite_raster(path, crs=None)
    with rasterio.open(path) as ds:
        assert ds.crs is None  # precondition
    with pytest.raises(InputDataError) as err:
        _ingest(raw_copy, tmp_path / "cubes")
    _assert_error_names(err.value, path, "no CRS")


def test_outlines_not_overlapping_the_rasters(raw_copy, tmp_path):
    path = raw_copy / "outlines.gpkg"
    gdf = gpd.read_file(path)
    gdf.geometry = gdf.geometry.translate(xoff=3.0)  # some 230 km east
    gdf.to_file(path)
    with pytest.raises(InputDataError) as err:
        _ingest(raw_copy, tmp_path / "cubes")
    _assert_error_names(err.value, path, "no outline overlaps")
    assert not (tmp_path / "cubes").exists()


def test_outline_outside_the_scenes_is_skipped_with_a_warning(raw_copy, tmp_path):
    path = raw_copy / "outlines.gpkg"
    gdf = gpd.read_file(path)
    gone = gdf.glacier_id.iloc[1]
    far = gdf.geometry.translate(xoff=3.0)
    gdf.geometry = [f if g == gone else geom for g, geom, f in zip(gdf.glacier_id, gdf.geometry, far)]
    gdf.to_file(path)
    with pytest.warns(UserWarning, match=rf"1 outline\(s\) / acquisition\(s\) left out .*skipped.csv\): \['{gone}'\]"):
        index = _ingest(raw_copy, tmp_path / "cubes")
    assert set(index.glacier_id) == set(gdf.glacier_id) - {gone}
    listed = pd.read_csv(tmp_path / "cubes" / "skipped.csv")
    assert listed.glacier_id.tolist() == [gone]
    assert listed.reason.iloc[0].startswith("outside ") and "optical.tif" in listed.reason.iloc[0]


def test_bow_tie_outline_is_repaired_with_a_warning(raw_copy, tmp_path):
    path = raw_copy / "outlines.gpkg"
    gdf = gpd.read_file(path)
    i = int(gdf.to_crs(32632).area.argmax())
    gid = gdf.glacier_id.iloc[i]
    x0, y0, x1, y1 = gdf.geometry.iloc[i].bounds
    bow_tie = Polygon([(x0, y0), (x1, y1), (x1, y0), (x0, y1)])  # edges cross at the centre
    assert not bow_tie.is_valid  # precondition
    gdf.loc[i, "geometry"] = bow_tie
    gdf.to_file(path)
    with pytest.warns(UserWarning, match="repaired 1 invalid"):  # its corners may cross the scene edge
        index = ingest_region(raw_copy, tmp_path / "cubes", updated(DATA, edge_policy="keep"), SensorsConfig(),
                              progress=False)
    assert set(index.glacier_id) == set(gdf.glacier_id)
    cube = read_cube(tmp_path / "cubes" / index[(index.glacier_id == gid) & (index.role == "inventory")].path.iloc[0])
    # both lobes of the bow-tie are kept: two triangles, half the bounding box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    lobes = gpd.GeoSeries([Polygon([(x0, y0), (cx, cy), (x0, y1)]), Polygon([(x1, y1), (x1, y0), (cx, cy)])],
                          crs=gdf.crs).to_crs(cube.grid.crs)
    res = cube.grid.res
    assert abs(cube.mask_glacier.sum() * res**2 - lobes.area.sum()) <= lobes.length.sum() * res
    assert cube.attrs["area_km2"] == pytest.approx(cube.mask_glacier.sum() * res**2 / 1e6, rel=1e-9)


@pytest.mark.parametrize("problem", ["empty", "duplicate"])
def test_empty_geometry_or_duplicate_id(raw_copy, tmp_path, problem):
    path = raw_copy / "outlines.gpkg"
    gdf = gpd.read_file(path)
    bad = gdf.glacier_id.iloc[2]
    if problem == "empty":
        gdf.loc[2, "geometry"] = Polygon()
        expected = f"empty geometry for glacier(s) {[bad]}"
    else:
        gdf.loc[3, "glacier_id"] = bad
        expected = f"duplicate glacier ids in column 'glacier_id': {[bad]}"
    gdf.to_file(path)
    with pytest.raises(InputDataError) as err:
        _ingest(raw_copy, tmp_path / "cubes")
    _assert_error_names(err.value, path, expected)
    if problem == "duplicate":  # says what to do: a unique id per polygon, divides grouped by glacier
        assert "unique per polygon" in err.value.hint and "group_column" in err.value.hint


def test_group_column_reaches_the_cube_index(raw_copy, tmp_path):
    """region.yaml `group_column` (e.g. RGIId of divides) is written to index.csv as `group`;
    without it every glacier is its own group."""
    path = raw_copy / "outlines.gpkg"
    gdf = gpd.read_file(path)
    gdf["rgi"] = [f"RGI-{i // 2}" for i in range(len(gdf))]  # divides two by two
    gdf.to_file(path)
    manifest = _manifest(raw_copy)
    (raw_copy / "region.yaml").write_text(yaml.safe_dump({**manifest, "group_column": "rgi"}))
    index = _ingest(raw_copy, tmp_path / "cubes")
    expected = dict(zip(gdf.glacier_id, gdf.rgi))
    assert index.group.tolist() == [expected[g] for g in index.glacier_id]
    assert read_index(tmp_path / "cubes").group.tolist() == index.group.tolist()
    (raw_copy / "region.yaml").write_text(yaml.safe_dump({**manifest, "group_column": "RGIId"}))
    with pytest.raises(InputDataError, match="column 'RGIId' missing"):
        _ingest(raw_copy, tmp_path / "c2")


def test_group_defaults_to_the_glacier_id(cube_index, tmp_path):
    assert (cube_index.group == cube_index.glacier_id).all()
    old = cube_index.drop(columns="group")  # an index written before groups existed
    old.to_csv(tmp_path / "index.csv", index=False)
    assert read_index(tmp_path).group.tolist() == cube_index.glacier_id.tolist()


def _dem_nan_on(raw: Path, geoms: gpd.GeoSeries, invert: bool = False, value: float = np.nan) -> None:
    """Set the DEM to NaN (or a void sentinel `value`, then with no nodata tag) on the given
    outlines (or, with invert, everywhere else)."""
    path = raw / "dem.tif"
    with rasterio.open(path) as ds:
        dem, shape, transform, crs = ds.read(), ds.shape, ds.transform, ds.crs
    on = features.rasterize([(g, 1) for g in geoms.to_crs(crs)], out_shape=shape, transform=transform,
                            all_touched=True).astype(bool)
    dem[0][~on if invert else on] = value
    _rewrite_raster(path, data=dem, nodata="keep" if np.isnan(value) else None)


def _isolated_glacier(gdf: gpd.GeoDataFrame) -> int:
    """The last glacier in file order with no neighbour within 300 m (voids on it stay its own)."""
    utm = gdf.to_crs(32632).geometry
    return [i for i in range(len(gdf)) if utm.drop(utm.index[i]).distance(utm.iloc[i]).min() > 300][-1]


@pytest.mark.parametrize("policy", ["fill", "mask"])
@pytest.mark.parametrize("void", [np.nan, -9999.0, -32768.0, 0.0])
def test_dem_voids_on_a_glacier_are_filled_or_masked(raw_copy, tmp_path, void, policy):
    """NaN voids and sentinels without a nodata tag (-9999 ASTER, -32768 SRTM, 0 HMA) are voids:
    one warning counts them; "fill" interpolates them from the surrounding terrain, "mask" leaves
    them NaN in mask_dem_void, invalid for sensor sets with a dem group only."""
    from glaciermap.data.windows import prepare_cube

    gdf = gpd.read_file(raw_copy / "outlines.gpkg")
    i = _isolated_glacier(gdf)
    gid = gdf.glacier_id.iloc[i]
    with rasterio.open(raw_copy / "dem.tif") as ds:
        before = ds.read(1)
    _dem_nan_on(raw_copy, gdf.geometry.iloc[[i]], value=void)
    cfg = updated(DATA, dem_voids=policy)
    with pytest.warns(UserWarning, match=rf"dem.tif: \d+ DEM pixel\(s\) around the glaciers are voids"):
        index = ingest_region(raw_copy, tmp_path / "cubes", cfg, SensorsConfig(), progress=False)
    row = index[(index.glacier_id == gid) & (index.role == "inventory")].iloc[0]
    cube = read_cube(tmp_path / "cubes" / row.path)
    on = cube.mask_glacier == 1
    dem = cube.data[cube.bands.index("dem")]
    if policy == "fill":
        assert np.isfinite(dem[on]).all() and not cube.mask_dem_void[on].any()
        # interpolated from the terrain around: within the glacier's true elevation range +- 100 m
        lo, hi = np.nanmin(before), np.nanmax(before)
        assert lo - 100 < dem[on].min() and dem[on].max() < hi + 100
        assert row.glacier_dem_void_fraction == 0.0
    else:
        assert cube.mask_dem_void[on].mean() > 0.9 and np.isnan(dem[cube.mask_dem_void == 1]).all()
        assert row.glacier_dem_void_fraction > 0.9
        stats = {b: {"mean": 0.0, "std": 1.0} for b in cube.bands}
        with_dem = prepare_cube(tmp_path / "cubes" / row.path, SensorsConfig().resolve("optical_dem"), stats)
        optical = prepare_cube(tmp_path / "cubes" / row.path, SensorsConfig().resolve("optical"), stats)
        np.testing.assert_array_equal(with_dem.valid, (cube.mask_invalid == 0) & (cube.mask_dem_void == 0))
        np.testing.assert_array_equal(optical.valid, cube.mask_invalid == 0)


# ------------------------------------------------------------------------ SAR layover and shadow
SENSORS_SAR = SensorsConfig(groups={"optical": SensorsConfig().groups["optical"], "sar": ["VV", "VH", "coh"]},
                            sets={"optical_sar": ["optical", "sar"]})


def test_sar_voids_are_kept_or_filled_from_their_neighbours(raw_region, tmp_path):
    """Layover and radar shadow are NaN in the SAR bands. "keep" leaves them so; "fill" puts there
    values interpolated from the pixels around, within the range of the window's own values, and
    changes no other pixel or band. Both record the void share of the window."""
    cubes = {}
    for policy in ("keep", "fill"):
        ingest_region(raw_region, tmp_path / policy, updated(DATA, sar_voids=policy), SENSORS_SAR, progress=False)
        cubes[policy] = tmp_path / policy
    index = read_index(cubes["keep"])
    n_void = 0
    for rel in index.path:
        keep, fill = read_cube(cubes["keep"] / rel), read_cube(cubes["fill"] / rel)
        sar = [keep.bands.index(b) for b in ("VV", "VH", "coh")]
        void = ~np.isfinite(keep.data[sar]).all(axis=0)
        assert keep.attrs["sar_void_fraction"] == fill.attrs["sar_void_fraction"] == pytest.approx(void.mean())
        np.testing.assert_array_equal(np.delete(keep.data, sar, axis=0), np.delete(fill.data, sar, axis=0))
        np.testing.assert_array_equal(keep.data[sar][:, ~void], fill.data[sar][:, ~void])
        if void.any() and (~void).sum() > 100:
            filled = fill.data[sar][:, void]
            assert np.isfinite(filled).all(), rel
            for band, values in zip(keep.data[sar], filled):
                assert np.nanmin(band) <= values.min() and values.max() <= np.nanmax(band)
            n_void += int(void.sum())
    assert n_void > 0, "the simulated region has no layover or radar shadow: nothing was tested"


# ------------------------------------------------------------------------ dh/dt (issue #17)
#: optical plus the dh/dt map: the sensor groups of the dh/dt tests (no SAR / DEM: faster ingest)
SENSORS_DHDT = SensorsConfig(groups={"optical": SensorsConfig().groups["optical"], "dhdt": ["dhdt"]},
                             sets={"optical": ["optical"], "optical_dhdt": ["optical", "dhdt"]})


@pytest.fixture(scope="module")
def dhdt_cubes(raw_region, tmp_path_factory) -> Path:
    """Cubes of the tiny region with its dh/dt map, voids masked (data.dhdt_voids: mask)."""
    out = tmp_path_factory.mktemp("dhdt") / "cubes"
    ingest_region(raw_region, out, updated(DATA, dhdt_voids="mask"), SENSORS_DHDT, sensor_sets=["optical_dhdt"],
                  progress=False)
    return out


def test_dhdt_reaches_the_cubes_with_its_voids(raw_region, dhdt_cubes):
    """The cube's `dhdt` band is the map bilinearly interpolated onto the 10 m grid (checked against
    scipy's bilinear interpolation of the 100 m raster at every pixel with 4 valid neighbours);
    voids are NaN in mask_dhdt_void ("mask"), invalid only for sets with the dhdt group, and
    interpolated from their neighbours with "fill"."""
    from scipy import ndimage

    from glaciermap.data.dhdt import read_dhdt_on_grid
    from glaciermap.data.windows import prepare_cube

    index = read_index(dhdt_cubes)
    with rasterio.open(raw_region / "dhdt.tif") as ds:
        raster, t = ds.read(1), ds.transform
    assert np.isnan(raster).any()
    interior_voids, checked_valid = 0, False
    for path in index[index.role == "inventory"].path:
        cube = read_cube(dhdt_cubes / path)
        assert cube.bands == [*SENSORS_DHDT.groups["optical"], "dhdt"]
        assert list(cube.attrs["dhdt_period"]) == [2000, 2015]
        dhdt = cube.select(["dhdt"])[0]
        xs, ys = cube.grid.xy_coords()
        col, row = (xs - t.c) / t.a - 0.5, (ys - t.f) / t.e - 0.5
        expected = ndimage.map_coordinates(raster, np.meshgrid(row, col, indexing="ij"), order=1, cval=np.nan)
        known = np.isfinite(expected)
        assert known.mean() > 0.5
        np.testing.assert_allclose(dhdt[known], expected[known], atol=1e-4)
        np.testing.assert_array_equal(cube.mask_dhdt_void == 1, np.isnan(dhdt))
        filled = read_dhdt_on_grid(raw_region / "dhdt.tif", cube.grid, "fill")
        inside = ~filled.void  # within the raster: every void interpolated, the rest unchanged
        assert np.isfinite(filled.z[inside]).all()
        np.testing.assert_allclose(filled.z[known], expected[known], atol=1e-4)
        interior_voids += int((inside & (cube.mask_dhdt_void == 1)).sum())
        if cube.mask_dhdt_void.any() and not checked_valid:
            stats = {b: {"mean": 0.0, "std": 1.0} for b in cube.bands}
            with_dhdt = prepare_cube(dhdt_cubes / path, SENSORS_DHDT.resolve("optical_dhdt"), stats)
            optical = prepare_cube(dhdt_cubes / path, SENSORS_DHDT.resolve("optical"), stats)
            np.testing.assert_array_equal(with_dhdt.valid, (cube.mask_invalid == 0) & (cube.mask_dhdt_void == 0))
            np.testing.assert_array_equal(optical.valid, cube.mask_invalid == 0)
            checked_valid = True
    assert checked_valid and interior_voids > 0


def test_a_dhdt_set_on_a_region_without_dhdt_is_one_line_naming_region_yaml(raw_copy, tmp_path, capsys,
                                                                            monkeypatch):
    manifest = _manifest(raw_copy)
    del manifest["dhdt"], manifest["dhdt_period"]
    (raw_copy / "region.yaml").write_text(yaml.safe_dump(manifest))
    with pytest.raises(InputDataError) as err:
        ingest_region(raw_copy, tmp_path / "cubes", DATA, SENSORS_DHDT, sensor_sets=["optical_dhdt"], progress=False)
    _assert_error_names(err.value, raw_copy / "region.yaml",
                        "sensor set(s) ['optical_dhdt'] use the dhdt group, but the region has no dh/dt map")
    assert not (tmp_path / "cubes").exists()
    # the CLI: train.sensor_sets asks for it; one line, nothing written
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"buffer_m": DATA.buffer_m}, "sensors": SENSORS_DHDT.model_dump(),
                                      "train": {"sensor_sets": ["optical_dhdt"]},
                                      "infer": {"sensor_set": "optical_dhdt"}}))
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    code = cli.main(["--params", str(params), "-q", "ingest", "--raw", str(raw_copy), "--out", str(tmp_path / "c")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: {raw_copy / 'region.yaml'}: sensor set(s) ['optical_dhdt'] use the dhdt")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("value", [np.nan, -9999.0, 0.0])
def test_a_dem_that_is_all_void_is_one_clear_error(raw_copy, tmp_path, value):
    gdf = gpd.read_file(raw_copy / "outlines.gpkg")
    _dem_nan_on(raw_copy, gdf.geometry.iloc[:0], invert=True, value=value)
    with pytest.raises(InputDataError) as err:
        _ingest(raw_copy, tmp_path / "cubes")
    _assert_error_names(err.value, raw_copy / "dem.tif",
                        "DEM has no relief (every value is 0)" if value == 0 else "DEM has no valid elevation")
    assert not (tmp_path / "cubes").exists()


def test_dem_spikes_and_pits_are_voids():
    from glaciermap.data.dem import check_usable, find_voids

    z = np.add.outer(np.arange(20.0), np.arange(20.0)) * 30 + 2000  # a 30 m/px ramp
    z[5, 5], z[10, 10], z[15, 3] = 4000.0, 200.0, 0.0  # spike, pit, zero in high terrain
    z[2, 15] = -32768
    expected = np.zeros(z.shape, bool)
    expected[[5, 10, 15, 2], [5, 10, 3, 15]] = True
    np.testing.assert_array_equal(find_voids(z), expected)
    low = np.add.outer(np.arange(20.0), np.arange(20.0))  # coastal: 0 m is a real elevation
    assert not find_voids(low).any()
    with pytest.raises(InputDataError, match="no valid elevation"):
        check_usable(np.full((4, 4), -9999.0), find_voids(np.full((4, 4), -9999.0)), Path("x.tif"))


def test_dem_nan_off_glacier_stays_nan(raw_copy, tmp_path):
    """No data in the DEM away from the glaciers is no error: it stays NaN in the cubes' buffer."""
    gdf = gpd.read_file(raw_copy / "outlines.gpkg")
    _dem_nan_on(raw_copy, gdf.to_crs(32632).buffer(100.0), invert=True)
    index = _ingest(raw_copy, tmp_path / "cubes")
    nan_somewhere = False
    for _, row in index.iterrows():
        cube = read_cube(tmp_path / "cubes" / row.path)
        dem = cube.data[cube.bands.index("dem")]
        assert np.isfinite(dem[cube.mask_glacier == 1]).all()
        nan_somewhere |= bool(np.isnan(dem).any())
    assert nan_somewhere


@pytest.mark.parametrize("rel, how", [("scenes/2023/optical.tif", "truncate"),
                                      ("scenes/2015/cloud.tif", "truncate"),
                                      ("dem.tif", "truncate"),
                                      ("scenes/2016/optical.tif", "junk")])
def test_corrupt_geotiff(raw_copy, tmp_path, rel, how):
    path = raw_copy / rel
    if how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(b"II*\x00" + np.random.default_rng(0).bytes(2000))
    with pytest.raises(InputDataError) as err:
        _ingest(raw_copy, tmp_path / "cubes")
    _assert_error_names(err.value, path, "cannot read raster")
    assert "corrupt" in err.value.message
    assert not (tmp_path / "cubes").exists() and not _leftovers(tmp_path)


def test_missing_region_yaml_or_listed_file(raw_copy, tmp_path):
    (raw_copy / "scenes" / "2016" / "cloud.tif").unlink()
    with pytest.raises(InputDataError) as err:
        _ingest(raw_copy, tmp_path / "cubes")
    _assert_error_names(err.value, raw_copy / "scenes" / "2016" / "cloud.tif", "file missing")
    (raw_copy / "region.yaml").unlink()
    with pytest.raises(InputDataError) as err:
        _ingest(raw_copy, tmp_path / "cubes")
    _assert_error_names(err.value, raw_copy / "region.yaml", "region.yaml missing")
    with pytest.raises(InputDataError) as err:
        _ingest(tmp_path / "nowhere", tmp_path / "cubes")
    _assert_error_names(err.value, tmp_path / "nowhere", "region folder not found")


def test_all_cloud_scene(raw_copy, tmp_path):
    path = raw_copy / "scenes" / "2023" / "cloud.tif"
    with rasterio.open(path) as ds:
        ones = np.ones((1, ds.height, ds.width), np.uint8)
    _rewrite_raster(path, data=ones)
    with pytest.raises(InputDataError) as err:
        _ingest(raw_copy, tmp_path / "cubes")
    _assert_error_names(err.value, path, "100% cloud")


# --------------------------------------------------------------------------------------- CLI
def _cli(tmp_path: Path, raw: Path, out: Path, monkeypatch) -> int:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"data": {"buffer_m": DATA.buffer_m}}))
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main() replaces it
    return cli.main(["--params", str(params), "-q", "ingest", "--raw", str(raw), "--out", str(out)])


@pytest.mark.parametrize("case", ["missing_band", "dem_all_void", "truncated"])
def test_cli_reports_one_line_and_writes_nothing(raw_copy, tmp_path, capsys, monkeypatch, case):
    if case == "missing_band":
        bad = raw_copy / "scenes" / "2015" / "optical.tif"
        with rasterio.open(bad) as ds:
            data, names = ds.read(), list(ds.descriptions)
        _rewrite_raster(bad, data=data[:4], descriptions=names[:4])
        problem = "missing band(s) ['B11', 'B12']"
    elif case == "dem_all_void":
        bad = raw_copy / "dem.tif"
        _dem_nan_on(raw_copy, gpd.read_file(raw_copy / "outlines.gpkg").geometry.iloc[:0], invert=True,
                    value=-9999.0)
        problem = "DEM has no valid elevation (all -9999)"
    else:
        bad = raw_copy / "scenes" / "2023" / "optical.tif"
        bad.write_bytes(bad.read_bytes()[:20000])
        problem = "cannot read raster data (corrupt or truncated file)"
    out_parent = tmp_path / "products"
    out_parent.mkdir()
    code = _cli(tmp_path, raw_copy, out_parent / "cubes", monkeypatch)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"error: {bad}: {problem}"), lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert list(out_parent.iterdir()) == []  # no output folder, no temporary leftovers


def test_cli_failure_keeps_previous_cubes(raw_copy, cubes_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cubes"
    shutil.copytree(cubes_dir, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    (raw_copy / "scenes" / "2023" / "cloud.tif").unlink()
    assert _cli(tmp_path, raw_copy, out, monkeypatch) == 2
    assert "file missing" in capsys.readouterr().err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert not _leftovers(tmp_path)


def test_cli_ingest_succeeds(raw_region, cube_index, tmp_path, capsys, monkeypatch):
    out = tmp_path / "cubes"
    assert _cli(tmp_path, raw_region, out, monkeypatch) == 0
    captured = capsys.readouterr()
    assert f"{cube_index.glacier_id.nunique()} glaciers, {len(cube_index)} cubes" in captured.out
    pd.testing.assert_frame_equal(read_index(out), cube_index)


def test_cli_bad_params_is_a_config_error(tmp_path, capsys, monkeypatch):
    params = tmp_path / "params.yaml"
    params.write_text("data: {bufer_m: 10}\n")
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)
    assert cli.main(["--params", str(params), "ingest"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {params}: unknown key 'data.bufer_m'")
    with pytest.raises(ConfigError):  # -v: the full traceback, for debugging
        cli.main(["--params", str(params), "-v", "ingest"])


def test_a_data_band_flagged_as_alpha_is_a_clear_error(tmp_path):
    """GDAL treats an alpha band as transparency: read as data it would blank the other bands."""
    from rasterio.enums import ColorInterp

    from glaciermap.data.raw import Grid, read_on_grid
    from glaciermap.errors import InputDataError

    path = tmp_path / "optical.tif"
    transform = rasterio.transform.from_origin(600000, 5100000, 30, 30)
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=4, dtype="uint8",
                       crs="EPSG:32632", transform=transform) as dst:
        dst.write(np.full((4, 8, 8), 100, np.uint8))
        dst.descriptions = ("NIR", "R", "G", "B")
        dst.colorinterp = [ColorInterp.gray, ColorInterp.gray, ColorInterp.gray, ColorInterp.alpha]
    grid = Grid(rasterio.crs.CRS.from_epsg(32632), transform, 8, 8)
    with pytest.raises(InputDataError, match=r"\['B'\] are flagged as alpha") as err:
        read_on_grid(path, ["NIR", "B"], grid, resampling=rasterio.enums.Resampling.nearest)
    assert str(path) in err.value.message
    assert read_on_grid(path, ["NIR", "R"], grid, resampling=rasterio.enums.Resampling.nearest).shape == (2, 8, 8)


# ------------------------------------------------------------- outlines and scenes left out
def _scene_box(raw: Path, epoch: str = "2015"):
    with rasterio.open(raw / "scenes" / epoch / "optical.tif") as ds:
        return box(*ds.bounds)


def _shift_across_the_west_edge(raw: Path, fraction: float) -> tuple[str, float]:
    """Move the largest glacier so that about `fraction` of its width lies west of the scene;
    return its id and the exact fraction of its area still inside."""
    path = raw / "outlines.gpkg"
    gdf = gpd.read_file(path)
    utm = gdf.to_crs(32632)
    i = int(utm.area.argmax())
    g = utm.geometry.iloc[i]
    scene = _scene_box(raw)
    dx = scene.bounds[0] - g.bounds[0] - fraction * (g.bounds[2] - g.bounds[0])
    moved = gpd.GeoSeries([g], crs=32632).translate(xoff=dx)
    utm.loc[utm.index[i], "geometry"] = moved.iloc[0]
    utm.to_crs(gdf.crs).to_file(path)
    m = moved.iloc[0]
    return gdf.glacier_id.iloc[i], m.intersection(scene).area / m.area


def test_outline_across_the_scene_edge_is_skipped_with_the_true_reason(raw_copy, tmp_path):
    """It used to stop ingest with "DEM has NaN/no-data on 30 % of glacier ... (fill voids)"."""
    gid, inside = _shift_across_the_west_edge(raw_copy, 0.3)
    assert 0.5 < inside < 0.9  # precondition
    with pytest.warns(UserWarning, match=rf"1 outline\(s\) / acquisition\(s\) left out .*\['{gid}'\]"):
        index = _ingest(raw_copy, tmp_path / "cubes")
    assert gid not in set(index.glacier_id)
    listed = pd.read_csv(tmp_path / "cubes" / "skipped.csv")
    assert listed.glacier_id.tolist() == [gid]
    reason = listed.reason.iloc[0]
    assert reason.startswith(f"crosses the edge of {raw_copy / 'scenes' / '2015' / 'optical.tif'}: "
                             f"{1 - inside:.1%} of the outline outside"), reason


def test_edge_policy_keep_keeps_outlines_covered_enough(raw_copy, tmp_path):
    gid, inside = _shift_across_the_west_edge(raw_copy, 0.3)
    cfg = updated(DATA, edge_policy="keep", min_coverage=0.5)
    index = ingest_region(raw_copy, tmp_path / "cubes", cfg, SensorsConfig(), progress=False)
    rows = index[index.glacier_id == gid]
    assert sorted(rows.role) == ["inventory", "recent"]
    assert rows.coverage.to_numpy() == pytest.approx(inside, abs=1e-3)
    cube = read_cube(tmp_path / "cubes" / rows.path.iloc[0])
    on = cube.mask_glacier == 1
    off_scene = on & ~np.isfinite(cube.data[0])  # no optical data west of the scene
    assert off_scene.sum() / on.sum() == pytest.approx(1 - inside, abs=0.05)
    assert cube.mask_invalid[off_scene].all()  # ... so masked invalid
    assert pd.read_csv(tmp_path / "cubes" / "skipped.csv").empty
    strict = updated(DATA, edge_policy="keep", min_coverage=0.95)
    index = ingest_region(raw_copy, tmp_path / "cubes2", strict, SensorsConfig(), progress=False)
    assert gid not in set(index.glacier_id)
    assert "below data.min_coverage 0.95" in pd.read_csv(tmp_path / "cubes2" / "skipped.csv").reason.iloc[0]


def test_outline_smaller_than_a_pixel_is_listed_and_skipped(raw_copy, tmp_path):
    path = raw_copy / "outlines.gpkg"
    gdf = gpd.read_file(path)
    c = _scene_box(raw_copy).centroid
    # 3 x 3 m, between the pixel centres (multiples of 10 m + 5) of the 10 m grid: none inside
    x0 = np.floor(c.x / 10) * 10 + 6
    y0 = np.floor(c.y / 10) * 10 + 6
    tiny = gpd.GeoDataFrame({"glacier_id": ["TINY"], "date": [gdf.date.iloc[0]]},
                            geometry=[box(x0, y0, x0 + 3, y0 + 3)], crs=32632).to_crs(gdf.crs)
    pd.concat([gdf, tiny], ignore_index=True).to_file(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = _ingest(raw_copy, tmp_path / "cubes")
    messages = [str(w.message) for w in caught]
    assert not [m for m in messages if "empty slice" in m], messages  # numpy's nameless warning is gone
    assert [m for m in messages if "left out" in m and "TINY" in m], messages
    assert "TINY" not in set(index.glacier_id) and index.glacier_invalid_fraction.notna().all()
    listed = pd.read_csv(tmp_path / "cubes" / "skipped.csv")
    assert listed.glacier_id.tolist() == ["TINY"]
    assert listed.reason.iloc[0].startswith("smaller than one pixel (9 m2 at 10 m")


def test_outlines_file_with_several_layers_needs_the_layer_name(raw_copy, tmp_path):
    path = raw_copy / "outlines.gpkg"
    gdf = gpd.read_file(path)
    gdf.iloc[:2].to_file(path, layer="aaa_other")  # sorts first: the layer a reader would take
    with pytest.raises(InputDataError) as err:
        _ingest(raw_copy, tmp_path / "cubes")
    _assert_error_names(err.value, path, "the file has 2 layers", "aaa_other", "outlines", "set outlines_layer")
    manifest = yaml.safe_load((raw_copy / "region.yaml").read_text())
    (raw_copy / "region.yaml").write_text(yaml.safe_dump({**manifest, "outlines_layer": "nope"}))
    with pytest.raises(InputDataError, match=r"no layer 'nope'"):
        _ingest(raw_copy, tmp_path / "cubes")
    (raw_copy / "region.yaml").write_text(yaml.safe_dump({**manifest, "outlines_layer": "outlines"}))
    index = _ingest(raw_copy, tmp_path / "cubes")
    assert set(index.glacier_id) == set(gdf.glacier_id)


def test_a_misplaced_first_inventory_scene_is_named(raw_copy, tmp_path):
    """Only scenes/2015 (the first inventory epoch) lies elsewhere: the error names it, not the outlines."""
    for name in ("optical.tif", "cloud.tif", "sar.tif"):
        p = raw_copy / "scenes" / "2015" / name
        with rasterio.open(p) as ds:
            profile, data, desc = ds.profile, ds.read(), ds.descriptions
        profile["transform"] = profile["transform"] * rasterio.Affine.translation(0, 0)
        t = profile["transform"]
        profile["transform"] = rasterio.Affine(t.a, t.b, t.c + 200_000, t.d, t.e, t.f)
        p.unlink()
        with rasterio.open(p, "w", **profile) as ds:
            ds.write(data)
            ds.descriptions = desc
    with pytest.raises(InputDataError) as err:
        _ingest(raw_copy, tmp_path / "cubes")
    _assert_error_names(err.value, raw_copy / "scenes" / "2015" / "optical.tif", "no outline overlaps this raster")
    assert "outlines.gpkg" not in err.value.message


def _cloud_over(path: Path, geoms: gpd.GeoSeries | None = None) -> None:
    """Mark a cloud mask cloudy everywhere (geoms None) or on the given outlines."""
    with rasterio.open(path) as ds:
        cl, shape, transform, crs = ds.read(), ds.shape, ds.transform, ds.crs
    if geoms is None:
        cl[:] = 1
    else:
        on = features.rasterize([(g, 1) for g in geoms.to_crs(crs)], out_shape=shape, transform=transform,
                                all_touched=True).astype(bool)
        cl[0][on] = 1
    _rewrite_raster(path, data=cl)


def test_an_all_cloud_alternate_is_left_out_not_fatal(multi_acq_region, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(multi_acq_region, raw, ignore=without_truth())
    _cloud_over(raw / "scenes" / "2023-alt1" / "cloud.tif")
    with pytest.warns(UserWarning, match=r"left out .*\['2023-alt1'\]"):
        index = _ingest(raw, tmp_path / "cubes")
    assert "2023-alt1" not in set(index.scene)
    assert len(index) == 2 * index.glacier_id.nunique()  # every cube is there (inventory + recent)
    listed = pd.read_csv(tmp_path / "cubes" / "skipped.csv", dtype=str, keep_default_na=False)
    assert listed[["glacier_id", "scene"]].values.tolist() == [["", "2023-alt1"]]
    assert listed.reason.iloc[0].startswith("scene is 100% cloud / cloud shadow")


def test_a_glacier_wholly_masked_in_its_acquisition_is_named(raw_copy, tmp_path):
    gdf = gpd.read_file(raw_copy / "outlines.gpkg")
    i = _isolated_glacier(gdf)
    gid = gdf.glacier_id.iloc[i]
    _cloud_over(raw_copy / "scenes" / "2023" / "cloud.tif", gdf.geometry.iloc[[i]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = _ingest(raw_copy, tmp_path / "cubes")
    masked = [str(w.message) for w in caught if "100% masked" in str(w.message)]
    assert len(masked) == 1 and f"{gid} (2023, 2023)" in masked[0], masked
    full = index[index.glacier_invalid_fraction >= 1.0]
    assert masked[0].startswith(f"{len(full)} glacier cube(s) 100% masked")


def test_other_date_outlines_are_marked_in_their_own_layer(raw_region, cubes_dir, cube_index, tmp_path):
    """data.mark_other_date_outlines: each cube's mask_other_date is 1 inside exactly the outlines
    inventoried at another epoch than its image; off (the default), cubes have no such layer."""
    from glaciermap.data.raw import open_region, read_outlines

    region = open_region(raw_region)
    outlines = read_outlines(region)
    epochs = [region.nearest_inventory_epoch(y) for y in outlines.inventory_year]
    assert len(set(epochs)) == 2  # the simulated inventory mixes two years
    out = tmp_path / "cubes"
    index = ingest_region(raw_region, out, updated(DATA, mark_other_date_outlines=True), SensorsConfig(),
                          progress=False)
    n_other = n_same = 0
    for _, row in index.iterrows():
        cube = read_cube(out / row.path)
        g = cube.grid
        other = [geom for geom, e in zip(outlines.to_crs(g.crs).geometry, epochs) if e != row.epoch]
        expected = features.rasterize(((geom, 1) for geom in other), out_shape=(g.height, g.width),
                                      transform=g.transform, fill=0, dtype="uint8") if other else 0
        assert (cube.mask_other_date == expected).all(), row.path
        if row.role == "recent":  # every outline predates a recent image, the cube's own included
            assert (cube.mask_other_date == cube.mask_all).all()
        else:  # the own outline is of the image's date; the marked ones are labelled ice
            assert not (cube.mask_other_date & cube.mask_glacier).any()
            assert not (cube.mask_other_date & (1 - cube.mask_all)).any()
            n_other += int(cube.mask_other_date.sum())
            n_same += int((cube.mask_all & (1 - cube.mask_glacier) & (1 - cube.mask_other_date)).sum())
    assert n_other > 0 and n_same > 0  # neighbours of both kinds occur
    assert all(read_cube(cubes_dir / p).mask_other_date is None for p in cube_index.path)
