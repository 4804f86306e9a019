"""`build_region`: standard products -> a raw region (docs/data-format.md, sections 1 and 1.1).

Every input is checked first (opened, level, CRS, overlap with the outlines); only then is the
region written, into a temporary sibling folder that replaces `out` when everything succeeded.
Rasters are read and written one row block at a time, so memory is bounded by a block (and GDAL's
block cache, `gdal_cache_mb`), not by the tile.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import rasterio
from shapely.geometry import box

from glaciermap.data.grid import Grid
from glaciermap.data.dates import decimal_year
from glaciermap.data.simulate.writer import atomic_dir, write_gpkg, write_yaml
from glaciermap.errors import ConfigError, InputDataError

from . import dem as dem_mod
from . import sentinel1 as s1_mod
from glaciermap.config.region_build import RegionBuildConfig
from .outlines import outline_years, read_outlines
from .rasters import grid_from_bounds
from .sentinel2 import S2Product, cloud_lut, open_s2, write_scene


@dataclass(frozen=True)
class BuildResult:
    """What was written."""

    out: Path
    epochs: dict[str, list[str]]  # epoch -> its scene folders, main acquisition first
    inventory_epochs: list[str]
    n_outlines: int
    grid: Grid
    sar_scenes: list[str] = field(default_factory=list)
    has_dem: bool = False

    def summary(self) -> str:
        n_scenes = sum(len(v) for v in self.epochs.values())
        return (f"region written to {self.out}: {len(self.epochs)} epoch(s), {n_scenes} scene(s) "
                f"({len(self.sar_scenes)} with SAR), {self.n_outlines} outlines, "
                f"{self.grid.width} x {self.grid.height} px, DEM {'yes' if self.has_dem else 'no'}")


@dataclass
class _Plan:
    """Everything checked, nothing written yet."""

    products: list[S2Product]
    outlines: gpd.GeoDataFrame
    id_column: str
    date_column: str
    grid: Grid
    sar_grid: Grid
    dem_grid: Grid
    dem_tiles: list[dict]
    groups: dict[str, list[S2Product]]
    rtc: list
    coh: list


def build_region(s2: Sequence[str | Path], outlines: str | Path, out: str | Path,
                 cfg: RegionBuildConfig = RegionBuildConfig(), *, s1: Sequence[str | Path] = (),
                 dem: Sequence[str | Path] = ()) -> BuildResult:
    """Write a raw region at `out` from Sentinel-2 L2A products, RGI outlines, optional
    Sentinel-1 HyP3 RTC / coherence files and DEM tiles. Raises InputDataError naming the file
    for a bad input, before anything is written."""
    inputs = [Path(p) for p in [*s2, outlines, *s1, *dem]]
    _check_out(Path(out), inputs)
    with rasterio.Env(GDAL_CACHEMAX=cfg.gdal_cache_mb, GDAL_PAM_ENABLED="NO"):
        plan = _check_inputs(list(s2), Path(outlines), cfg, [Path(p) for p in s1], [Path(p) for p in dem])
        return _write(plan, Path(out), cfg)


# ------------------------------------------------------------------------------------ checking
def _check_out(out: Path, inputs: list[Path]) -> None:
    """`out` is replaced as a whole: it must be new, empty or a raw region, and hold no input."""
    out = out.absolute()
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "region.yaml").exists())):
        raise InputDataError("output exists and is not a raw region (no region.yaml): it would be replaced",
                             path=out, hint="choose a new or empty folder for --out")
    for p in inputs:
        if out == p.absolute() or out in p.absolute().parents:
            raise InputDataError("input lies inside the output folder, which is replaced", path=p,
                                 hint="write the region to another folder")


def _check_inputs(s2: list[Path], outlines_path: Path, cfg: RegionBuildConfig, s1: list[Path],
                  dem: list[Path]) -> _Plan:
    if not s2:
        raise InputDataError("no Sentinel-2 product given", hint="pass one or more with --s2")
    gdf, idc, datec = read_outlines(outlines_path, cfg.id_column, cfg.date_column)
    products = [open_s2(p) for p in s2]
    crs = products[0].crs
    for p in products[1:]:
        if p.crs != crs:
            raise InputDataError(f"product is in {p.crs.to_string()}, {products[0].path.name} in "
                                 f"{crs.to_string()}", path=p.path,
                                 hint="products of one region must share a CRS (UTM zone)")
    geoms = gdf.geometry.to_crs(crs)
    for p in products:
        if not geoms.intersects(p.footprint()).any():
            raise InputDataError(f"product does not overlap any outline of {outlines_path.name}", path=p.path,
                                 hint="leave it out, or give outlines of its area")
    grid = _region_grid(products, geoms, cfg)
    area = box(*grid.bounds)
    keep = geoms.intersects(area).values
    origin = (grid.transform.c, grid.transform.f)
    sar_grid = grid_from_bounds(grid.bounds, cfg.sar_resolution_m, crs, origin)
    dem_grid = grid_from_bounds(grid.bounds, cfg.dem_resolution_m, crs, origin)
    tiles = dem_mod.check_tiles(dem_mod.find_tiles(dem), dem_grid) if dem else []
    rtc, coh = s1_mod.find_s1(s1) if s1 else ([], [])
    s1_mod.check_s1(rtc, coh, sar_grid)
    groups = _group(products, cfg.epochs_by)
    if cfg.inventory_epochs is not None:
        unknown = [e for e in cfg.inventory_epochs if e not in groups]
        if unknown:
            raise ConfigError(f"inventory_epochs {unknown} are not epochs of these products "
                              f"(epochs: {list(groups)})", path="region_build.inventory_epochs")
    return _Plan(products, gdf[keep], idc, datec, grid, sar_grid, dem_grid, tiles, groups, rtc, coh)


def _region_grid(products: list[S2Product], geoms: gpd.GeoSeries, cfg: RegionBuildConfig) -> Grid:
    """The products' joint extent, clipped to the outlines' bounding box + buffer_m (unless None),
    on the first product's pixel lattice."""
    b = [p.bounds for p in products]
    union = (min(x[0] for x in b), min(x[1] for x in b), max(x[2] for x in b), max(x[3] for x in b))
    bounds = union
    if cfg.buffer_m is not None:
        inside = geoms[geoms.intersects(box(*union))]
        ob = inside.total_bounds
        bounds = (max(union[0], ob[0] - cfg.buffer_m), max(union[1], ob[1] - cfg.buffer_m),
                  min(union[2], ob[2] + cfg.buffer_m), min(union[3], ob[3] + cfg.buffer_m))
    return grid_from_bounds(bounds, cfg.resolution_m, products[0].crs, products[0].origin)


def _group(products: list[S2Product], by: str) -> dict[str, list[S2Product]]:
    """Epoch name -> its products in date order (season: by year; date: by acquisition date)."""
    groups: dict[str, list[S2Product]] = {}
    for p in sorted(products, key=lambda p: (p.date, str(p.path))):
        groups.setdefault(str(p.date.year) if by == "season" else p.date.isoformat(), []).append(p)
    return groups


# ------------------------------------------------------------------------------------- writing
def _write(plan: _Plan, out: Path, cfg: RegionBuildConfig) -> BuildResult:
    lut = cloud_lut(cfg.scl_to_cloud)
    epochs_yaml, folders, sar_scenes, used_s1, sources = {}, {}, [], set(), {}
    with atomic_dir(out) as tmp:
        write_gpkg(plan.outlines, tmp / "outlines.gpkg", layer="outlines")
        if plan.dem_tiles:
            dem_mod.write_dem(plan.dem_tiles, plan.dem_grid, tmp / "dem.tif", cfg.block_rows)
        for epoch, products in plan.groups.items():
            written = []
            for i, p in enumerate(products):
                folder = tmp / "scenes" / f".{epoch}-{i}"
                masked = write_scene(p, plan.grid, folder, lut, cfg.block_rows)
                rtc = s1_mod.nearest(plan.rtc, p.date, cfg.sar_window_days)
                coh = s1_mod.nearest(plan.coh, p.date, cfg.sar_window_days)
                if rtc or coh:
                    s1_mod.write_sar(rtc, coh, plan.sar_grid, folder / "sar.tif", cfg.block_rows)
                    used_s1.update(id(x) for x in (rtc, coh) if x)
                written.append((masked, p.date, i, p, folder, rtc, coh))
            # main acquisition: least cloud / shadow / no data (ties: the earliest)
            written.sort(key=lambda w: (w[0], w[1], w[2]))
            names = [epoch] + [f"{epoch}-alt{k}" for k in range(1, len(written))]
            for name, (masked, date, _, p, folder, rtc, coh) in zip(names, written):
                folder.rename(tmp / "scenes" / name)
                if rtc or coh:
                    sar_scenes.append(name)
                sources[name] = {"sentinel2": str(p.path), "date": date.isoformat(),
                                 "masked_fraction": round(masked, 6), "boa_add_offset": p.offset,
                                 "boa_quantification_value": p.quantification,
                                 "sentinel1_rtc": [str(f) for f in rtc.files.values()] if rtc else [],
                                 "sentinel1_coherence": str(coh.path) if coh else None}
            folders[epoch] = names
            entry = {"date": written[0][1]}
            if len(written) > 1:
                entry["alternates"] = {n: w[1] for n, w in zip(names[1:], written[1:])}
            epochs_yaml[epoch] = entry
        unused = [str(f) for r in plan.rtc if id(r) not in used_s1 for f in r.files.values()] + \
                 [str(c.path) for c in plan.coh if id(c) not in used_s1]
        if unused:
            warnings.warn(f"{len(unused)} Sentinel-1 file(s) match no Sentinel-2 date within "
                          f"{cfg.sar_window_days:g} days and are not used: {unused[:3]}", stacklevel=2)
        inventory = cfg.inventory_epochs or _inventory_epochs(
            epochs_yaml, outline_years(plan.outlines, plan.date_column))
        manifest = {
            "name": cfg.name or Path(os.path.abspath(out)).name,
            "id_column": plan.id_column, "date_column": plan.date_column,
            "inventory_epochs": inventory, "epochs": epochs_yaml,
            "outlines": "outlines.gpkg", "dem": "dem.tif" if plan.dem_tiles else None,
        }
        write_yaml(manifest, tmp / "region.yaml")
        (tmp / "build.json").write_text(json.dumps(
            {"config": cfg.model_dump(mode="json"), "scenes": sources,
             "dem_tiles": [str(t["path"]) for t in plan.dem_tiles]}, indent=2) + "\n")
    return BuildResult(Path(out), folders, inventory, len(plan.outlines), plan.grid, sar_scenes,
                       bool(plan.dem_tiles))


def _inventory_epochs(epochs: dict[str, dict], years: list[float]) -> list[str]:
    """The epochs nearest the outlines' dates (each outline votes for the epoch nearest its date)."""
    year = {e: decimal_year(v["date"]) for e, v in epochs.items()}
    chosen = {min(year, key=lambda e: (abs(year[e] - y), year[e])) for y in years}
    inv = [e for e in epochs if e in chosen]
    if len(inv) == len(epochs) and len(epochs) > 1:
        warnings.warn("every epoch is nearest some outline's date: all are inventory epochs, none recent; "
                      "set region_build.inventory_epochs", stacklevel=3)
    return inv

