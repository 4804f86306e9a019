"""Per-glacier NetCDF cubes in the Diaconu & Bamber layout -> glaciermap cubes.

Layout (docs/data-format.md, section 3.1): `<root>/<epoch>/<rgi_id>/<glacier_nr>/<file>.nc` as
published, or flattened `<root>/<epoch>/<glacier_id>.nc`, one folder per epoch; each file holds `band_data` (band, y, x) whose `long_name` lists the band names
(Sentinel-2 bands plus FILL_MASK, CLOUD_MASK, SHADOW_MASK), `mask_crt_g`, `mask_all_g_id`,
`dem` (and optionally a debris mask: `mask_debris`, debris of every glacier in the file, as DL4GAM
writes it, or `mask_debris_crt_g`, this glacier's debris, as the 2023 code reads it; and `dhdt`),
on a grid with a CF grid mapping.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS as ProjCRS
from rasterio import Affine

from glaciermap.config import DataConfig, SensorsConfig
from glaciermap.data.adapters.common import (BandPlan, band_plan, decimal_year_of, dem_derived, finish_cube,
                                             metric_grid, safe_id, write_cube_folder)
from glaciermap.data.cubes import DEBRIS_UNKNOWN, Cube
from glaciermap.data.raw import Grid
from glaciermap.errors import InputDataError

FORMAT = "dandb-netcdf"
MASK_BANDS = ("FILL_MASK", "CLOUD_MASK", "SHADOW_MASK")
MASK_VARIABLES = ("mask_crt_g", "mask_all_g_id", "dem")
DEBRIS = "mask_debris_crt_g"  # debris of this glacier only
DEBRIS_ALL = "mask_debris"  # debris of every glacier in the file (DL4GAM)
#: optional surface elevation change (m/yr, negative = thinning), the variable DL4GAM's cubes add
#: from Hugonnet et al. (2021) and its data loader reads as `ds.dhdt`; offered as band `dhdt`
DHDT = "dhdt"
DEM_BANDS = ("dem", "slope", "hillshade")
HINT = "band names come from band_data's long_name; see sensors.groups in params.yaml"


def epoch_files(root: str | Path) -> tuple[dict[str, dict[str, Path]], dict[str, str]]:
    """({epoch folder: {glacier_id: file}}, {glacier_id: group}) under the dataset root.

    Two layouts: the published `<epoch>/<rgi_id>/<glacier_nr>/<file>.nc` (glacier id
    `<rgi_id>_<glacier_nr>`, the folders below the epoch joined by `_`; group = the RGI id, so
    folds keep the glaciers of one RGI outline together), and the flat `<epoch>/<glacier_id>.nc`
    (id = group = the file name). Folders are taken in name order.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputDataError("dataset folder not found", path=root,
                             hint="pass the folder holding one sub-folder of .nc files per epoch")
    epochs: dict[str, dict[str, Path]] = {}
    groups: dict[str, str] = {}
    for d in sorted(root.iterdir()):
        if not d.is_dir() or d.name.startswith("."):
            continue
        files: dict[str, Path] = {}
        for f in sorted(d.rglob("*.nc")):
            folders = f.relative_to(d).parts[:-1]
            gid = safe_id("_".join(folders)) if folders else f.stem
            if gid in files:
                raise InputDataError(f"two files for glacier {gid!r}: {files[gid].name} and {f.name}",
                                     path=f.parent, hint="each glacier folder holds one .nc file per epoch")
            files[gid] = f
            groups.setdefault(gid, folders[0] if folders else f.stem)
        if files:
            epochs[d.name] = files
    if not epochs:
        raise InputDataError("no epoch folder with .nc files", path=root,
                             hint="expected <root>/<epoch>/<rgi_id>/<glacier_nr>/<file>.nc or "
                                  "<root>/<epoch>/<glacier_id>.nc (docs/data-format.md, section 3.1)")
    return epochs, groups


def band_names(da: xr.DataArray, path: Path) -> list[str]:
    """Band names from band_data's `long_name` (a list of strings, or one comma/space separated string)."""
    raw = da.attrs.get("long_name")
    if raw is None:
        raise InputDataError("band_data has no long_name attribute listing the band names", path=path)
    if isinstance(raw, (str, bytes)):
        text = raw.decode() if isinstance(raw, bytes) else raw
        names = [n for n in re.split(r"[\s,()\[\]'\"]+", text) if n]
    else:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(raw)]
    if len(names) != da.sizes["band"]:
        raise InputDataError(f"band_data long_name names {len(names)} bands {names}, but band_data has "
                             f"{da.sizes['band']}", path=path)
    return names


def grid_mapping_crs(ds: xr.Dataset, path: Path) -> ProjCRS:
    """The CRS of band_data from its CF grid mapping (as xarray decodes it with decode_coords='all')."""
    da = ds["band_data"]
    name = da.encoding.get("grid_mapping") or da.attrs.get("grid_mapping")
    candidates = [name] if name in ds.variables else []
    candidates += [v for v in ds.variables if v not in candidates and
                   {"crs_wkt", "spatial_ref", "grid_mapping_name"} & set(ds[v].attrs)]
    if not candidates:
        raise InputDataError("no CRS: band_data has no CF grid mapping (e.g. a `spatial_ref` variable "
                             "with `crs_wkt`)", path=path,
                             hint="write one with rioxarray `.rio.write_crs()` or pyproj `CRS.to_cf()`")
    try:
        return ProjCRS.from_cf(dict(ds[candidates[0]].attrs))
    except Exception as err:  # pyproj raises several types for unusable CF attributes
        raise InputDataError(f"invalid CRS in grid mapping {candidates[0]!r}: {err}", path=path) from None


def regular_grid(ds: xr.Dataset, crs: ProjCRS, path: Path) -> Grid:
    """The Grid of a north-up dataset (its x / y pixel-centre coordinates must be evenly spaced)."""
    x, y = ds["x"].values.astype(np.float64), ds["y"].values.astype(np.float64)
    if x.size < 2 or y.size < 2:
        raise InputDataError(f"grid too small ({y.size} x {x.size} pixels)", path=path)
    dx, dy = np.diff(x), np.diff(y)
    if not (np.allclose(dx, dx[0], rtol=1e-6) and np.allclose(dy, dy[0], rtol=1e-6)):
        raise InputDataError("x / y coordinates are not evenly spaced", path=path)
    transform = Affine(dx[0], 0.0, x[0] - dx[0] / 2, 0.0, dy[0], y[0] - dy[0] / 2)
    return metric_grid(crs, transform, x.size, y.size, path)


def open_glacier(path: Path) -> xr.Dataset:
    """Open one glacier file, north-up, checking that every variable the layout needs is there."""
    try:
        ds = xr.open_dataset(path, engine="h5netcdf", decode_coords="all")
    except (OSError, ValueError) as err:
        raise InputDataError(f"cannot read NetCDF: {err}", path=path) from None
    missing = [v for v in ("band_data", *MASK_VARIABLES) if v not in ds.variables]
    if missing:
        ds.close()
        raise InputDataError(f"missing variable(s) {missing}", path=path,
                             hint="each glacier file needs band_data, mask_crt_g, mask_all_g_id and dem")
    if ds["band_data"].dims != ("band", "y", "x"):
        ds.close()
        raise InputDataError(f"band_data has dims {ds['band_data'].dims}, expected ('band', 'y', 'x')", path=path)
    bad = [v for v in (*MASK_VARIABLES, DEBRIS, DEBRIS_ALL, DHDT) if v in ds.variables and ds[v].dims != ("y", "x")]
    if bad:
        ds.close()
        raise InputDataError(f"variable(s) {bad} are not on the (y, x) grid of band_data", path=path)
    if ds.sizes["y"] > 1 and ds["y"].values[1] > ds["y"].values[0]:
        ds = ds.isel(y=slice(None, None, -1))  # south-up file: flip to north-up
    return ds


def read_glacier(path: Path, glacier_id: str, epoch: str, plan: BandPlan) -> tuple[Cube, bool]:
    """One glacier file as a glaciermap Cube, and whether it carries the SAR group."""
    with open_glacier(path) as ds:
        names = band_names(ds["band_data"], path)
        missing_masks = [m for m in MASK_BANDS if m not in names]
        if missing_masks:
            raise InputDataError(f"band_data lacks mask band(s) {missing_masks}; its long_name lists {names}",
                                 path=path, hint=f"the layout needs {list(MASK_BANDS)} among the bands")
        grid = regular_grid(ds, grid_mapping_crs(ds, path), path)
        stack = ds["band_data"].values.astype(np.float32)
        dem = ds["dem"].values.astype(np.float32)
        crt, all_id = ds["mask_crt_g"].values, ds["mask_all_g_id"].values
        debris = {v: ds[v].values for v in (DEBRIS_ALL, DEBRIS) if v in ds.variables}
        dhdt = ds[DHDT].values.astype(np.float32) if DHDT in ds.variables else None
        year = decimal_year_of(ds.attrs.get("year", ds.attrs.get("date")))
    if not np.isfinite(year) and re.fullmatch(r"\d{4}", epoch):
        year = float(epoch)
    reflectance = [n for n in names if n not in MASK_BANDS]
    layers = {n: stack[names.index(n)] for n in reflectance}
    layers.update({"dem": dem, **dem_derived(dem, grid.res)})
    if dhdt is not None:
        layers[DHDT] = dhdt
    plan.check_offered(list(layers), path, HINT)
    bands = plan.bands(layers, path)
    mask = {m: stack[names.index(m)] for m in MASK_BANDS}
    written = [b for b in bands if b in reflectance]
    invalid = ((mask["FILL_MASK"] == 0) | ~np.isfinite(mask["FILL_MASK"])
               | ~(mask["CLOUD_MASK"] == 0) | ~(mask["SHADOW_MASK"] == 0))
    if written:  # NaN reflectance counts as no data
        invalid |= ~np.isfinite(np.stack([layers[b] for b in written])).all(axis=0)
    glacier = crt == 1
    all_glaciers = np.isfinite(all_id) & (all_id != -1)
    attrs = {"glacier_id": glacier_id, "epoch": epoch, "year": year, "source": FORMAT, "source_file": path.name}
    mask_debris = debris_layer(debris, glacier, all_glaciers)
    if mask_debris is not None:
        attrs["debris_fraction"] = float((mask_debris[glacier] == 1).mean()) if glacier.any() else 0.0
    cube = finish_cube(np.stack([layers[b] for b in bands]), bands, glacier, all_glaciers, invalid, grid, attrs,
                       mask_debris=mask_debris)
    has_sar = "sar" in plan.groups and all(b in bands for b in plan.groups["sar"])
    return cube, has_sar


def debris_layer(debris: dict[str, np.ndarray], glacier: np.ndarray, all_glaciers: np.ndarray) -> np.ndarray | None:
    """The cube's mask_debris layer from a file's debris variable(s) (None when it has none).

    `mask_debris` (every glacier's debris) is taken as it is: 1 where it is 1, DEBRIS_UNKNOWN
    where it holds no data (NaN), else 0. With only `mask_debris_crt_g` the other glaciers' ice
    is DEBRIS_UNKNOWN (their surface is not described), so it counts for neither surface class.
    """
    if DEBRIS_ALL in debris:
        d = debris[DEBRIS_ALL]
        out = (d == 1).astype(np.uint8)
        out[~np.isfinite(d)] = DEBRIS_UNKNOWN
        return out
    if DEBRIS in debris:
        out = ((debris[DEBRIS] == 1) & glacier).astype(np.uint8)
        out[all_glaciers & ~glacier] = DEBRIS_UNKNOWN
        return out
    return None


def ingest_dandb_netcdf(src: str | Path, out_dir: str | Path, cfg: DataConfig, sensors: SensorsConfig,
                        sensor_sets: Sequence[str], *, progress: bool = True) -> pd.DataFrame:
    """Convert a Diaconu & Bamber dataset into a cube folder (index.csv included); return the index."""
    src = Path(src)
    epochs, groups = epoch_files(src)
    inv = cfg.dandb_inventory_epoch or next(iter(epochs))
    if inv not in epochs:
        raise InputDataError(f"inventory epoch folder {inv!r} not found; epoch folders: {list(epochs)}",
                             path=src, hint="set data.dandb_inventory_epoch to one of them")
    recent = [e for e in epochs if e != inv]
    orphans = sorted({g for e in recent for g in epochs[e]} - set(epochs[inv]))
    if orphans:
        warnings.warn(f"{src}: {len(orphans)} glacier(s) without a file in the inventory epoch {inv!r} "
                      f"skipped: {orphans[:10]}", stacklevel=2)
    plan = band_plan(sensors, sensor_sets)

    def cubes() -> Iterator[tuple[Cube, str, dict]]:
        for gid, inv_path in epochs[inv].items():
            cube, has_sar = read_glacier(inv_path, gid, inv, plan)
            inv_year = cube.attrs["year"]
            cube.attrs.update(inventory_year=inv_year, inventory_epoch=inv)
            yield cube, "inventory", {"has_sar": has_sar, "group": groups[gid]}
            for e in recent:
                if gid in epochs[e]:
                    cube, has_sar = read_glacier(epochs[e][gid], gid, e, plan)
                    cube.attrs.update(inventory_year=inv_year, inventory_epoch=inv)
                    yield cube, "recent", {"has_sar": has_sar, "group": groups[gid]}

    total = sum(len([g for g in files if g in epochs[inv]]) for files in epochs.values())
    return write_cube_folder(out_dir, cubes(), total=total, progress=progress, source=src)


__all__ = ["FORMAT", "ingest_dandb_netcdf", "read_glacier", "epoch_files"]
