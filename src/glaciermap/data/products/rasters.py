"""Raster plumbing shared by the product readers: opening with one-line errors, target grids,
row-block windows, reprojection onto a grid, and tiled GeoTIFF outputs written window by window.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from shapely.geometry import Polygon, box

from glaciermap.data.grid import Grid
from glaciermap.errors import InputDataError

BLOCK = 256  # output GeoTIFF tile size (px)


def open_input(gdal_path: str | Path, shown: str | Path | None = None) -> rasterio.io.DatasetReader:
    """Open a raster (any GDAL path, /vsizip/ included); errors name `shown` (default the path)."""
    shown = gdal_path if shown is None else shown
    try:
        ds = rasterio.open(gdal_path)
    except rasterio.errors.RasterioIOError as err:
        raise InputDataError(f"cannot read raster (missing, corrupt or truncated): {_first_line(err)}",
                             path=shown) from None
    if ds.crs is None:
        ds.close()
        raise InputDataError("raster has no CRS", path=shown, hint="assign one, e.g. gdal_edit.py -a_srs")
    return ds


def _first_line(err: BaseException) -> str:
    """The most specific line of a (chained) GDAL error: rasterio's outer 'Read failed. See previous
    exception' hides the decoder's own message in the cause."""
    while "See previous exception" in str(err) and (err.__cause__ or err.__context__):
        err = err.__cause__ or err.__context__
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def footprint(ds: rasterio.io.DatasetReader, crs: CRS) -> Polygon:
    """An open raster's bounds as a polygon in `crs`."""
    return box(*transform_bounds(ds.crs, crs, *ds.bounds, densify_pts=21))


def grid_from_bounds(bounds: tuple[float, float, float, float], res: float, crs: CRS,
                     origin: tuple[float, float] | None = None) -> Grid:
    """A north-up grid of `res` covering `bounds`, its edges snapped outward to the lattice through
    `origin` (default: the bounds' own upper-left corner)."""
    ox, oy = origin if origin is not None else (bounds[0], bounds[3])
    left = ox + math.floor(round((bounds[0] - ox) / res, 6)) * res
    top = oy - math.floor(round((oy - bounds[3]) / res, 6)) * res
    width = math.ceil(round((bounds[2] - left) / res, 6))
    height = math.ceil(round((top - bounds[1]) / res, 6))
    return Grid(crs, rasterio.Affine(res, 0.0, left, 0.0, -res, top), max(width, 1), max(height, 1))


def row_windows(grid: Grid, rows: int) -> Iterator[Window]:
    """Full-width row blocks of at most `rows` rows (rounded to whole output tiles)."""
    rows = max(BLOCK, rows // BLOCK * BLOCK)
    for r0 in range(0, grid.height, rows):
        yield Window(0, r0, grid.width, min(rows, grid.height - r0))


def warped(ds: rasterio.io.DatasetReader, grid: Grid, resampling: Resampling, *, src_nodata=None,
           nodata=None, dtype: str | None = None) -> WarpedVRT:
    """`ds` seen through `grid` (reprojected on the fly; only the windows read are computed).

    The coordinate transformation is exact at every pixel (tolerance 1e-6 px; GDAL's default of 0.125
    source pixels shifts a steep DEM by decimetres)."""
    kw = {"src_nodata": src_nodata} if src_nodata is not None else {}
    if nodata is not None:
        kw["nodata"] = nodata
    if dtype is not None:
        kw["dtype"] = dtype
    return WarpedVRT(ds, crs=grid.crs, transform=grid.transform, width=grid.width, height=grid.height,
                     resampling=resampling, tolerance=1e-6, **kw)


def read_window(vrt: WarpedVRT, window: Window, shown: str | Path, band: int = 1) -> np.ndarray:
    """One band of one window; a decoding failure (truncated file) is an error naming `shown`."""
    try:
        return vrt.read(band, window=window)
    except rasterio.errors.RasterioError as err:
        raise InputDataError(f"cannot read raster data (corrupt or truncated file): {_first_line(err)}",
                             path=shown) from None


def open_output(path: Path, grid: Grid, bands: list[str], dtype: str, nodata: float | int):
    """A tiled, deflate-compressed GeoTIFF (BigTIFF when needed) with band descriptions, for writing
    window by window (always pass `window=` to `write`)."""
    profile = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": len(bands),
        "dtype": dtype, "crs": grid.crs, "transform": grid.transform, "nodata": nodata,
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
        "predictor": 3 if dtype.startswith("float") else 2, "zlevel": 1, "interleave": "band",
        "bigtiff": "IF_SAFER",
    }
    ds = rasterio.open(path, "w", **profile)
    for i, name in enumerate(bands, start=1):
        ds.set_band_description(i, name)
    return ds
