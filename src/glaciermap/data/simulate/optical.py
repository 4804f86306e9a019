"""Sentinel-2 L2A-like surface reflectance (B2, B3, B4, B8, B11, B12) from surface classes.

Per pixel: class spectrum x albedo texture, times terrain illumination (direct light on the
local slope, cos(i) / cos(sun zenith), zero in cast shadow and dimmed under cloud shadow, plus
diffuse sky light scaled by the sky-view factor; L2A is not topographically corrected), blended
with cloud reflectance by cloud opacity, plus sensor noise. SWIR bands (native 20 m) are
averaged over 2 x 2 pixels, as in a 10 m resampled L2A product.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .surface import DEBRIS, FIRN, FOREFIELD, FOREST, ICE, MEADOW, ROCK, SNOW, WATER

BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")
SWIR = (4, 5)

# surface reflectance (0..1) per class, bands B2 B3 B4 B8 B11 B12
SPECTRA = np.zeros((9, 6), np.float32)
SPECTRA[ROCK] = [0.100, 0.125, 0.150, 0.205, 0.260, 0.215]
SPECTRA[MEADOW] = [0.040, 0.075, 0.055, 0.330, 0.210, 0.110]
SPECTRA[FOREST] = [0.025, 0.045, 0.028, 0.250, 0.120, 0.050]
SPECTRA[WATER] = [0.075, 0.095, 0.065, 0.025, 0.008, 0.005]
SPECTRA[ICE] = [0.520, 0.480, 0.420, 0.300, 0.035, 0.025]
SPECTRA[FIRN] = [0.800, 0.780, 0.750, 0.640, 0.090, 0.065]
SPECTRA[DEBRIS] = [0.085, 0.105, 0.125, 0.180, 0.220, 0.190]
SPECTRA[SNOW] = [0.760, 0.740, 0.710, 0.600, 0.110, 0.080]
SPECTRA[FOREFIELD] = [0.135, 0.155, 0.175, 0.225, 0.280, 0.235]
# relative strength of the albedo texture per class
TEXTURE = np.array([0.30, 0.20, 0.15, 0.15, 0.20, 0.08, 0.25, 0.08, 0.20], np.float32)
CLOUD = np.array([0.58, 0.57, 0.57, 0.60, 0.45, 0.32], np.float32)
# share of direct sunlight in the irradiance (the rest is diffuse sky light)
DIRECT = np.array([0.70, 0.77, 0.82, 0.87, 0.91, 0.92], np.float32)


@dataclass
class OpticalInputs:
    """2-D fields on the scene grid, read window by window."""

    direct: np.ndarray      # float32: max(cos i, 0) / cos(zenith), 0 in cast shadow
    skyview: np.ndarray     # float32: sky-view factor (0..1)
    albedo: np.ndarray      # float32: unit-variance smooth texture
    grain: np.ndarray       # float32: unit-variance fine texture
    ice_dirt: np.ndarray    # float32: 0 (clean) .. 1 (dirty ice, low on the glacier)


def render_window(cls: np.ndarray, inp: OpticalInputs, sl: tuple[slice, slice], cloud_a: np.ndarray,
                  shadow_a: np.ndarray, cloud_tex: np.ndarray, gains: np.ndarray, noise_sd: float,
                  rng: np.random.Generator) -> np.ndarray:
    """(6, h, w) float32 reflectance for the window `sl` of the scene grid."""
    c = cls[sl]
    direct = inp.direct[sl] * (1.0 - 0.85 * shadow_a)
    sky = inp.skyview[sl]
    tex = 1.0 + TEXTURE[c] * (0.6 * inp.albedo[sl] + 0.4 * inp.grain[sl])
    tex = np.clip(tex, 0.3, 1.8)
    dirt = inp.ice_dirt[sl] * (c == ICE)
    out = np.empty((6, *c.shape), np.float32)
    for b in range(6):
        rho = SPECTRA[c, b] * tex
        if b < 4:  # dirty ice is darker in the visible / NIR
            rho = rho * (1.0 - 0.45 * dirt)
        obs = rho * (DIRECT[b] * direct + (1.0 - DIRECT[b]) * sky)
        obs = obs * (1.0 - cloud_a) + cloud_a * CLOUD[b] * cloud_tex
        out[b] = obs * gains[b]
    for b in SWIR:
        out[b] = _block2(out[b])
    if noise_sd > 0:
        out += rng.normal(0.0, noise_sd, out.shape).astype(np.float32)
    np.clip(out, 0.0, 1.6, out=out)
    return out


def _block2(a: np.ndarray) -> np.ndarray:
    """2 x 2 block mean, repeated back to full size (edge blocks partial)."""
    h, w = a.shape
    hp, wp = h + h % 2, w + w % 2
    p = np.pad(a, ((0, hp - h), (0, wp - w)), mode="edge")
    m = p.reshape(hp // 2, 2, wp // 2, 2).mean(axis=(1, 3))
    return np.repeat(np.repeat(m, 2, 0), 2, 1)[:h, :w]


def sky_view(slope: np.ndarray) -> np.ndarray:
    return ((1.0 + np.cos(slope)) / 2.0).astype(np.float32)


def direct_factor(cos_i: np.ndarray, shadow: np.ndarray, sun_elevation_deg: float) -> np.ndarray:
    cz = math.cos(math.radians(90.0 - sun_elevation_deg))
    return (np.clip(cos_i, 0.0, None) / cz * (~shadow)).astype(np.float32)
