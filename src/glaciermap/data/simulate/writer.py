"""Writing the raw region: tiled deflate GeoTIFFs window by window, vectors, tables, manifest."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import rasterio
import yaml
from rasterio.windows import Window

from glaciermap.io import atomic_path

from .terrain import SimGrid

BLOCK = 256
STRIP_ROWS = 2 * BLOCK


def open_geotiff(path: Path, grid: SimGrid, bands: list[str], dtype: str, nodata: float | int):
    """A tiled, deflate-compressed GeoTIFF opened for writing, band descriptions set."""
    profile = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": len(bands),
        "dtype": dtype, "crs": grid.crs, "transform": grid.transform, "nodata": nodata,
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
        "predictor": 3 if dtype.startswith("float") else 2, "zlevel": 4, "interleave": "band",
    }
    ds = rasterio.open(path, "w", **profile)
    for i, name in enumerate(bands, start=1):
        ds.set_band_description(i, name)
    return ds


def strips(grid: SimGrid, rows: int = STRIP_ROWS) -> Iterator[tuple[Window, tuple[slice, slice]]]:
    """Full-width row strips (aligned to whole tiles) with matching array slices."""
    for r0 in range(0, grid.height, rows):
        h = min(rows, grid.height - r0)
        yield Window(0, r0, grid.width, h), (slice(r0, r0 + h), slice(0, grid.width))


def n_strips(grid: SimGrid, rows: int = STRIP_ROWS) -> int:
    return -(-grid.height // rows)


def write_array(path: Path, grid: SimGrid, arrays: list[np.ndarray], bands: list[str], dtype: str,
                nodata: float | int) -> None:
    """Write whole 2-D arrays (already held in memory) strip by strip."""
    with open_geotiff(path, grid, bands, dtype, nodata) as ds:
        for win, sl in strips(grid):
            ds.write(np.stack([a[sl] for a in arrays]).astype(dtype), window=win)


@contextlib.contextmanager
def _fixed_gpkg_date() -> Iterator[None]:
    """GeoPackages record a write timestamp; pin it so identical inputs give identical files."""
    old = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": "2000-01-01T00:00:00.000Z"})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": old})


def write_gpkg(gdf: gpd.GeoDataFrame, path: Path, layer: str) -> None:
    with _fixed_gpkg_date():
        gdf.to_file(path, layer=layer, driver="GPKG", engine="pyogrio")


def write_csv(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, index=False, float_format="%.10g", lineterminator="\n")


def write_yaml(obj: dict, path: Path) -> None:
    path.write_text(yaml.safe_dump(obj, sort_keys=False, default_flow_style=None))


@contextlib.contextmanager
def atomic_dir(out_dir: Path) -> Iterator[Path]:
    """Build into a sibling temp folder; on success it replaces `out_dir` (only then)."""
    with atomic_path(Path(out_dir).absolute()) as tmp:
        tmp.mkdir()
        yield tmp