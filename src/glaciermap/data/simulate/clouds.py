"""Clouds and their shadows: smooth fractal noise thresholded to a cloud fraction.

Cloud opacity a = 1 - exp(-k (n - t)) where the noise n exceeds the threshold t (the
(1 - fraction) quantile over the scene); the cloud mask is a > 0.2 (thinner edges stay as
unflagged haze, as in real masks). The shadow is the opacity field displaced away from the sun
by cloud height / tan(sun elevation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import noise

MASK_OPACITY = 0.2
CLEAR, CLOUD, SHADOW, NODATA = 0, 1, 2, 255


@dataclass
class CloudFields:
    opacity: np.ndarray  # float32 0..1 on the scene grid
    shadow: np.ndarray   # float32 0..1: opacity of the cloud shading each pixel
    texture: np.ndarray  # float32 ~1: brightness variation of cloud tops
    fraction: float      # requested cloud fraction of this scene
    height_m: float

    def mask(self, sl: tuple[slice, slice]) -> np.ndarray:
        """uint8 cloud mask for a window: 0 clear, 1 cloud, 2 cloud shadow."""
        a, s = self.opacity[sl], self.shadow[sl]
        out = np.zeros(a.shape, np.uint8)
        out[s > MASK_OPACITY] = SHADOW
        out[a > MASK_OPACITY] = CLOUD
        return out


def make_clouds(shape: tuple[int, int], res: float, fraction: float, sun_azimuth_deg: float,
                sun_elevation_deg: float, rng: np.random.Generator) -> CloudFields:
    h, w = shape
    height = float(rng.uniform(1200.0, 2800.0))
    if fraction <= 0:
        z = np.zeros(shape, np.float32)
        return CloudFields(z, z, np.ones(shape, np.float32), 0.0, height)
    d_px = height / math.tan(math.radians(sun_elevation_deg)) / res
    away = math.radians(sun_azimuth_deg + 180.0)
    dr, dc = -d_px * math.cos(away), d_px * math.sin(away)  # shadow offset (rows down, cols right)
    m = int(math.ceil(d_px)) + 2
    ext = (h + 2 * m, w + 2 * m)
    n = noise.fbm(rng, ext, res, largest_m=8000.0, smallest_m=3 * res, beta=3.2)
    n += 0.25 * noise.fbm(rng, ext, res, largest_m=600.0, smallest_m=2 * res, beta=2.0)
    core = n[m:m + h, m:m + w]
    k = 4.0 / max(float(core.std()), 1e-6)
    # opacity reaches the mask level exactly at the (1 - fraction) quantile
    thr = float(np.quantile(core, 1.0 - fraction)) - math.log(1.0 / (1.0 - MASK_OPACITY)) / k
    opa = np.where(n > thr, 1.0 - np.exp(-k * (n - thr)), 0.0).astype(np.float32)
    ir, ic = int(round(dr)), int(round(dc))
    opacity = opa[m:m + h, m:m + w]
    shadow = opa[m - ir:m - ir + h, m - ic:m - ic + w]
    tex = (0.9 + 0.1 * noise.gaussian_field(rng, shape, res, 200.0)).astype(np.float32)
    return CloudFields(opacity.copy(), shadow.copy(), tex, fraction, height)
