"""The target grid every raster is read onto (light: no GDAL vector stack, so cubes load without it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.crs import CRS


@dataclass(frozen=True)
class Grid:
    """A regular target grid: CRS, affine transform and shape."""

    crs: CRS
    transform: rasterio.Affine
    width: int
    height: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        t = self.transform
        return (t.c, t.f + t.e * self.height, t.c + t.a * self.width, t.f)

    @property
    def res(self) -> float:
        return self.transform.a

    def xy_coords(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (x ascending, y descending)."""
        t = self.transform
        xs = t.c + t.a * (np.arange(self.width) + 0.5)
        ys = t.f + t.e * (np.arange(self.height) + 0.5)
        return xs, ys
