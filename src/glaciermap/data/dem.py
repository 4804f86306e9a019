"""DEMs: implausible values found and treated as voids, then filled or masked.

DEM products mark their voids in many ways, often without a nodata tag: NaN, the nodata tag,
-9999 (ASTER), -32768 / -32767 (SRTM), zeros (some HMA products), or spikes and pits left by
radar or stereo matching. A pixel is a **void** when any of these holds:

- it is NaN, or the file's nodata value;
- it lies outside [`MIN_ELEV_M`, `MAX_ELEV_M`] (below the Dead Sea shore, above Everest: this
  catches -9999, -32768, -32767 and float sentinels);
- it is exactly 0 while the DEM is high terrain (the 1st percentile of its other values is
  above `HIGH_TERRAIN_M`: sea level cannot occur there);
- it is a spike or a pit: more than `SPIKE_M` above the highest, or below the lowest, of its
  eight neighbours (a 10-90 m pixel cannot rise 300 m above all its neighbours).

A DEM whose values are all voids, or all equal (no relief: e.g. all 0), is unusable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.fill import fillnodata
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds
from scipy import ndimage

from glaciermap.data.raw import open_raster
from glaciermap.errors import InputDataError

MIN_ELEV_M, MAX_ELEV_M = -500.0, 9000.0
HIGH_TERRAIN_M = 100.0
SPIKE_M = 300.0
FILL_SEARCH_PX = 100  # rasterio fillnodata's search distance (source pixels); voids wider stay NaN


def find_voids(z: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """Boolean mask of void pixels in a 2-D elevation array (criteria in the module docstring)."""
    z = np.asarray(z, dtype=np.float64)
    void = ~np.isfinite(z) | (z < MIN_ELEV_M) | (z > MAX_ELEV_M)
    if nodata is not None and np.isfinite(nodata):
        void |= z == nodata
    others = z[~void & (z != 0)]
    if others.size and np.percentile(others, 1) > HIGH_TERRAIN_M:
        void |= z == 0
    if z.shape[0] >= 3 and z.shape[1] >= 3:
        foot = np.ones((3, 3), bool)
        foot[1, 1] = False
        hi = ndimage.maximum_filter(np.where(void, -np.inf, z), footprint=foot, mode="nearest")
        lo = ndimage.minimum_filter(np.where(void, np.inf, z), footprint=foot, mode="nearest")
        void |= (z > hi + SPIKE_M) & np.isfinite(hi)
        void |= (z < lo - SPIKE_M) & np.isfinite(lo)
    return void


def check_usable(z: np.ndarray, void: np.ndarray, path: Path) -> None:
    """Raise if nothing of `z` is a plausible elevation (all voids, or one value everywhere)."""
    good = z[~void]
    if good.size == 0:
        seen = np.unique(z[np.isfinite(z)])
        what = f"all {seen[0]:g}" if seen.size == 1 else "all no data / NaN / implausible values"
        raise InputDataError(f"DEM has no valid elevation ({what})", path=path,
                             hint="a void value without a nodata tag? set the tag (gdal_edit.py -a_nodata) "
                                  "or use another DEM")
    if good.min() == good.max():
        raise InputDataError(f"DEM has no relief (every value is {good.min():g}): not an elevation model",
                             path=path, hint="use a real DEM, or drop the dem group from the sensor set")


def check_dem_file(path: Path, max_px: int = 1024) -> None:
    """Fail early on a DEM that is entirely void or flat (decimated read: bounded memory)."""
    with open_raster(path) as ds:
        step = max(1, max(ds.shape) // max_px)
        try:
            z = ds.read(1, out_shape=(max(1, ds.height // step), max(1, ds.width // step)),
                        resampling=Resampling.nearest, masked=True).astype(np.float64).filled(np.nan)
        except rasterio.errors.RasterioError as err:  # e.g. a truncated file: the header opens, tiles do not
            raise InputDataError(f"cannot read raster data (corrupt or truncated file): {err}", path=path) from None
        check_usable(z, find_voids(z, ds.nodata), path)


@dataclass
class DemOnGrid:
    """A DEM read onto a target grid: elevation (NaN where no value), and what was done."""

    z: np.ndarray  # float32 (H, W); NaN outside the DEM and, with "mask", on voids
    void: np.ndarray  # bool (H, W): no usable elevation here (outside the DEM, or a masked void)
    n_void_src: int  # void pixels found in the source window (source resolution)
    n_filled_src: int  # of those, filled by interpolation


def fill_voids(z: np.ndarray, void: np.ndarray) -> np.ndarray:
    """`z` (2-D float) with its `void` pixels interpolated from their neighbours (rasterio
    fillnodata, inverse-distance, up to FILL_SEARCH_PX pixels away); voids wider stay NaN."""
    z = np.where(void, np.nan, z).astype(np.float32)
    if void.any() and not void.all():
        z = fillnodata(z, mask=(~void).astype(np.uint8), max_search_distance=FILL_SEARCH_PX)
        z[~np.isfinite(z)] = np.nan
    return z


def read_dem_on_grid(path: Path, grid, policy: str, *, band: int = 1,
                     find: Callable[[np.ndarray, float | None], np.ndarray] = find_voids) -> DemOnGrid:
    """Read the source window of the DEM covering `grid`, treat voids by `policy` ("fill" or
    "mask"), and reproject it (bilinear) onto `grid` (any object with crs, transform, width,
    height, bounds).

    Other continuous fields with voids (the dh/dt map, `glaciermap.data.dhdt`) are read the same
    way: pass their 1-based `band` and void test `find(values, nodata)`.
    """
    with open_raster(path) as src:
        bounds = transform_bounds(grid.crs, src.crs, *grid.bounds, densify_pts=21)
        win = from_bounds(*bounds, transform=src.transform)
        c0, r0 = math.floor(win.col_off) - 2, math.floor(win.row_off) - 2  # 2 pixels of margin
        c1, r1 = math.ceil(win.col_off + win.width) + 2, math.ceil(win.row_off + win.height) + 2
        win = Window(c0, r0, c1 - c0, r1 - r0)
        try:
            win = win.intersection(Window(0, 0, src.width, src.height))
        except rasterio.errors.WindowError:
            raise InputDataError(f"no overlap with the requested area {grid.bounds} ({grid.crs})",
                                 path=path, hint="check that rasters and outlines cover the same place") from None
        try:
            z = src.read(band, window=win, masked=True).astype(np.float32).filled(np.nan)
        except rasterio.errors.RasterioError as err:
            raise InputDataError(f"cannot read raster data (corrupt or truncated file): {err}", path=path) from None
        transform, crs, nodata = src.window_transform(win), src.crs, src.nodata
    void = find(z, nodata)
    n_void = int(void.sum())
    z[void] = np.nan
    if n_void and policy == "fill":
        z = fill_voids(z, void)
    n_filled = n_void - int((~np.isfinite(z)).sum())
    out = np.full((grid.height, grid.width), np.nan, np.float32)
    reproject(z, out, src_transform=transform, src_crs=crs, src_nodata=np.nan,
              dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
              resampling=Resampling.bilinear)
    return DemOnGrid(out, ~np.isfinite(out), n_void, n_filled)


__all__ = ["find_voids", "check_usable", "check_dem_file", "fill_voids", "read_dem_on_grid", "DemOnGrid"]
