"""Per-glacier cubes: one NetCDF per glacier and epoch (schema in docs/data-format.md, section 2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from pyproj import Transformer
from rasterio.crs import CRS

from glaciermap.data.grid import Grid
from glaciermap.errors import InputDataError
from glaciermap.io import atomic_path

MASKS = ("mask_glacier", "mask_all", "mask_invalid")
INDEX_FILE = "index.csv"
#: what ingest left out, one row each: glacier_id (empty for an acquisition), scene, reason
SKIPPED_FILE = "skipped.csv"
SKIPPED_COLUMNS = ("glacier_id", "scene", "reason")
#: the context tiles (glaciermap.data.context), one row each: tile_id, epoch, path, scene, usable_fraction
CONTEXT_FILE = "context.csv"
CONTEXT_COLUMNS = ("tile_id", "epoch", "path", "scene", "usable_fraction")
#: optional mask of pixels without a usable DEM value (invalid where a sensor set uses the dem group)
DEM_VOID = "mask_dem_void"
#: optional surface layer: 1 on debris-covered ice, 0 elsewhere (on a glacier: clean ice, snow or firn),
#: DEBRIS_UNKNOWN where the source does not say (beyond its raster; neighbours' ice when it describes
#: only this glacier). Absent when the region or dataset gives no debris information.
DEBRIS = "mask_debris"
DEBRIS_UNKNOWN = 2
#: optional layer (ingest with data.mark_other_date_outlines): 1 inside the outlines inventoried at
#: another epoch than the cube's image, whose labels there may be ice gained or lost in between
OTHER_DATE = "mask_other_date"
#: optional mask of pixels without a usable dh/dt value (invalid where a sensor set uses the dhdt group)
DHDT_VOID = "mask_dhdt_void"
#: the void mask of each sensor group that has one
GROUP_VOIDS = {"dem": DEM_VOID, "dhdt": DHDT_VOID}
#: the optional (H, W) layers, each a Cube field of the same name: written when not None
OPTIONAL_MASKS = (*GROUP_VOIDS.values(), DEBRIS, OTHER_DATE)
#: groups read from one region-wide file, the same at every epoch (raw format: dem.tif, dhdt.tif): a
#: model that leans on them carries the inventory-year extent into its later maps
STATIC_GROUPS = ("dem", "dhdt")
#: columns every stage after ingest relies on (ingest writes more)
INDEX_COLUMNS = ("glacier_id", "epoch", "role", "year", "path", "lon", "area_km2")
#: column order of every cube index (raw-region ingest and the dataset adapters); writers may add
#: columns after these (`scene`, `split`, `tile`, ...)
INDEX_ORDER = ("glacier_id", "group", "epoch", "role", "year", "inventory_year", "path", "lon", "lat", "x", "y",
               "area_km2", "invalid_fraction", "glacier_invalid_fraction", "height", "width", "has_sar")


@dataclass
class Cube:
    """A cube in memory: bands (C, H, W) float32 with NaN for no data, masks (H, W) uint8.

    `mask_dem_void` (None when the cube has no DEM bands, or was written before it existed) marks
    pixels whose DEM bands hold no usable elevation (a masked void, beyond the DEM's edge);
    `mask_dhdt_void` the same for the dh/dt band.
    `mask_debris` (None when the source has no debris information) is the `DEBRIS` layer: 1 on
    debris-covered ice, 0 not debris, `DEBRIS_UNKNOWN` where the source does not say.
    `mask_other_date` (None unless ingest marked them) is the `OTHER_DATE` layer.
    """

    data: np.ndarray
    bands: list[str]
    mask_glacier: np.ndarray
    mask_all: np.ndarray
    mask_invalid: np.ndarray
    grid: Grid
    attrs: dict
    mask_dem_void: np.ndarray | None = None
    mask_debris: np.ndarray | None = None
    mask_dhdt_void: np.ndarray | None = None
    mask_other_date: np.ndarray | None = None

    def select(self, bands: list[str]) -> np.ndarray:
        """(len(bands), H, W) view in the given order; absent bands come back all-NaN."""
        out = np.full((len(bands), *self.data.shape[1:]), np.nan, dtype=np.float32)
        for i, b in enumerate(bands):
            if b in self.bands:
                out[i] = self.data[self.bands.index(b)]
        return out


def write_cube(path: Path, cube: Cube) -> Path:
    """Write a cube as compressed NetCDF4, atomically."""
    xs, ys = cube.grid.xy_coords()
    t = cube.grid.transform
    spatial_ref = xr.DataArray(0, attrs={
        "crs_wkt": cube.grid.crs.to_wkt(),
        "spatial_ref": cube.grid.crs.to_wkt(),
        "GeoTransform": " ".join(str(v) for v in (t.c, t.a, t.b, t.f, t.d, t.e)),
    })
    gm = {"grid_mapping": "spatial_ref"}
    optional = {m: getattr(cube, m) for m in OPTIONAL_MASKS}
    masks = [*MASKS, *(m for m, v in optional.items() if v is not None)]
    ds = xr.Dataset(
        {
            "data": (("band", "y", "x"), cube.data.astype(np.float32), gm),
            **{m: (("y", "x"), getattr(cube, m).astype(np.uint8), gm) for m in masks},
            "spatial_ref": spatial_ref,
        },
        coords={"band": cube.bands, "y": ys, "x": xs},
        attrs={k: _attr(v) for k, v in cube.attrs.items()},
    )
    h, w = cube.data.shape[1:]
    enc = {"data": {"zlib": True, "complevel": 1, "chunksizes": (1, min(h, 256), min(w, 256))}}
    enc.update({m: {"zlib": True, "complevel": 1} for m in masks})
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf", encoding=enc)
    return path


def _attr(v):
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if v is None:
        return ""
    return v


def glacier_location(mask: np.ndarray, grid: Grid) -> dict[str, float]:
    """Area and centroid of a glacier, both from its mask on the cube grid (one home for both
    cube-index writers: raw-region ingest and the dataset adapters).

    ``area_km2 = n_pixels * res**2 / 1e6`` (the pixels the masks, inference and the area tables
    count; for a raw region the mask is the outline rasterised by pixel centres, so this differs
    from the polygon's area by the rasterisation error, well under a pixel row along the edge);
    ``x, y`` = centroid of the mask's pixels in the cube CRS (the mean pixel centre, which is the
    centroid of the union of the pixel squares); ``lon, lat`` = that point in EPSG:4326. An empty
    mask has area 0 and the grid centre as its centroid.
    """
    rows, cols = np.nonzero(mask)
    r, c = (rows.mean() + 0.5, cols.mean() + 0.5) if rows.size else (grid.height / 2, grid.width / 2)
    t = grid.transform
    x, y = t.c + t.a * c + t.b * r, t.f + t.d * c + t.e * r
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return {"area_km2": float(rows.size * abs(t.a * t.e) / 1e6), "lon": float(lon), "lat": float(lat),
            "x": float(x), "y": float(y)}


def index_row(cube: Cube, path: str, role: str, *, group: str | None = None, **extra) -> dict:
    """The index.csv row of a written cube, columns in `INDEX_ORDER`, then `extra`.

    Area and location come from :func:`glacier_location` on the cube's glacier mask; `group` is
    the glacier the cube's outline belongs to (folds keep a group together; default: the cube's
    own glacier id, e.g. the RGIId of a divide); `has_sar` and writer-specific columns come in
    `extra`.
    """
    a, loc = cube.attrs, glacier_location(cube.mask_glacier, cube.grid)
    glacier = cube.mask_glacier == 1
    return {"glacier_id": a["glacier_id"], "group": a["glacier_id"] if group is None else group,
            "epoch": a["epoch"], "role": role, "year": a["year"], "inventory_year": a["inventory_year"],
            "path": path, "lon": loc["lon"], "lat": loc["lat"], "x": loc["x"], "y": loc["y"],
            "area_km2": loc["area_km2"], "invalid_fraction": float(cube.mask_invalid.mean()),
            "glacier_invalid_fraction": float(cube.mask_invalid[glacier].mean()) if glacier.any() else 0.0,
            "height": cube.grid.height, "width": cube.grid.width, **extra}


def read_cube(path: str | Path) -> Cube:
    """Load a whole cube into memory."""
    path = Path(path)
    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except (OSError, ValueError) as err:
        raise InputDataError(f"cannot read cube: {err}", path=path,
                             hint="re-run `glaciermap ingest`") from None
    missing = [v for v in ("data", *MASKS, "spatial_ref") if v not in ds]
    if missing:
        raise InputDataError(f"not a glaciermap cube: missing {missing}", path=path)
    return Cube(
        data=ds["data"].values.astype(np.float32),
        bands=[str(b) for b in ds["band"].values],
        mask_glacier=ds["mask_glacier"].values,
        mask_all=ds["mask_all"].values,
        mask_invalid=ds["mask_invalid"].values,
        grid=cube_grid(ds, path),
        attrs=dict(ds.attrs),
        **{m: ds[m].values if m in ds else None for m in OPTIONAL_MASKS},
    )


def cube_grid(ds: xr.Dataset, path: Path | str = "") -> Grid:
    """The Grid of an open cube dataset (from its CF grid mapping)."""
    ref = ds["spatial_ref"].attrs
    try:
        c, a, b, f, d, e = (float(v) for v in ref["GeoTransform"].split())
        crs = CRS.from_wkt(ref["crs_wkt"])
    except (KeyError, ValueError) as err:
        raise InputDataError(f"cube has no valid grid mapping ({err})", path=path) from None
    return Grid(crs, rasterio.Affine(a, b, c, d, e, f), ds.sizes["x"], ds.sizes["y"])


def read_index(cubes_dir: str | Path) -> pd.DataFrame:
    """The cube index (one row per glacier and epoch)."""
    path = Path(cubes_dir) / INDEX_FILE
    if not path.exists():
        raise InputDataError("cube index missing", path=path, hint="run `glaciermap ingest` first")
    try:
        index = pd.read_csv(path, dtype={"glacier_id": str, "group": str, "epoch": str, "scene": str})
    except ValueError as err:  # pandas' EmptyDataError / ParserError, UnicodeDecodeError
        raise InputDataError(f"cannot read cube index (empty or corrupt): {err}", path=path,
                             hint="re-run `glaciermap ingest`") from None
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise InputDataError(f"not a cube index: column(s) {missing} missing", path=path,
                             hint="re-run `glaciermap ingest`")
    if "group" not in index.columns:  # an index written before glacier groups: each glacier its own
        index.insert(1, "group", index["glacier_id"])
    return index


def read_context(cubes_dir: str | Path) -> pd.DataFrame:
    """The context tiles of a cube folder (`CONTEXT_COLUMNS`); empty when ingest wrote none
    (`data.context_tile_m: 0`, a dataset adapter, cubes from before context tiles)."""
    path = Path(cubes_dir) / CONTEXT_FILE
    if not path.exists():
        return pd.DataFrame(columns=list(CONTEXT_COLUMNS))
    try:
        return pd.read_csv(path, dtype={"tile_id": str, "epoch": str, "scene": str})
    except ValueError as err:
        raise InputDataError(f"cannot read the context tile list (empty or corrupt): {err}", path=path,
                             hint="re-run `glaciermap ingest`") from None
