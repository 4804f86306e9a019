"""Surface elevation change (dh/dt, m/yr) over a period before the inventory, as a coarse map
with the noise and voids of published products (Hugonnet et al. 2021: 100 m, 2000-2019).

Sign: **negative = surface lowering (thinning)**; units: metres of surface elevation per year.

Signal (10 m, then averaged onto the dh/dt grid), on the ice of the base outlines only:

    dhdt = -(THIN_BASE + THIN_GRADIENT * max(0, ELA - z)) * (1 + DEBRIS_EXTRA * debris)

so ice thins everywhere (THIN_BASE = 0.3 m/yr at and above the ELA), most on low tongues (+0.5 m/yr
per 100 m below the ELA) and more again on debris-covered tongues (x 1.3: ice cliffs and ponds,
the "debris-cover anomaly"); stable ground (rock, vegetation, water) is 0.

Noise (on the dh/dt grid): spatially correlated, sigma(slope) = `noise` * (1 + (slope / 30 deg)^2)
(0.3 m/yr on flat ground, 0.6 at 30 deg, ~1 at 45 deg: errors grow with slope), the sum of a
short-range (300 m) and a long-range (2 km) Gaussian field. Voids (NaN): correlated patches
(250 m) where a uniform field falls below
    p_void = 0.02 + 0.3 * clip((slope - 25 deg) / 25 deg, 0, 1) + 0.25 * shadow + 0.1 * firn
(steep, shadowed and low-contrast snow terrain, where stereo DEMs fail).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rasterio.enums import Resampling
from scipy.special import ndtr

from . import noise
from .sar import to_grid
from .terrain import SimGrid
from .writer import open_geotiff

THIN_BASE = 0.3  # m/yr, at and above the ELA
THIN_GRADIENT = 0.005  # m/yr per m below the ELA
DEBRIS_EXTRA = 0.3  # relative extra thinning of debris-covered ice
UNITS = "m/yr"
SIGN = "negative = surface lowering (thinning), positive = thickening"


def thinning(z: np.ndarray, glacier: np.ndarray, debris: np.ndarray, ela_m: float) -> np.ndarray:
    """The dh/dt signal (m/yr, <= 0) on the fine grid (formula in the module docstring)."""
    below = np.clip(ela_m - z, 0.0, None)
    rate = (THIN_BASE + THIN_GRADIENT * below) * (1.0 + DEBRIS_EXTRA * debris)
    return np.where(glacier, -rate, 0.0).astype(np.float32)


def simulate_dhdt(signal: np.ndarray, slope: np.ndarray, shadow: np.ndarray, firn: np.ndarray,
                  grid: SimGrid, dhdt_grid: SimGrid, sigma_m: float, rng: np.random.Generator) -> np.ndarray:
    """The dh/dt map on `dhdt_grid`: the fine `signal` (on `grid`; slope in radians, shadow and
    firn bool) averaged onto it, plus correlated noise, with voids as NaN."""
    mean = to_grid(signal, grid, dhdt_grid, Resampling.average)
    slope_deg = np.degrees(to_grid(slope, grid, dhdt_grid, Resampling.average))
    shade = to_grid(shadow.astype(np.float32), grid, dhdt_grid, Resampling.average)
    snow = to_grid(firn.astype(np.float32), grid, dhdt_grid, Resampling.average)
    shape, res = dhdt_grid.shape, dhdt_grid.res
    field = (0.6 * noise.gaussian_field(rng, shape, res, 300.0)
             + 0.8 * noise.gaussian_field(rng, shape, res, 2000.0))
    sigma = sigma_m * (1.0 + (slope_deg / 45.0) ** 2)
    out = mean + sigma * field
    p_void = 0.01 + 0.2 * np.clip((slope_deg - 30.0) / 30.0, 0.0, 1.0) + 0.1 * shade + 0.05 * snow
    void = ndtr(noise.gaussian_field(rng, shape, res, 250.0)) < p_void
    out[void | ~np.isfinite(mean)] = np.nan
    return out.astype(np.float32)


def write_dhdt(path: Path, grid: SimGrid, dhdt: np.ndarray, years: tuple[int, int]) -> None:
    """dhdt.tif: band `dhdt` (float32, NaN = void) with units, sign and period in its tags."""
    with open_geotiff(path, grid, ["dhdt"], "float32", np.nan) as ds:
        ds.write(dhdt[None])
        ds.set_band_unit(1, UNITS)
        tags = {"units": UNITS, "sign": SIGN, "start_year": years[0], "end_year": years[1],
                "period": f"{years[0]}-{years[1]}", "source": "glaciermap simulate"}
        ds.update_tags(**tags)
        ds.update_tags(1, **tags)


__all__ = ["thinning", "simulate_dhdt", "write_dhdt", "UNITS", "SIGN"]
