"""Surface elevation change maps (dh/dt): the `dhdt` sensor group of a raw region.

A region names its map in region.yaml (`dhdt: dhdt.tif`): surface elevation change in **m/yr,
negative = thinning** (e.g. Hugonnet et al. 2021, 100 m tiles of 2000-2019), any CRS and
resolution. The band is the one described `dhdt`; a single-band file without a description (a
Hugonnet tile as downloaded) is taken as it is.

A pixel is a **void** when it is NaN, the file's nodata value, or implausible for a glacier
surface (|dh/dt| > `MAX_ABS_M_PER_YR`: sentinels such as -9999). Voids are filled from their
neighbours or left NaN and masked (`data.dhdt_voids`), as DEM voids are (`glaciermap.data.dem`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from glaciermap.config import SensorsConfig
from glaciermap.data.dem import DemOnGrid, read_dem_on_grid
from glaciermap.data.raw import band_indexes, open_raster
from glaciermap.errors import InputDataError

GROUP = "dhdt"
BAND = "dhdt"
MAX_ABS_M_PER_YR = 50.0  # the fastest surface lowering measured on glaciers is ~ 10-20 m/yr


def find_dhdt_voids(values: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """Boolean mask of dh/dt voids (NaN, the nodata value, |dh/dt| > MAX_ABS_M_PER_YR)."""
    v = np.asarray(values, dtype=np.float64)
    void = ~np.isfinite(v) | (np.abs(v) > MAX_ABS_M_PER_YR)
    if nodata is not None and np.isfinite(nodata):
        void |= v == nodata
    return void


def dhdt_band(path: Path) -> int:
    """1-based index of the dh/dt band of a file (band `dhdt`, or the only band if undescribed)."""
    with open_raster(path) as ds:
        if ds.count == 1 and not ds.descriptions[0]:
            return 1
        return band_indexes(ds, [BAND], path)[0]


def read_dhdt_on_grid(path: Path, grid, policy: str) -> DemOnGrid:
    """The dh/dt map on `grid` (bilinear), voids filled or masked by `policy` ("fill" / "mask")."""
    return read_dem_on_grid(path, grid, policy, band=dhdt_band(path), find=find_dhdt_voids)


def require_dhdt(sensors: SensorsConfig, sensor_sets: Iterable[str], *, have: bool, region_yaml: Path,
                 lacking: str = "the region has no dh/dt map") -> None:
    """Raise (naming region.yaml) when one of `sensor_sets` uses the dhdt group and `have` is false.

    Ingest asks whether the region names a map; training whether its cubes carry the band (a
    region that gained its map after the cubes were built needs ingest re-run).
    """
    if have:
        return
    users = [s for s in dict.fromkeys(sensor_sets) if GROUP in sensors.resolve(s)]
    if users:
        raise InputDataError(f"sensor set(s) {users} use the dhdt group, but {lacking}", path=region_yaml,
                             hint="name a dh/dt map in region.yaml (dhdt: dhdt.tif; m/yr, negative = thinning) "
                                  "and re-run ingest, or use a sensor set without dhdt")


__all__ = ["GROUP", "BAND", "find_dhdt_voids", "dhdt_band", "read_dhdt_on_grid", "require_dhdt"]
