"""Helpers shared by the dataset adapters: band planning, grids, cube attributes, the cube folder."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyproj import CRS as ProjCRS
from pyproj import Transformer
from rasterio import Affine
from rasterio.crs import CRS
from tqdm.auto import tqdm

from glaciermap.config import SensorsConfig
from glaciermap.data.cubes import INDEX_FILE, Cube, write_cube
from glaciermap.data.raw import Grid, decimal_year
from glaciermap.data.terrain import hillshade, slope_deg
from glaciermap.errors import InputDataError
from glaciermap.io import atomic_path

#: Column order of the index `glaciermap ingest` writes for a raw region (adapters match it; the
#: columns later stages require are `glaciermap.data.cubes.INDEX_COLUMNS`).
REGION_INDEX_ORDER = ["glacier_id", "epoch", "role", "year", "inventory_year", "path", "lon", "lat", "x", "y",
                      "area_km2", "invalid_fraction", "glacier_invalid_fraction", "height", "width", "has_sar"]


@dataclass(frozen=True)
class BandPlan:
    """Which bands the cubes carry: every configured sensor group, and which of them are required."""

    groups: dict[str, list[str]]  # group -> bands, in config order
    needed_by: dict[str, list[str]]  # required group -> the sensor sets that use it

    def missing(self, offered: Iterable[str]) -> dict[str, list[str]]:
        """{required group: its bands not in `offered`} (empty when every required band is offered)."""
        offered = set(offered)
        out = {g: [b for b in self.groups[g] if b not in offered] for g in self.needed_by}
        return {g: bs for g, bs in out.items() if bs}

    def bands(self, offered: Iterable[str], path: Path) -> list[str]:
        """Bands to write: required groups plus the optional groups offered in full."""
        offered = list(offered)
        bands: list[str] = []
        for g, bs in self.groups.items():
            if g in self.needed_by or all(b in offered for b in bs):
                bands += [b for b in bs if b not in bands]
        if not bands:
            raise InputDataError(f"no sensor group {dict(self.groups)} is offered in full; the dataset has "
                                 f"{offered}", path=path, hint="see sensors.groups in params.yaml")
        return bands

    def check_offered(self, offered: Sequence[str], path: Path, hint: str) -> None:
        """Raise InputDataError if a required band is not among what the dataset offers."""
        missing = self.missing(offered)
        if missing:
            asked = ", ".join(f"{g}: {bs} (sensor sets {self.needed_by[g]})" for g, bs in missing.items())
            raise InputDataError(f"dataset lacks band(s) {asked}; it has {list(offered)}", path=path, hint=hint)


def band_plan(sensors: SensorsConfig, sensor_sets: Sequence[str]) -> BandPlan:
    """The band plan for cubes that must serve `sensor_sets` (unknown set names are a ConfigError)."""
    needed: dict[str, list[str]] = {}
    for s in sensor_sets:
        for g in sensors.resolve(s):
            needed.setdefault(g, []).append(s)
    return BandPlan({g: list(bs) for g, bs in sensors.groups.items()}, needed)


def dem_derived(elevation: np.ndarray, res: float) -> dict[str, np.ndarray]:
    """Slope (degrees) and hillshade computed from an elevation grid, as ingest derives them."""
    return {"slope": slope_deg(elevation, res), "hillshade": hillshade(elevation, res)}


def metric_grid(crs: CRS | ProjCRS | str, transform: Affine, width: int, height: int, path: Path,
                where: str = "") -> Grid:
    """A cube Grid, checked: a projected (metric) CRS and square, north-up, unrotated pixels."""
    try:
        crs = CRS.from_user_input(crs.to_wkt() if isinstance(crs, ProjCRS) else crs)
    except Exception as err:  # rasterio raises CRSError, pyproj its own; both mean the same
        raise InputDataError(f"{where}invalid CRS ({err})", path=path) from None
    if not crs.is_projected:
        raise InputDataError(f"{where}CRS {crs.to_string()} is not projected",
                             path=path, hint="cubes need a metric CRS (e.g. UTM); reproject the dataset")
    t = transform
    if t.b or t.d or t.a <= 0 or t.e >= 0 or not np.isclose(t.a, -t.e, rtol=1e-6):
        raise InputDataError(f"{where}grid is not north-up with square pixels (transform {tuple(t)[:6]})",
                             path=path, hint="cubes need square, unrotated pixels with y decreasing downwards")
    return Grid(crs, t, int(width), int(height))


def finish_cube(data: np.ndarray, bands: list[str], mask_glacier: np.ndarray, mask_all: np.ndarray,
                mask_invalid: np.ndarray, grid: Grid, attrs: dict) -> Cube:
    """A Cube with the attributes ingest gives every cube (area, centroid, CRS, resolution...)."""
    lon, lat, _, _ = glacier_centroid(mask_glacier, grid)
    invalid = mask_invalid.astype(bool)
    full = {**attrs, "area_km2": float(mask_glacier.sum() * grid.res ** 2 / 1e6), "lon": lon, "lat": lat,
            "crs": grid.crs.to_string(), "res": float(grid.res), "invalid_fraction": float(invalid.mean())}
    return Cube(data=data.astype(np.float32), bands=list(bands), mask_glacier=mask_glacier.astype(np.uint8),
                mask_all=mask_all.astype(np.uint8), mask_invalid=invalid.astype(np.uint8), grid=grid,
                attrs=full)


def glacier_centroid(mask: np.ndarray, grid: Grid) -> tuple[float, float, float, float]:
    """(lon, lat, x, y) of the centroid of the mask's pixels (the grid centre for an empty mask)."""
    rows, cols = np.nonzero(mask)
    if rows.size:
        r, c = rows.mean() + 0.5, cols.mean() + 0.5
    else:
        r, c = grid.height / 2, grid.width / 2
    t = grid.transform
    x, y = t.c + t.a * c + t.b * r, t.f + t.d * c + t.e * r
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return float(lon), float(lat), float(x), float(y)


def index_row(cube: Cube, rel: str, role: str, extra: dict) -> dict:
    """The index.csv row of a cube: columns as for a raw region (`has_sar` comes in `extra`),
    then the adapter's extra columns."""
    _, _, x, y = glacier_centroid(cube.mask_glacier, cube.grid)
    glacier = cube.mask_glacier == 1
    a = cube.attrs
    return {"glacier_id": a["glacier_id"], "epoch": a["epoch"], "role": role, "year": a["year"],
            "inventory_year": a["inventory_year"], "path": rel, "lon": a["lon"], "lat": a["lat"],
            "x": x, "y": y, "area_km2": a["area_km2"], "invalid_fraction": a["invalid_fraction"],
            "glacier_invalid_fraction": float(cube.mask_invalid[glacier].mean()) if glacier.any() else 0.0,
            "height": cube.grid.height, "width": cube.grid.width, **extra}


def write_cube_folder(out_dir: str | Path, cubes: Iterator[tuple[Cube, str, dict]], *, total: int | None = None,
                      progress: bool = True, source: Path | None = None) -> pd.DataFrame:
    """Write (cube, role, index extras) items as `<epoch>/<glacier_id>.nc` plus index.csv, atomically.

    Cubes are consumed one at a time (memory holds one cube); `out_dir` is replaced only when
    every cube and the index are written.
    """
    out_dir = Path(out_dir)
    rows: list[dict] = []
    with atomic_path(out_dir) as tmp:
        for cube, role, extra in tqdm(cubes, total=total, desc="ingest", unit="cube", disable=not progress):
            rel = Path(str(cube.attrs["epoch"])) / f"{cube.attrs['glacier_id']}.nc"
            write_cube(tmp / rel, cube)
            rows.append(index_row(cube, rel.as_posix(), role, extra))
        if not rows:
            raise InputDataError("no cube could be built from the dataset", path=source,
                                 hint="see the warnings above for what was skipped")
        index = pd.DataFrame(rows)
        index = index[REGION_INDEX_ORDER + [c for c in index.columns if c not in REGION_INDEX_ORDER]]
        index.to_csv(tmp / INDEX_FILE, index=False)
    return index


def safe_id(name: str) -> str:
    """A glacier id usable as a file name (characters other than letters, digits, . _ - become _)."""
    return re.sub(r"[^\w.-]", "_", name)


def decimal_year_of(value) -> float:
    """A year or date attribute as a decimal year (NaN when absent or unparsable)."""
    if value is None:
        return float("nan")
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        value = value.item() if value.size == 1 else None
    try:
        return float(value)
    except (TypeError, ValueError):
        pass
    try:
        return decimal_year(pd.Timestamp(str(value)))
    except (TypeError, ValueError):
        return float("nan")
