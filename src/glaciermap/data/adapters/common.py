"""Helpers shared by the dataset adapters: band planning, grids, cube attributes, the cube folder."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyproj import CRS as ProjCRS
from rasterio import Affine
from rasterio.crs import CRS
from tqdm.auto import tqdm

from glaciermap.config import SensorsConfig
from glaciermap.data.cubes import INDEX_FILE, INDEX_ORDER, Cube, glacier_location, index_row, write_cube
from glaciermap.data.raw import Grid, decimal_year
from glaciermap.data.terrain import hillshade, slope_deg
from glaciermap.errors import InputDataError
from glaciermap.io import atomic_path


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
                mask_invalid: np.ndarray, grid: Grid, attrs: dict, mask_debris: np.ndarray | None = None) -> Cube:
    """A Cube with the attributes ingest gives every cube (area, centroid, CRS, resolution...);
    `mask_debris`: the optional debris layer (`glaciermap.data.cubes.DEBRIS`)."""
    loc = glacier_location(mask_glacier, grid)
    invalid = mask_invalid.astype(bool)
    full = {**attrs, "area_km2": loc["area_km2"], "lon": loc["lon"], "lat": loc["lat"],
            "crs": grid.crs.to_string(), "res": float(grid.res), "invalid_fraction": float(invalid.mean())}
    return Cube(data=data.astype(np.float32), bands=list(bands), mask_glacier=mask_glacier.astype(np.uint8),
                mask_all=mask_all.astype(np.uint8), mask_invalid=invalid.astype(np.uint8), grid=grid,
                attrs=full, mask_debris=None if mask_debris is None else mask_debris.astype(np.uint8))


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
            rows.append(index_row(cube, rel.as_posix(), role, **extra))
        if not rows:
            raise InputDataError("no cube could be built from the dataset", path=source,
                                 hint="see the warnings above for what was skipped")
        index = pd.DataFrame(rows)
        index = index[[*INDEX_ORDER, *(c for c in index.columns if c not in INDEX_ORDER)]]
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
