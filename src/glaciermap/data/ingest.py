"""Raw region -> one cube per glacier and epoch, every sensor on one 10 m UTM grid.

Each cube reads only the window of each raster it needs (rasterio WarpedVRT), so memory is
bounded by the size of one glacier's cube however large the scenes are. With
`data.context_tile_m`, the region beyond the glacier cubes is cut into context tiles as well
(glaciermap.data.context), listed in context.csv.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
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
from shapely import clip_by_rect, intersection_all, unary_union
from shapely.geometry import box
from tqdm.auto import tqdm

from glaciermap.config import DataConfig, SensorsConfig
from glaciermap.data.context import MIN_USABLE_FRACTION, context_grids
from glaciermap.data.cubes import (CONTEXT_COLUMNS, CONTEXT_FILE, DEBRIS_UNKNOWN, INDEX_FILE, SKIPPED_COLUMNS,
                                   SKIPPED_FILE, Cube, glacier_location, index_row, write_cube)
from glaciermap.data.dates import decimal_year
from glaciermap.data.dem import check_dem_file, fill_voids, read_dem_on_grid
from glaciermap.data.dhdt import dhdt_band, read_dhdt_on_grid, require_dhdt
from glaciermap.data.grid import Grid
from glaciermap.data.raw import (Region, band_indexes, open_raster, open_region, raster_footprint, read_on_grid,
                                 read_outlines)
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


@dataclass
class RegionCheck:
    """What `check_region` found: SAR per scene, the usable acquisitions of each epoch, and the
    acquisitions left out (all cloud / no data) as skipped-list rows."""

    has_sar: dict[str, bool]
    usable: dict[str, list[str]]
    skipped: list[dict]


def check_region(region: Region, sensors: SensorsConfig, cfg: DataConfig,
                 sensor_sets: Sequence[str] = ()) -> RegionCheck:
    """Check every scene up front (CRS, bands, cloud cover), the DEM (not all void), the dh/dt
    map (its band; a region without one is an error when one of `sensor_sets` uses the dhdt group)
    and the debris rasters (readable, with the named band).

    An acquisition that is all cloud or all no data is left out when its epoch has another usable
    one (ingest picks the clearest anyway); when none is usable, that is an error naming the
    epoch's main scene.
    """
    optical = sensors.groups.get("optical", [])
    if region.dem_path is not None:
        with open_raster(region.dem_path):
            pass
        if "dem" in sensors.groups:
            check_dem_file(region.dem_path)
    elif "dem" in sensors.groups:
        raise InputDataError("sensors.groups has a 'dem' group but the region has no DEM (dem: null)",
                             path=region.root / "region.yaml",
                             hint="add a DEM to the region, or drop the dem group from sensors.groups")
    debris = region.manifest.debris
    for path in sorted({region.debris_path(e) for e in region.manifest.epochs} - {None}):
        with open_raster(path) as ds:
            if debris.band is not None:
                band_indexes(ds, [debris.band], path)
    require_dhdt(sensors, sensor_sets, have=region.dhdt_path is not None, region_yaml=region.root / "region.yaml")
    if region.dhdt_path is not None and "dhdt" in sensors.groups:
        dhdt_band(region.dhdt_path)
    has_sar, usable, skipped = {}, {}, []
    for epoch in region.manifest.epochs:
        problems = {}
        for scene in region.acquisitions(epoch):
            opt_path = region.scene_path(scene, "optical")
            with open_raster(opt_path) as opt:
                band_indexes(opt, optical, opt_path)
                if region.has_cloud_masks:
                    cloud_path = region.scene_path(scene, "cloud")
                    problem = _check_cloud_mask(opt, cloud_path, cfg.max_scene_cloud_fraction)
                    if problem:
                        problems[scene] = (problem, cloud_path)
            sar_path = region.scene_path(scene, "sar")
            has_sar[scene] = sar_path.exists()
            if has_sar[scene] and "sar" in sensors.groups:
                with open_raster(sar_path) as sar:
                    band_indexes(sar, sensors.groups["sar"], sar_path)
        usable[epoch] = [s for s in region.acquisitions(epoch) if s not in problems]
        if not usable[epoch]:
            problem, path = problems[epoch]
            raise InputDataError(problem, path=path,
                                 hint="choose a clearer acquisition, or raise data.max_scene_cloud_fraction")
        skipped += [{"glacier_id": "", "scene": s, "reason": f"{p} ({path}): acquisition left out"}
                    for s, (p, path) in problems.items()]
    return RegionCheck(has_sar, usable, skipped)


def _check_cloud_mask(opt, cloud_path: Path, max_fraction: float) -> str | None:
    """The cloud mask lies on the optical scene's grid; returns why the scene is unusable, or None."""
    with open_raster(cloud_path) as cl:
        if opt.crs != cl.crs or opt.transform != cl.transform or opt.shape != cl.shape:
            raise InputDataError(
                f"cloud mask grid ({cl.crs}, {cl.shape}) differs from optical.tif ({opt.crs}, {opt.shape})",
                path=cloud_path, hint="the cloud mask must come on the optical scene's grid")
        return _cloud_cover_problem(cl, cloud_path, max_fraction)


def _cloud_cover_problem(ds, path: Path, max_fraction: float) -> str | None:
    """"scene is all no-data" / "scene is N% cloud / cloud shadow" (at or above `max_fraction`), or None."""
    step = max(1, max(ds.shape) // 1024)  # decimated read: bounded memory on huge scenes
    try:
        cl = ds.read(1, out_shape=(max(1, ds.height // step), max(1, ds.width // step)),
                     resampling=Resampling.nearest)
    except RasterioError as err:  # e.g. a truncated file: the header opens, tiles do not
        raise InputDataError(f"cannot read raster data (corrupt or truncated file): {err}",
                             path=path) from None
    valid = cl != CLOUD_NODATA
    if not valid.any():
        return "scene is all no-data"
    cloudy = float((cl[valid] != CLOUD_CLEAR).mean())
    return f"scene is {cloudy:.0%} cloud / cloud shadow" if cloudy >= max_fraction else None


def invalid_mask(region: Region, scene: str, grid: Grid, optical: np.ndarray) -> np.ndarray:
    """Pixels of one acquisition that cannot be mapped: optical no-data, cloud or cloud shadow."""
    invalid = ~np.isfinite(optical).all(axis=0)
    if region.has_cloud_masks:
        cloud = read_on_grid(region.scene_path(scene, "cloud"), None, grid,
                             resampling=Resampling.nearest, fill=CLOUD_NODATA)[0]
        invalid |= cloud != CLOUD_CLEAR
    return invalid


def clearest_first(region: Region, scenes: list[str], optical_band: str, grid: Grid,
                   glacier_mask: np.ndarray) -> list[str]:
    """An epoch's usable acquisitions (main one first) ordered by how much of the glacier each
    leaves masked, least first (a tie keeps their order, so the main one wins it)."""
    if len(scenes) == 1:
        return list(scenes)
    on_glacier = glacier_mask == 1

    def masked(scene: str) -> float:
        opt = read_on_grid(region.scene_path(scene, "optical"), [optical_band], grid,
                           resampling=Resampling.bilinear)
        return float(invalid_mask(region, scene, grid, opt)[on_glacier].mean()) if on_glacier.any() else 0.0

    return sorted(scenes, key=masked)


def fill_gaps(region: Region, optical_bands: list[str], grid: Grid, opt: np.ndarray, invalid: np.ndarray,
              alternates: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """`data.fill_gaps`: the pixels the chosen acquisition leaves masked (cloud, shadow, no data)
    taken from the epoch's other acquisitions, clearest first, wherever one of them sees the
    ground; (optical, invalid, the alternates that gave pixels). A pixel stays invalid only where
    every acquisition masks it. SAR, the DEM and dh/dt are not filled (clouds do not reach them)."""
    opt, invalid, used = opt.copy(), invalid.copy(), []
    for scene in alternates:
        if not invalid.any():
            break
        other = read_on_grid(region.scene_path(scene, "optical"), optical_bands, grid, resampling=Resampling.bilinear)
        take = invalid & ~invalid_mask(region, scene, grid, other)
        if take.any():
            opt[:, take] = other[:, take]
            invalid &= ~take
            used.append(scene)
    return opt, invalid, used


def build_cube(region: Region, sensors: SensorsConfig, grid: Grid, geom, all_geoms,
               epoch: str, scene: str, dem: tuple[np.ndarray, np.ndarray] | None, has_sar: bool,
               attrs: dict, dhdt: tuple[np.ndarray, np.ndarray] | None = None,
               alternates: list[str] = (), sar_voids: str = "keep", other_date_geoms: list | None = None) -> Cube:
    """Read every sensor of one acquisition (`scene`, of `epoch`) onto a glacier's grid; add masks.

    `dem` is (DEM feature bands, DEM void mask) from `dem_features`, or None without a dem group;
    `dhdt` likewise (the dh/dt band, its void mask), or None without a dhdt group or map.
    With `alternates` (other acquisitions of the epoch, clearest first), `fill_gaps` fills the
    optical pixels `scene` leaves masked; attrs `filled_from` and `filled_fraction` say from where
    and how much. With `sar_voids` "fill" the SAR layover and radar shadow are interpolated from
    their neighbours (`fill_voids`); attr `sar_void_fraction` is the share of the window that was
    void, filled or not. With `other_date_geoms` (the outlines among `all_geoms` whose inventory
    epoch is not `epoch`), the cube gets its `mask_other_date` layer.
    """
    bands: list[str] = []
    layers: list[np.ndarray] = []
    optical = sensors.groups.get("optical", [])
    opt = read_on_grid(region.scene_path(scene, "optical"), optical, grid, resampling=Resampling.bilinear)
    bands += optical
    layers.append(opt)
    if has_sar and "sar" in sensors.groups:
        sar_bands = sensors.groups["sar"]
        sar = read_on_grid(region.scene_path(scene, "sar"), sar_bands, grid, resampling=Resampling.bilinear)
        void = ~np.isfinite(sar).all(axis=0)
        attrs = {**attrs, "sar_void_fraction": float(void.mean())}
        if sar_voids == "fill" and void.any():
            sar = np.stack([fill_voids(band, ~np.isfinite(band)) for band in sar])
        layers.append(sar)
        bands += sar_bands
    if dem is not None:
        layers.append(dem[0])
        bands += sensors.groups["dem"]
    if dhdt is not None:
        layers.append(dhdt[0])
        bands += sensors.groups["dhdt"]
    invalid = invalid_mask(region, scene, grid, opt)
    filled: dict = {}
    if alternates:
        opt, still, used = fill_gaps(region, optical, grid, opt, invalid, list(alternates))
        layers[0] = opt
        filled = {"filled_from": ",".join(used), "filled_fraction": float((invalid & ~still).mean())}
        invalid = still
    return Cube(
        data=np.concatenate(layers, axis=0), bands=bands,
        mask_glacier=rasterize_geoms([geom], grid),
        mask_all=rasterize_geoms(all_geoms, grid),
        mask_invalid=invalid.astype(np.uint8),
        mask_dem_void=None if dem is None else dem[1].astype(np.uint8),
        mask_debris=debris_mask(region, epoch, grid),
        mask_dhdt_void=None if dhdt is None else dhdt[1].astype(np.uint8),
        mask_other_date=None if other_date_geoms is None else rasterize_geoms(other_date_geoms, grid),
        grid=grid,
        attrs={**attrs, "epoch": epoch, "scene": scene, "year": decimal_year(region.scenes[scene]),
               "invalid_fraction": float(invalid.mean()), **filled},
    )


def debris_mask(region: Region, epoch: str, grid: Grid) -> np.ndarray | None:
    """An epoch's `mask_debris` cube layer from the region's debris raster (None when region.yaml
    names none): 1 where the raster holds one of its debris `values`, 0 elsewhere, DEBRIS_UNKNOWN
    beyond the raster or on its no data. Nearest-neighbour resampling (classes are not averaged)."""
    path = region.debris_path(epoch)
    if path is None:
        return None
    src = region.manifest.debris
    raw = read_on_grid(path, None if src.band is None else [src.band], grid, resampling=Resampling.nearest)[0]
    out = np.isin(raw, src.values).astype(np.uint8)
    out[np.isnan(raw)] = DEBRIS_UNKNOWN
    return out


def dem_features(region: Region, grid: Grid, names: list[str], policy: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """DEM and derived features (slope, hillshade) on the cube grid, its void mask, and void counts.

    Voids (`glaciermap.data.dem`) are filled or masked by `policy` (data.dem_voids); the mask marks
    every pixel without a usable elevation (masked voids, beyond the DEM's edge).
    """
    got = read_dem_on_grid(region.dem_path, grid, policy)
    dem = got.z
    feats = {"dem": dem, "slope": slope_deg(dem, grid.res), "hillshade": hillshade(dem, grid.res)}
    unknown = [n for n in names if n not in feats]
    if unknown:
        raise InputDataError(f"unknown DEM feature(s) {unknown}; available: {list(feats)}",
                             path=region.dem_path)
    return (np.stack([feats[n] for n in names]).astype(np.float32), got.void,
            {"found": got.n_void_src, "filled": got.n_filled_src})


def static_layers(region: Region, sensors: SensorsConfig, cfg: DataConfig, grid: Grid):
    """(dem, DEM void counts, dhdt) of a grid, as `build_cube` takes them: dem = (feature bands,
    void mask) or None without a dem group; dhdt likewise, None without a dhdt group or map."""
    dem, voids = None, {}
    if "dem" in sensors.groups:
        feats, void, voids = dem_features(region, grid, sensors.groups["dem"], cfg.dem_voids)
        dem = (feats, void)
    dhdt = None
    if "dhdt" in sensors.groups and region.dhdt_path is not None:
        got = read_dhdt_on_grid(region.dhdt_path, grid, cfg.dhdt_voids)
        dhdt = (got.z[None], got.void)
    return dem, voids, dhdt


def _outlines_with_years(outlines: gpd.GeoDataFrame) -> tuple[list, list[float]]:
    """(geometries, inventory years) of some outlines, as the cube jobs take them."""
    return outlines.geometry.tolist(), outlines["inventory_year"].tolist()


def other_date(region: Region, cfg: DataConfig, geoms: list, years: list[float], epoch: str) -> list | None:
    """The outlines (of `geoms`, inventoried in `years`) whose nearest inventory epoch is not
    `epoch`: what a cube of that epoch marks in `mask_other_date`. None (no layer) unless
    `data.mark_other_date_outlines`."""
    if not cfg.mark_other_date_outlines:
        return None
    return [g for g, y in zip(geoms, years) if region.nearest_inventory_epoch(y) != epoch]


def _glacier_job(args) -> dict:
    """One glacier's cubes (every epoch): {"rows": index rows, "skipped": [...], "dem_voids": counts}."""
    (region_root, sensors, cfg, out_dir, row, (neighbours, neighbour_years), crs, check) = args
    region = open_region(region_root)
    gid, geom = row["glacier_id"], row["geometry"]
    grid = glacier_grid(geom, crs, cfg.resolution_m, cfg.buffer_m)
    glacier_mask = rasterize_geoms([geom], grid)
    if not glacier_mask.any():
        return {"rows": [], "dem_voids": {}, "skipped": [{
            "glacier_id": gid, "scene": "",
            "reason": f"smaller than one pixel ({geom.area:.0f} m2 at {cfg.resolution_m:g} m: "
                      "no pixel centre inside)"}]}
    dem, voids, dhdt = static_layers(region, sensors, cfg, grid)
    inv_epoch = region.nearest_inventory_epoch(row["inventory_year"])
    loc = glacier_location(glacier_mask, grid)
    attrs = {"glacier_id": gid, "inventory_year": row["inventory_year"], "inventory_epoch": inv_epoch,
             "area_km2": loc["area_km2"], "lon": loc["lon"], "lat": loc["lat"],
             "crs": crs.to_string(), "res": cfg.resolution_m, "coverage": row["coverage"],
             **({"dhdt_period": list(region.manifest.dhdt_period)}
                if dhdt is not None and region.manifest.dhdt_period else {})}
    rows = []
    for epoch in [inv_epoch, *region.recent_epochs]:
        scene, *others = clearest_first(region, check.usable[epoch], sensors.groups["optical"][0], grid,
                                        glacier_mask)
        cube = build_cube(region, sensors, grid, geom, neighbours, epoch, scene, dem,
                          check.has_sar[scene], attrs, dhdt, alternates=others if cfg.fill_gaps else [],
                          sar_voids=cfg.sar_voids,
                          other_date_geoms=other_date(region, cfg, neighbours, neighbour_years, epoch))
        rel = Path(epoch) / f"{gid}.nc"
        write_cube(out_dir / rel, cube)
        on_glacier = cube.mask_glacier == 1
        rows.append(index_row(cube, rel.as_posix(), "inventory" if epoch == inv_epoch else "recent",
                              group=row["group"], scene=scene, coverage=row["coverage"],
                              glacier_dem_void_fraction=float(dem[1][on_glacier].mean()) if dem else 0.0,
                              has_sar=check.has_sar[scene]))
    return {"rows": rows, "skipped": [], "dem_voids": voids}


def _context_job(args) -> dict | None:
    """One context tile's cube (glaciermap.data.context) at one inventory epoch, its pixels inside
    any glacier cube (`boxes`: their extents within the tile) masked invalid; its context.csv row,
    or None when too little stays usable."""
    (region_root, sensors, cfg, out_dir, tid, grid, boxes, (near, near_years), epoch, check) = args
    region = open_region(region_root)
    dem, _, dhdt = static_layers(region, sensors, cfg, grid)
    boxed = rasterize_geoms([boxes], grid) == 1
    scene, *others = clearest_first(region, check.usable[epoch], sensors.groups["optical"][0], grid,
                                    (~boxed).astype(np.uint8))
    loc = glacier_location(np.zeros((grid.height, grid.width), np.uint8), grid)  # no glacier: area 0, the centre
    attrs = {"glacier_id": tid, "context_tile": 1, "inventory_year": region.epoch_year(epoch),
             "inventory_epoch": epoch, "area_km2": loc["area_km2"], "lon": loc["lon"], "lat": loc["lat"],
             "crs": grid.crs.to_string(), "res": cfg.resolution_m, "coverage": 1.0}
    cube = build_cube(region, sensors, grid, None, near, epoch, scene, dem, check.has_sar[scene], attrs, dhdt,
                      alternates=others if cfg.fill_gaps else [], sar_voids=cfg.sar_voids,
                      other_date_geoms=other_date(region, cfg, near, near_years, epoch))
    invalid = (cube.mask_invalid == 1) | boxed
    usable = float((~invalid).mean())
    if usable < MIN_USABLE_FRACTION:
        return None
    cube = replace(cube, mask_invalid=invalid.astype(np.uint8),
                   attrs={**cube.attrs, "invalid_fraction": 1.0 - usable})
    rel = Path("context") / epoch / f"{tid}.nc"
    write_cube(out_dir / rel, cube)
    return {"tile_id": tid, "epoch": epoch, "path": rel.as_posix(), "scene": scene, "usable_fraction": usable}


def _context_jobs(region: Region, sensors: SensorsConfig, cfg: DataConfig, out_dir: Path, outlines: gpd.GeoDataFrame,
                  footprints: dict[Path, object], cube_boxes: list, check: RegionCheck) -> list[tuple]:
    """`_context_job` arguments: every tile of the area all rasters cover, at every inventory
    epoch the kept outlines use."""
    area = intersection_all(list(footprints.values()))
    boxes = unary_union(cube_boxes)
    epochs = sorted({region.nearest_inventory_epoch(y) for y in outlines["inventory_year"]})
    sindex = outlines.sindex
    jobs = []
    for tid, grid in context_grids(area, boxes, cfg.context_tile_m, cfg.resolution_m, outlines.crs):
        near = _outlines_with_years(outlines.iloc[sindex.query(box(*grid.bounds))])
        # the boxes' part in the tile, so no job carries or rasterises the whole region's (clip_by_rect
        # keeps polygons only, where an intersection would add the edges the tile merely touches as lines)
        here = clip_by_rect(boxes, *grid.bounds)
        jobs += [(region.root, sensors, cfg, out_dir, tid, grid, here, near, e, check) for e in epochs]
    return jobs


def _run(job, args: list[tuple], workers: int, desc: str, unit: str, progress: bool) -> list:
    """`job` over `args`, in `workers` processes, with a progress bar; results in order."""
    results = []
    with tqdm(total=len(args), desc=desc, unit=unit, disable=not progress) as bar:
        if workers > 1 and len(args) > 1:
            with ProcessPoolExecutor(workers) as pool:
                for r in pool.map(job, args):
                    results.append(r)
                    bar.update()
        else:
            for a in args:
                results.append(job(a))
                bar.update()
    return results


def _raster_footprints(region: Region, sensors: SensorsConfig, check: RegionCheck, crs: CRS) -> dict[Path, object]:
    """{file: footprint polygon in `crs`} of every raster each glacier needs: each epoch's first
    usable acquisition, and the DEM / dh/dt map when the sensor groups use them."""
    paths = [region.scene_path(check.usable[e][0], "optical") for e in region.manifest.epochs]
    if "dem" in sensors.groups:
        paths.append(region.dem_path)
    if "dhdt" in sensors.groups and region.dhdt_path is not None:
        paths.append(region.dhdt_path)
    return {p: raster_footprint(p, crs) for p in paths}


def coverage_check(outlines: gpd.GeoDataFrame, footprints: dict[Path, object], cfg: DataConfig,
                   outlines_path: Path) -> tuple[gpd.GeoDataFrame, list[dict]]:
    """Outlines kept (with a `coverage` column) and the skipped-list rows of those left out.

    coverage = min over the rasters of area(outline & footprint) / area(outline) (in the cube CRS);
    an outline reaching less than half a cube pixel beyond every edge counts as fully covered.
    Wholly outside any raster: left out. Partly: kept only with edge_policy "keep" and
    coverage >= min_coverage. A raster that no outline overlaps (while others do) is an error
    naming it; no overlap at all is an error naming the outlines.
    """
    areas = outlines.geometry.area.to_numpy()
    tol = 0.5 * cfg.resolution_m ** 2
    cover = {}
    for path, fp in footprints.items():
        inside = outlines.geometry.intersection(fp).area.to_numpy()
        cover[path] = np.where(areas - inside <= tol, 1.0, inside / np.maximum(areas, 1e-12))
    hits = {p: c > 0 for p, c in cover.items()}
    if not any(h.any() for h in hits.values()):
        raise InputDataError("no outline overlaps the optical scenes", path=outlines_path,
                             hint="check the CRS of outlines and rasters")
    for path, h in hits.items():
        if not h.any():
            others = int(np.logical_or.reduce([hits[p] for p in hits if p != path]).sum())
            raise InputDataError(f"no outline overlaps this raster, although {others} of {len(outlines)} "
                                 "outlines overlap the region's other rasters", path=path,
                                 hint="is it georeferenced in the right place (CRS, transform)?")
    paths = list(cover)
    stack = np.stack([cover[p] for p in paths])
    worst = stack.argmin(axis=0)
    coverage = stack.min(axis=0)
    keep = coverage >= 1.0
    if cfg.edge_policy == "keep":
        keep |= coverage >= cfg.min_coverage
    skipped = []
    for i in np.flatnonzero(~keep):
        where = paths[worst[i]]
        if coverage[i] == 0:
            reason = f"outside {where}"
        else:
            reason = (f"crosses the edge of {where}: {1 - coverage[i]:.1%} of the outline outside "
                      + ("(data.edge_policy: skip)" if cfg.edge_policy == "skip"
                         else f"(below data.min_coverage {cfg.min_coverage:g})"))
        skipped.append({"glacier_id": outlines.glacier_id.iloc[i], "scene": "", "reason": reason})
    return outlines[keep].assign(coverage=coverage[keep]), skipped


def _report(skipped: list[dict], rows: list[dict], voids: list[dict], skipped_path: Path,
            cfg: DataConfig, dem_path: Path | None) -> None:
    """One warning each for: what was left out, glaciers wholly masked, DEM voids."""
    if skipped:
        names = [r["glacier_id"] or r["scene"] for r in skipped]
        warnings.warn(f"{len(skipped)} outline(s) / acquisition(s) left out (listed with the reason in "
                      f"{skipped_path}): {names[:10]}{' ...' if len(names) > 10 else ''}", stacklevel=3)
    masked = [f"{r['glacier_id']} ({r['epoch']}, {r['scene']})" for r in rows
              if r["glacier_invalid_fraction"] >= 1.0]
    if masked:
        where = "every acquisition of their epoch" if cfg.fill_gaps else "the clearest acquisition of their epoch"
        warnings.warn(f"{len(masked)} glacier cube(s) 100% masked (cloud, shadow or no data) in {where}: "
                      f"{masked[:10]}{' ...' if len(masked) > 10 else ''}", stacklevel=3)
    found = sum(v.get("found", 0) for v in voids)
    if found:
        filled = sum(v.get("filled", 0) for v in voids)
        warnings.warn(f"{dem_path}: {found} DEM pixel(s) around the glaciers are voids (no data, NaN, "
                      f"sentinel such as -9999/-32768/0, spike or pit): {filled} filled from their "
                      f"neighbours, {found - filled} masked (data.dem_voids: {cfg.dem_voids}; counted "
                      "per glacier window, so shared pixels count once per glacier)", stacklevel=3)


def ingest_region(raw_dir: str | Path, out_dir: str | Path, cfg: DataConfig, sensors: SensorsConfig,
                  *, sensor_sets: Sequence[str] = (), progress: bool = True) -> pd.DataFrame:
    """Build every cube of a raw region into `out_dir` (written atomically as a whole).

    Every sensor group the region offers is read; `sensor_sets` (those to be trained / mapped)
    are checked against what it offers before any cube is built.

    What is left out (outlines outside or across a raster edge, smaller than a pixel, unusable
    acquisitions) is listed in `out_dir`/skipped.csv (glacier_id, scene, reason) and counted in
    one warning.
    """
    region = open_region(raw_dir)
    outlines = read_outlines(region)
    check = check_region(region, sensors, cfg, sensor_sets)
    crs = target_crs(outlines, cfg)
    outlines = outlines.to_crs(crs)
    footprints = _raster_footprints(region, sensors, check, crs)
    outlines, skipped = coverage_check(outlines, footprints, cfg, region.outlines_path)
    skipped = check.skipped + skipped
    sindex = outlines.sindex
    jobs, cube_boxes = [], []
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        for _, row in outlines.iterrows():
            cube_boxes.append(box(*glacier_grid(row.geometry, crs, cfg.resolution_m, cfg.buffer_m).bounds))
            near = _outlines_with_years(outlines.iloc[sindex.query(cube_boxes[-1])])
            jobs.append((region.root, sensors, cfg, tmp, row, near, crs, check))
        results = _run(_glacier_job, jobs, cfg.workers, "ingest", "glacier", progress)
        if cfg.context_tile_m > 0:
            tiles = _run(_context_job, _context_jobs(region, sensors, cfg, tmp, outlines, footprints, cube_boxes, check),
                         cfg.workers, "context tiles", "tile", progress)
            pd.DataFrame([t for t in tiles if t is not None], columns=list(CONTEXT_COLUMNS)).to_csv(
                tmp / CONTEXT_FILE, index=False)
        rows = [row for r in results for row in r["rows"]]
        skipped += [s for r in results for s in r["skipped"]]
        if not rows:
            raise InputDataError("no glacier left to ingest: every outline was left out "
                                 f"({len(skipped)}: {[s['reason'] for s in skipped[:3]]})",
                                 path=region.outlines_path)
        index = pd.DataFrame(rows)
        index.to_csv(tmp / INDEX_FILE, index=False)
        pd.DataFrame(skipped, columns=list(SKIPPED_COLUMNS)).to_csv(tmp / SKIPPED_FILE, index=False)
    _report(skipped, rows, [r["dem_voids"] for r in results], out_dir / SKIPPED_FILE, cfg, region.dem_path)
    return index


__all__ = ["ingest_region", "utm_crs", "glacier_grid", "rasterize_geoms", "coverage_check"]
