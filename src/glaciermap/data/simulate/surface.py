"""Surface classes per pixel and epoch (written to truth/surface_<epoch>.tif).

Forefield is the ground a glacier has left: the Little Ice Age forefield (:func:`lia_forefield`),
bare already in the first epoch as in every real Alpine scene, and, from epoch to epoch, the base
outline the glacier retreats from.
"""

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
    forefield_extent: np.ndarray  # bool: base outlines + LIA forefield: forefield wherever no ice


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
    return StaticSurface(lake, veg_limit, treeline, snow_noise, debris,
                         (base_labels > 0) | lia_forefield(z, slope, base_labels, grid.res))


# Little Ice Age reach below / beside a glacier's base outline: 200 m + 400 m per sqrt(km2), <= 1.2 km
LIA_REACH_M = (200.0, 400.0, 1200.0)
LIA_LOWER_PART = 0.5      # only beside the lower half of the glacier's elevation range
LIA_ABOVE_ICE_M = 50.0    # at most this much above the nearest ice (the tongue has thinned since)
LIA_MAX_SLOPE_DEG = 35.0  # steeper walls shed their moraine


def lia_forefield(z: np.ndarray, slope: np.ndarray, base_labels: np.ndarray, res_m: float) -> np.ndarray:
    """bool: the forefield each glacier left between its Little Ice Age maximum (~1850) and the
    first epoch (its base outline). Alpine glaciers have lost about half their area since (Zemp et
    al. 2008), so moraine-covered, unvegetated ground lies below and beside every tongue in the
    inventory year; a model trained without it has never seen the surface that later retreat
    exposes. Per glacier g (area A_g, elevations zmin_g..zmax_g), a pixel outside every outline is
    forefield if

        distance to g        <= min(200 + 400 * sqrt(A_g / km2), 1200) m
        z                    <  zmin_g + 0.5 * (zmax_g - zmin_g)          (beside the lower half)
        z                    <= z(nearest pixel of g) + 50 m             (down-valley, not up a wall)
        slope                <  35 deg                                    (5 x 5 px mean)

    then closed (2 px) and opened (1 px) into patches of moraine.

    Deterministic (no random draws), computed per glacier in its bounding box grown by the reach,
    so memory scales with the largest glacier, not the scene.
    """
    out = np.zeros(z.shape, bool)
    free = base_labels == 0
    area_km2 = np.bincount(base_labels.ravel()) * (res_m * res_m / 1e6)
    steep = ndimage.uniform_filter(slope, 5) >= math.radians(LIA_MAX_SLOPE_DEG)
    for gid, sl in enumerate(ndimage.find_objects(base_labels), start=1):
        if sl is None:
            continue
        a_km2 = float(area_km2[gid])
        reach_m = min(LIA_REACH_M[0] + LIA_REACH_M[1] * math.sqrt(a_km2), LIA_REACH_M[2])
        r = int(math.ceil(reach_m / res_m))
        win = tuple(slice(max(s.start - r, 0), min(s.stop + r, n)) for s, n in zip(sl, z.shape))
        ice = base_labels[win] == gid
        zz = z[win]
        z_ice = zz[ice]
        zmin, zmax = float(z_ice.min()), float(z_ice.max())
        dist, (ii, jj) = ndimage.distance_transform_edt(~ice, sampling=res_m, return_indices=True)
        out[win] |= (free[win] & ~steep[win] & (dist <= reach_m)
                     & (zz < zmin + LIA_LOWER_PART * (zmax - zmin))
                     & (zz <= zz[ii, jj] + LIA_ABOVE_ICE_M))
    # one sheet of moraine, not a speckle of pixels that passed the tests
    out = ndimage.binary_opening(ndimage.binary_closing(out, iterations=2), iterations=1)
    return out & free


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
    cls[st.forefield_extent & ~glacier] = FOREFIELD
    cls[st.lake & ~glacier] = WATER
    # glacier surface: firn/snow above the local snowline, bare ice below, debris on debris zones
    local_sl = snowline_m - 60.0 * facing_n + 30.0 * st.snow_noise
    g_firn = glacier & (z >= local_sl)
    cls[glacier] = ICE
    cls[glacier & st.debris_zone] = DEBRIS
    cls[g_firn] = FIRN
    return cls
