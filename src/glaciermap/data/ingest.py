"""Raw region -> one cube per glacier and epoch, every sensor on one 10 m UTM grid.

Each cube reads only the window of each raster it needs (rasterio WarpedVRT), so memory is
bounded by the size of one glacier's cube however large the scenes are.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj.aoi import AreaOfInterest
from pyproj.database import query_utm_crs_info
from rasterio import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.features import rasterize
from shapely.geometry import box
from tqdm.auto import tqdm

from glaciermap.config import DataConfig, SensorsConfig
from glaciermap.data.cubes import INDEX_FILE, Cube, glacier_location, index_row, write_cube
from glaciermap.data.raw import (Grid, Region, decimal_year, open_raster, open_region, raster_footprint,
                                 read_on_grid, read_outlines, band_indexes)
from glaciermap.data.terrain import hillshade, slope_deg
from glaciermap.errors import InputDataError
from glaciermap.io import atomic_path

CLOUD_CLEAR, CLOUD_NODATA = 0, 255


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS84 UTM CRS of a point."""
    info = query_utm_crs_info(datum_name="WGS 84",
                              area_of_interest=AreaOfInterest(lon, lat, lon, lat))[0]
    return CRS.from_epsg(int(info.code))


def target_crs(outlines: gpd.GeoDataFrame, cfg: DataConfig) -> CRS:
    if cfg.crs != "auto":
        return CRS.from_user_input(cfg.crs)
    c = outlines.to_crs(4326).union_all().centroid
    return utm_crs(c.x, c.y)


def glacier_grid(geom, crs: CRS, res: float, buffer_m: float) -> Grid:
    """Grid covering a glacier's bounds plus a buffer, snapped to multiples of the resolution."""
    minx, miny, maxx, maxy = geom.bounds
    minx = np.floor((minx - buffer_m) / res) * res
    miny = np.floor((miny - buffer_m) / res) * res
    maxx = np.ceil((maxx + buffer_m) / res) * res
    maxy = np.ceil((maxy + buffer_m) / res) * res
    width, height = int(round((maxx - minx) / res)), int(round((maxy - miny) / res))
    return Grid(crs, Affine(res, 0, minx, 0, -res, maxy), width, height)


def rasterize_geoms(geoms, grid: Grid) -> np.ndarray:
    """uint8 mask of pixels whose centre lies inside any of the geometries."""
    geoms = [g for g in geoms if g is not None and not g.is_empty]
    if not geoms:
        return np.zeros((grid.height, grid.width), np.uint8)
    return rasterize(((g, 1) for g in geoms), out_shape=(grid.height, grid.width),
                     transform=grid.transform, fill=0, dtype="uint8")


def check_region(region: Region, sensors: SensorsConfig, cfg: DataConfig) -> dict[str, bool]:
    """Check every scene up front (CRS, bands, cloud cover); return {scene: has_sar}."""
    optical = sensors.groups.get("optical", [])
    has_sar = {}
    if region.dem_path is not None:
        with open_raster(region.dem_path):
            pass
    elif "dem" in sensors.groups:
        raise InputDataError("sensors.groups has a 'dem' group but the region has no DEM (dem: null)",
                             path=region.root / "region.yaml",
                             hint="add a DEM to the region, or drop the dem group from sensors.groups")
    for scene in region.scenes:
        opt_path = region.scene_path(scene, "optical")
        with open_raster(opt_path) as opt:
            band_indexes(opt, optical, opt_path)
            if region.has_cloud_masks:
                _check_cloud_mask(opt, region.scene_path(scene, "cloud"), cfg.max_scene_cloud_fraction)
        sar_path = region.scene_path(scene, "sar")
        has_sar[scene] = sar_path.exists()
        if has_sar[scene] and "sar" in sensors.groups:
            with open_raster(sar_path) as sar:
                band_indexes(sar, sensors.groups["sar"], sar_path)
    return has_sar


def _check_cloud_mask(opt, cloud_path: Path, max_fraction: float) -> None:
    """The cloud mask lies on the optical scene's grid and leaves enough clear sky."""
    with open_raster(cloud_path) as cl:
        if opt.crs != cl.crs or opt.transform != cl.transform or opt.shape != cl.shape:
            raise InputDataError(
                f"cloud mask grid ({cl.crs}, {cl.shape}) differs from optical.tif ({opt.crs}, {opt.shape})",
                path=cloud_path, hint="the cloud mask must come on the optical scene's grid")
        _check_cloud_cover(cl, cloud_path, max_fraction)


def _check_cloud_cover(ds, path: Path, max_fraction: float) -> None:
    step = max(1, max(ds.shape) // 1024)  # decimated read: bounded memory on huge scenes
    try:
        cl = ds.read(1, out_shape=(max(1, ds.height // step), max(1, ds.width // step)),
                     resampling=Resampling.nearest)
    except RasterioError as err:  # e.g. a truncated file: the header opens, tiles do not
        raise InputDataError(f"cannot read raster data (corrupt or truncated file): {err}",
                             path=path) from None
    valid = cl != CLOUD_NODATA
    if not valid.any():
        raise InputDataError("scene is all no-data", path=path)
    cloudy = float((cl[valid] != CLOUD_CLEAR).mean())
    if cloudy >= max_fraction:
        raise InputDataError(f"scene is {cloudy:.0%} cloud / cloud shadow", path=path,
                             hint="choose a clearer acquisition, or raise data.max_scene_cloud_fraction")


def invalid_mask(region: Region, scene: str, grid: Grid, optical: np.ndarray) -> np.ndarray:
    """Pixels of one acquisition that cannot be mapped: optical no-data, cloud or cloud shadow."""
    invalid = ~np.isfinite(optical).all(axis=0)
    if region.has_cloud_masks:
        cloud = read_on_grid(region.scene_path(scene, "cloud"), None, grid,
                             resampling=Resampling.nearest, fill=CLOUD_NODATA)[0]
        invalid |= cloud != CLOUD_CLEAR
    return invalid


def clearest_scene(region: Region, epoch: str, optical_band: str, grid: Grid,
                   glacier_mask: np.ndarray) -> str:
    """The epoch's acquisition leaving the least of the glacier masked (the main one on a tie)."""
    scenes = list(region.acquisitions(epoch))
    if len(scenes) == 1:
        return scenes[0]
    on_glacier = glacier_mask == 1

    def masked(scene: str) -> float:
        opt = read_on_grid(region.scene_path(scene, "optical"), [optical_band], grid,
                           resampling=Resampling.bilinear)
        return float(invalid_mask(region, scene, grid, opt)[on_glacier].mean()) if on_glacier.any() else 0.0

    return min(scenes, key=masked)


def build_cube(region: Region, sensors: SensorsConfig, grid: Grid, geom, all_geoms,
               epoch: str, scene: str, dem_block: np.ndarray, has_sar: bool, attrs: dict) -> Cube:
    """Read every sensor of one acquisition (`scene`, of `epoch`) onto a glacier's grid; add masks."""
    bands: list[str] = []
    layers: list[np.ndarray] = []
    optical = sensors.groups.get("optical", [])
    opt = read_on_grid(region.scene_path(scene, "optical"), optical, grid, resampling=Resampling.bilinear)
    bands += optical
    layers.append(opt)
    if has_sar and "sar" in sensors.groups:
        sar_bands = sensors.groups["sar"]
        layers.append(read_on_grid(region.scene_path(scene, "sar"), sar_bands, grid,
                                   resampling=Resampling.bilinear))
        bands += sar_bands
    if "dem" in sensors.groups:
        layers.append(dem_block)
        bands += sensors.groups["dem"]
    invalid = invalid_mask(region, scene, grid, opt)
    return Cube(
        data=np.concatenate(layers, axis=0), bands=bands,
        mask_glacier=rasterize_geoms([geom], grid),
        mask_all=rasterize_geoms(all_geoms, grid),
        mask_invalid=invalid.astype(np.uint8),
        grid=grid,
        attrs={**attrs, "epoch": epoch, "scene": scene, "year": decimal_year(region.scenes[scene]),
               "invalid_fraction": float(invalid.mean())},
    )


def dem_features(region: Region, grid: Grid, names: list[str], glacier_id: str,
                 glacier_mask: np.ndarray) -> np.ndarray:
    """DEM and derived features (slope, hillshade) on the cube grid.

    NaN on the glacier itself is an error; NaN in the buffer (beyond the DEM's edge) stays NaN.
    """
    dem = read_on_grid(region.dem_path, None, grid, resampling=Resampling.bilinear)[0]
    bad = ~np.isfinite(dem) & (glacier_mask == 1)
    if bad.any():
        raise InputDataError(
            f"DEM has NaN/no-data on {bad.sum() / max(glacier_mask.sum(), 1):.1%} of glacier {glacier_id}"
            + (" (the DEM does not cover it)" if bad.sum() == glacier_mask.sum() else ""),
            path=region.dem_path, hint="fill voids (e.g. gdal_fillnodata.py) or use a DEM covering the region")
    feats = {"dem": dem, "slope": slope_deg(dem, grid.res), "hillshade": hillshade(dem, grid.res)}
    unknown = [n for n in names if n not in feats]
    if unknown:
        raise InputDataError(f"unknown DEM feature(s) {unknown}; available: {list(feats)}",
                             path=region.dem_path)
    return np.stack([feats[n] for n in names]).astype(np.float32)


def _glacier_job(args) -> list[dict]:
    (region_root, sensors, cfg, out_dir, row, neighbours, crs, has_sar) = args
    region = open_region(region_root)
    gid, geom = row["glacier_id"], row["geometry"]
    grid = glacier_grid(geom, crs, cfg.resolution_m, cfg.buffer_m)
    glacier_mask = rasterize_geoms([geom], grid)
    dem_block = dem_features(region, grid, sensors.groups.get("dem", []), gid,
                             glacier_mask) if "dem" in sensors.groups else None
    inv_epoch = region.nearest_inventory_epoch(row["inventory_year"])
    loc = glacier_location(glacier_mask, grid)
    attrs = {"glacier_id": gid, "inventory_year": row["inventory_year"], "inventory_epoch": inv_epoch,
             "area_km2": loc["area_km2"], "lon": loc["lon"], "lat": loc["lat"],
             "crs": crs.to_string(), "res": cfg.resolution_m}
    rows = []
    for epoch in [inv_epoch, *region.recent_epochs]:
        scene = clearest_scene(region, epoch, sensors.groups["optical"][0], grid, glacier_mask)
        cube = build_cube(region, sensors, grid, geom, neighbours, epoch, scene, dem_block,
                          has_sar[scene], attrs)
        rel = Path(epoch) / f"{gid}.nc"
        write_cube(out_dir / rel, cube)
        rows.append(index_row(cube, rel.as_posix(), "inventory" if epoch == inv_epoch else "recent",
                              group=row["group"], scene=scene, has_sar=has_sar[scene]))
    return rows


def ingest_region(raw_dir: str | Path, out_dir: str | Path, cfg: DataConfig, sensors: SensorsConfig,
                  *, progress: bool = True) -> pd.DataFrame:
    """Build every cube of a raw region into `out_dir` (written atomically as a whole)."""
    region = open_region(raw_dir)
    outlines = read_outlines(region)
    has_sar = check_region(region, sensors, cfg)
    crs = target_crs(outlines, cfg)
    footprint = raster_footprint(region.scene_path(region.manifest.inventory_epochs[0], "optical"),
                                 outlines.crs)
    inside = outlines.geometry.intersects(footprint)
    if not inside.any():
        raise InputDataError("no outline overlaps the optical scenes", path=region.outlines_path,
                             hint="check the CRS of outlines and rasters")
    if not inside.all():
        warnings.warn(f"{region.outlines_path}: {int((~inside).sum())} outline(s) outside the scenes "
                      f"skipped: {outlines.glacier_id[~inside].tolist()[:10]}", stacklevel=2)
    outlines = outlines[inside.values].to_crs(crs)
    sindex = outlines.sindex
    jobs = []
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        for _, row in outlines.iterrows():
            grid_box = glacier_grid(row.geometry, crs, cfg.resolution_m, cfg.buffer_m).bounds
            near = outlines.geometry.iloc[sindex.query(box(*grid_box))].tolist()
            jobs.append((region.root, sensors, cfg, tmp, row, near, crs, has_sar))
        rows: list[dict] = []
        bar = tqdm(total=len(jobs), desc="ingest", unit="glacier", disable=not progress)
        if cfg.workers > 1:
            with ProcessPoolExecutor(cfg.workers) as pool:
                for r in pool.map(_glacier_job, jobs):
                    rows += r
                    bar.update()
        else:
            for job in jobs:
                rows += _glacier_job(job)
                bar.update()
        bar.close()
        index = pd.DataFrame(rows)
        index.to_csv(tmp / INDEX_FILE, index=False)
    return index


__all__ = ["ingest_region", "utm_crs", "glacier_grid", "rasterize_geoms"]
