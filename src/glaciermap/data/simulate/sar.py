"""Sentinel-1-like backscatter (VV, VH in dB) and 12-day InSAR coherence.

Geometry: an ascending, right-looking pass (sensor towards azimuth 258 deg, incidence 39 deg).
Backscatter = class gamma0 x cos(local incidence) x sin(incidence) / sin(local incidence)
(bright slopes facing the radar), with multiplicative speckle (gamma distributed, ENL 4.4).
Layover (terrain facing the radar steeper than the incidence angle) and radar shadow (cast or
facing away) are NaN. Coherence is high on stable rock, low on moving / melting ice and snow,
water and forest, with estimation bias and noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rasterio.enums import Resampling
from rasterio.warp import reproject

from .surface import DEBRIS, FIRN, FOREFIELD, FOREST, ICE, MEADOW, ROCK, SNOW, WATER
from .terrain import SimGrid, cast_shadow, gradient, slope_aspect

BANDS = ("VV", "VH", "coh")
LOOK_TO_SENSOR_AZ = 258.0
INCIDENCE_DEG = 39.0
ENL = 4.4

# gamma0 (dB) VV, VH and coherence per class
GAMMA0 = np.zeros((9, 3), np.float32)
GAMMA0[ROCK] = [-7.0, -14.0, 0.70]
GAMMA0[MEADOW] = [-10.0, -17.0, 0.40]
GAMMA0[FOREST] = [-7.5, -13.0, 0.20]
GAMMA0[WATER] = [-21.0, -28.0, 0.05]
GAMMA0[ICE] = [-13.0, -21.0, 0.15]
GAMMA0[FIRN] = [-17.0, -25.0, 0.10]
GAMMA0[DEBRIS] = [-8.5, -15.5, 0.40]
GAMMA0[SNOW] = [-16.0, -24.0, 0.15]
GAMMA0[FOREFIELD] = [-7.0, -14.0, 0.60]


@dataclass
class SarGeometry:
    grid: SimGrid
    terrain_gain: np.ndarray  # float32 multiplicative factor on gamma0
    invalid: np.ndarray       # bool: layover or radar shadow


def to_grid(src: np.ndarray, src_grid: SimGrid, dst_grid: SimGrid,
            resampling: Resampling = Resampling.average) -> np.ndarray:
    out = np.full(dst_grid.shape, np.nan, np.float32)
    reproject(src.astype(np.float32), out, src_transform=src_grid.transform, src_crs=src_grid.crs,
              src_nodata=np.nan, dst_transform=dst_grid.transform, dst_crs=dst_grid.crs,
              dst_nodata=np.nan, resampling=resampling)
    return out


def sar_geometry(z_pad: np.ndarray, pad_grid: SimGrid, sar_grid: SimGrid, pad_px: int) -> SarGeometry:
    spad = max(int(pad_px * pad_grid.res / sar_grid.res) - 1, 0)
    g2 = sar_grid.padded(spad)
    z = to_grid(z_pad, pad_grid, g2)
    if np.isnan(z).any():
        z = np.where(np.isnan(z), np.nanmean(z), z)
    slope, aspect = slope_aspect(z, g2.res)
    th = math.radians(INCIDENCE_DEG)
    elev = 90.0 - INCIDENCE_DEG
    zen, az = math.radians(90.0 - elev), math.radians(LOOK_TO_SENSOR_AZ)
    cos_loc = (math.cos(zen) * np.cos(slope) + math.sin(zen) * np.sin(slope) * np.cos(az - aspect))
    gx, gy = gradient(z, g2.res)
    rise_to_sensor = np.arctan(gx * math.sin(az) + gy * math.cos(az))
    layover = rise_to_sensor > th
    shadow = cast_shadow(z, g2.res, LOOK_TO_SENSOR_AZ, elev) | (cos_loc <= 0.02)
    sin_loc = np.sqrt(np.clip(1.0 - cos_loc ** 2, 0.0, 1.0))
    gain = np.clip(cos_loc, 0.0, None) * math.sin(th) / np.maximum(sin_loc, 0.1)
    sl = (slice(spad, spad + sar_grid.height), slice(spad, spad + sar_grid.width))
    return SarGeometry(sar_grid, gain[sl].astype(np.float32), (layover | shadow)[sl])


def expected_fields(cls: np.ndarray, texture: np.ndarray, scene_grid: SimGrid,
                    sar_grid: SimGrid, offset_db: float) -> list[np.ndarray]:
    """gamma0 VV, VH (linear) and coherence averaged onto the SAR grid."""
    out = []
    for b in range(3):
        if b < 2:
            v = 10.0 ** ((GAMMA0[cls, b] + 1.2 * texture + offset_db) / 10.0)
        else:
            v = np.clip(GAMMA0[cls, b] * (1.0 + 0.15 * texture), 0.0, 1.0)
        out.append(to_grid(v.astype(np.float32), scene_grid, sar_grid))
    return out


def render_window(fields: list[np.ndarray], geom: SarGeometry, sl: tuple[slice, slice],
                  rng: np.random.Generator) -> np.ndarray:
    """(3, h, w) float32: VV dB, VH dB, coherence; NaN where layover / shadow / outside."""
    gain = geom.terrain_gain[sl]
    out = np.empty((3, *gain.shape), np.float32)
    for b in range(2):
        speckle = rng.gamma(ENL, 1.0 / ENL, gain.shape)
        sigma0 = fields[b][sl] * gain * speckle
        out[b] = 10.0 * np.log10(np.maximum(sigma0, 1e-5))
    coh = fields[2][sl]
    out[2] = np.clip(np.sqrt(coh ** 2 + 0.01) + rng.normal(0.0, 0.05, coh.shape), 0.0, 1.0)
    bad = geom.invalid[sl] | ~np.isfinite(fields[0][sl])
    out[:, bad] = np.nan
    return out
