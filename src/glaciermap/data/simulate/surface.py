"""Surface classes per pixel and epoch (written to truth/surface_<epoch>.tif)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from . import noise
from .terrain import SimGrid, block_mean, fill_depressions, routing_factor, upsample

# class codes (truth/surface_<epoch>.tif band "class")
ROCK, MEADOW, FOREST, WATER, ICE, FIRN, DEBRIS, SNOW, FOREFIELD = range(9)
CLASS_NAMES = {ROCK: "rock", MEADOW: "meadow", FOREST: "forest", WATER: "water", ICE: "clean_ice",
               FIRN: "snow_firn", DEBRIS: "debris", SNOW: "seasonal_snow", FOREFIELD: "forefield"}
GLACIER_CLASSES = (ICE, FIRN, DEBRIS)
N_CLASSES = 9


def make_lakes(z: np.ndarray, grid: SimGrid, min_depth_m: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Lakes in closed depressions (>= min_depth deep on the routing grid): (mask, z with flat water)."""
    f = routing_factor(grid)
    zc = block_mean(z, f).astype(np.float64)
    depth_c = fill_depressions(zc, eps=0.0) - zc
    lake_c = depth_c > min_depth_m
    lab, n = ndimage.label(lake_c)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        lake_c = np.isin(lab, np.flatnonzero(sizes >= 4) + 1)
    if not lake_c.any():
        return np.zeros(z.shape, bool), z
    level_c = np.where(lake_c, zc + depth_c, np.nan)
    # water level per lake = its spill level; spread to the fine grid
    level_f = upsample(np.where(lake_c, level_c, 0.0).astype(np.float32), f, z.shape, order=0)
    memb = upsample(ndimage.gaussian_filter(lake_c.astype(np.float32), 0.6), f, z.shape, order=1)
    lake = (memb > 0.5) & (z < level_f) & (level_f > 0)
    lake = ndimage.binary_opening(lake, iterations=1)
    z2 = np.where(lake, level_f, z).astype(np.float32)
    return lake, z2


@dataclass
class StaticSurface:
    """Epoch-independent fields on the scene grid."""

    lake: np.ndarray          # bool
    veg_limit: np.ndarray     # m: upper limit of meadows
    treeline: np.ndarray      # m
    snow_noise: np.ndarray    # unit-variance smooth field (snow patches / snowline)
    debris_zone: np.ndarray   # bool: where debris covers ice (of debris glaciers, base extent)
    base_glacier: np.ndarray  # bool: union of base outlines


def static_surface(z: np.ndarray, slope: np.ndarray, grid: SimGrid, lake: np.ndarray,
                   base_labels: np.ndarray, debris_ids: list[int], ela_m: float,
                   rng: np.random.Generator) -> StaticSurface:
    shape = z.shape
    veg_limit = 2450.0 + 120.0 * noise.gaussian_field(rng, shape, grid.res, 400.0)
    treeline = 2050.0 + 70.0 * noise.gaussian_field(rng, shape, grid.res, 600.0)
    snow_noise = noise.gaussian_field(rng, shape, grid.res, 150.0)
    debris = np.zeros(shape, bool)
    if debris_ids:
        wob = noise.gaussian_field(rng, shape, grid.res, 80.0)
        objs = ndimage.find_objects(base_labels)
        for gid in debris_ids:
            sl = objs[gid - 1]
            if sl is None:
                continue
            m = base_labels[sl] == gid
            zz = z[sl][m]
            zmin, zmax = float(zz.min()), float(zz.max())
            zhi = min(ela_m, zmax)
            frac = float(rng.uniform(0.35, 0.7))
            lim = zmin + frac * (zhi - zmin)
            zone = m & (z[sl] + 0.08 * (zhi - zmin) * wob[sl] < lim)
            debris[sl] |= zone
    return StaticSurface(lake, veg_limit, treeline, snow_noise, debris, base_labels > 0)


def epoch_classes(z: np.ndarray, slope: np.ndarray, aspect: np.ndarray, st: StaticSurface,
                  glacier: np.ndarray, snowline_m: float) -> np.ndarray:
    """uint8 class map for one epoch. `glacier`: bool, pixels inside a glacier outline then."""
    cls = np.full(z.shape, ROCK, np.uint8)
    gentle = slope < math.radians(33.0)
    cls[(z < st.veg_limit) & gentle] = MEADOW
    cls[(z < st.treeline) & (slope < math.radians(40.0))] = FOREST
    # seasonal snow patches: high, not too steep, more on north faces
    facing_n = np.cos(aspect) * np.clip(np.sin(slope) / 0.5, 0, 1)
    snow_line_off = snowline_m + 320.0 - 120.0 * facing_n - 150.0 * st.snow_noise
    cls[(z > snow_line_off) & (slope < math.radians(35.0))] = SNOW
    cls[st.base_glacier & ~glacier] = FOREFIELD
    cls[st.lake & ~glacier] = WATER
    # glacier surface: firn/snow above the local snowline, bare ice below, debris on debris zones
    local_sl = snowline_m - 60.0 * facing_n + 30.0 * st.snow_noise
    g_firn = glacier & (z >= local_sl)
    cls[glacier] = ICE
    cls[glacier & st.debris_zone] = DEBRIS
    cls[g_firn] = FIRN
    return cls
