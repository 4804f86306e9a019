"""DEM tiles (e.g. Copernicus GLO-30 COGs `Copernicus_DSM_COG_10_N46_00_E010_00_DEM.tif`) mosaicked
on the fly: a VRT in the tiles' own CRS holds every tile (their nodata is transparent, so a void in
one tile does not hide another), seen through a bilinear WarpedVRT on the region's DEM grid, and
written row block by row block as float32 with NaN for voids and areas no tile covers.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from shapely.geometry import box

from glaciermap.data.grid import Grid
from glaciermap.errors import InputDataError

from .rasters import footprint, open_input, open_output, read_window, row_windows, warped


def find_tiles(paths: list[Path]) -> list[Path]:
    """DEM files given by name, or every *.tif / *.tiff in given folders (sorted)."""
    tiles: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            tiles += sorted(q for q in p.iterdir() if q.suffix.lower() in (".tif", ".tiff"))
        elif p.exists():
            tiles.append(p)
        else:
            raise InputDataError("DEM tile not found", path=p)
    if not tiles:
        raise InputDataError("no DEM tile (*.tif) found", path=", ".join(map(str, paths)))
    return tiles


def check_tiles(tiles: list[Path], grid: Grid) -> list[dict]:
    """Open every tile: one CRS for all, each overlapping the region. Returns their geometry."""
    info, crs, area = [], None, box(*grid.bounds)
    for t in tiles:
        with open_input(t) as ds:
            if crs is None:
                crs, first = ds.crs, t
            elif ds.crs != crs:
                raise InputDataError(f"tile is in {ds.crs.to_string()}, {first.name} in {crs.to_string()}",
                                     path=t, hint="DEM tiles must share one CRS")
            if not footprint(ds, grid.crs).intersects(area):
                raise InputDataError("DEM tile does not overlap the region (the outlines' area)", path=t,
                                     hint="leave it out or check the outlines")
            info.append({"path": t, "transform": ds.transform, "width": ds.width, "height": ds.height,
                         "nodata": ds.nodata, "crs": ds.crs})
    return info


def mosaic_vrt(info: list[dict]) -> str:
    """VRT XML mosaicking the tiles in their CRS at the finest tile resolution (first tile wins)."""
    crs: CRS = info[0]["crs"]
    rx = min(abs(t["transform"].a) for t in info)
    ry = min(abs(t["transform"].e) for t in info)
    left = min(t["transform"].c for t in info)
    top = max(t["transform"].f for t in info)
    right = max(t["transform"].c + t["transform"].a * t["width"] for t in info)
    bottom = min(t["transform"].f + t["transform"].e * t["height"] for t in info)
    width, height = round((right - left) / rx), round((top - bottom) / ry)
    sources = []
    for t in info:
        tr = t["transform"]
        nodata = "" if t["nodata"] is None else f"<NODATA>{t['nodata']!r}</NODATA>"
        sources.append(
            f'<ComplexSource><SourceFilename relativeToVRT="0">{escape(str(Path(t["path"]).absolute()))}'
            f'</SourceFilename><SourceBand>1</SourceBand>'
            f'<SrcRect xOff="0" yOff="0" xSize="{t["width"]}" ySize="{t["height"]}"/>'
            f'<DstRect xOff="{(tr.c - left) / rx!r}" yOff="{(top - tr.f) / ry!r}" '
            f'xSize="{t["width"] * abs(tr.a) / rx!r}" ySize="{t["height"] * abs(tr.e) / ry!r}"/>'
            f'{nodata}</ComplexSource>')
    return (f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
            f'<SRS>{escape(crs.to_wkt())}</SRS>'
            f'<GeoTransform>{left!r}, {rx!r}, 0, {top!r}, 0, {-ry!r}</GeoTransform>'
            f'<VRTRasterBand dataType="Float32" band="1"><NoDataValue>nan</NoDataValue>'
            f'{"".join(reversed(sources))}</VRTRasterBand></VRTDataset>')


def write_dem(info: list[dict], grid: Grid, path: Path, block_rows: int) -> None:
    """dem.tif: the tiles' mosaic reprojected (bilinear) onto `grid`, float32, NaN = no data."""
    shown = ", ".join(str(t["path"]) for t in info)
    with MemoryFile(mosaic_vrt(info).encode(), ext=".vrt") as mem, mem.open() as src, \
            warped(src, grid, Resampling.bilinear, src_nodata=np.nan, nodata=np.nan, dtype="float32") as vrt, \
            open_output(path, grid, ["dem"], "float32", float("nan")) as out:
        for win in row_windows(grid, block_rows):
            out.write(read_window(vrt, win, shown).astype(np.float32), 1, window=win)
