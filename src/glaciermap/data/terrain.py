"""DEM-derived features."""

from __future__ import annotations

import numpy as np


def slope_deg(dem: np.ndarray, res: float) -> np.ndarray:
    """Slope in degrees (central differences; edges one-sided)."""
    gy, gx = np.gradient(dem.astype(np.float64), res)
    return np.degrees(np.arctan(np.hypot(gx, gy))).astype(np.float32)


def hillshade(dem: np.ndarray, res: float, azimuth_deg: float = 315.0, altitude_deg: float = 45.0) -> np.ndarray:
    """Lambertian hillshade in [0, 1] for a sun at the given azimuth/altitude (rows run north->south)."""
    gy, gx = np.gradient(dem.astype(np.float64), res)
    # surface normal with x east, y north (row index increases southwards, so flip gy)
    nx, ny, nz = -gx, gy, np.ones_like(dem, dtype=np.float64)
    norm = np.sqrt(nx**2 + ny**2 + nz**2)
    az, alt = np.radians(azimuth_deg), np.radians(altitude_deg)
    sx, sy, sz = np.sin(az) * np.cos(alt), np.cos(az) * np.cos(alt), np.sin(alt)
    return np.clip((nx * sx + ny * sy + nz * sz) / norm, 0, 1).astype(np.float32)
