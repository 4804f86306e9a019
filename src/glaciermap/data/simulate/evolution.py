"""Glacier change through time: per-glacier retreat rates and the outline at every epoch.

Every glacier starts at its base outline at the first epoch and loses area at a constant
relative rate (% of base area per year) that is faster for small glaciers
(rate ~ -c * A^-0.3 * lognormal noise, with c calibrated so that the regional rate equals the
configured one); a few tiny glaciers vanish by the recent epoch. A glacier shrinks by losing its
lowest parts: at each epoch the terminus elevation is raised until the target area is reached
(pixels of the base outline above that elevation are kept), so outlines are nested in time.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import numpy as np
import shapely
from rasterio import features
from rasterio.transform import Affine
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import shape

from glaciermap.data.dates import decimal_year

from .glaciers import _polygonal
from .terrain import SimGrid


@dataclass(frozen=True)
class Epoch:
    name: str
    date: dt.date
    inventory: bool

    @property
    def year(self) -> float:
        return decimal_year(self.date)


def make_epochs(inventory_years: list[int], recent_year: int, rng: np.random.Generator) -> list[Epoch]:
    """One late-summer acquisition (10 Aug - 10 Sep) per inventory year and the recent year."""
    out = []
    for y in [*inventory_years, recent_year]:
        day = dt.date(y, 8, 10) + dt.timedelta(days=int(rng.integers(0, 32)))
        out.append(Epoch(str(y), day, y in inventory_years))
    return out


def target_rates(areas_km2: np.ndarray, t_base: float, t_inv: np.ndarray, t_recent: float,
                 regional_pct: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-glacier rates (% of base area / yr) and a vanish flag, calibrated to `regional_pct`.

    Regional rate := 100 * sum(A_recent - A_inv) / sum(A_inv * (t_recent - t_inv)).
    """
    n = len(areas_km2)
    span = t_recent - t_base
    shape_ = np.maximum(areas_km2, 1e-3) ** -0.3 * np.exp(0.25 * rng.standard_normal(n))
    vanish = np.zeros(n, bool)
    tiny = np.flatnonzero(areas_km2 < 0.05)
    if regional_pct < 0 and tiny.size:
        k = min(tiny.size, max(1, int(round(0.05 * n))))
        vanish[rng.choice(tiny, k, replace=False)] = True
    full = -100.0 / span  # the rate that makes a glacier vanish exactly at t_recent

    def rates(c: float) -> np.ndarray:
        r = np.maximum(-c * shape_, 0.9 * full)
        return np.where(vanish, full, r)

    def regional(c: float) -> float:
        r = rates(c)
        a_inv = areas_km2 * (1 + r * (t_inv - t_base) / 100)
        a_rec = areas_km2 * np.maximum(0.0, 1 + r * span / 100)
        return 100 * float((a_rec - a_inv).sum() / (a_inv * (t_recent - t_inv)).sum())

    if regional_pct >= 0 or n == 0:
        return np.zeros(n), np.zeros(n, bool)
    lo, hi = 0.0, 50.0
    if regional(lo) < regional_pct:  # the vanishing glaciers alone exceed the target
        return rates(0.0), vanish
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if regional(mid) > regional_pct:
            lo = mid
        else:
            hi = mid
    return rates(0.5 * (lo + hi)), vanish


def evolve(geoms: list, z: np.ndarray, grid: SimGrid, epochs: list[Epoch], inv_epoch: list[str],
           rates: np.ndarray, vanish: np.ndarray) -> dict[str, list]:
    """Outline of every glacier at every epoch (None once vanished); epochs[0] is the base."""
    t0 = epochs[0].year
    zs = ndimage.gaussian_filter(z, 2.0)
    out: dict[str, list] = {e.name: [] for e in epochs}
    for gi, g in enumerate(geoms):
        win = _window(g, grid)
        if win is None:
            for e in epochs:
                out[e.name].append(None)
            continue
        tr = Affine(grid.res, 0.0, grid.left + win.col_off * grid.res,
                    0.0, -grid.res, grid.top - win.row_off * grid.res)
        shp = (int(win.height), int(win.width))
        mask = features.rasterize([(g, 1)], out_shape=shp, transform=tr, fill=0, dtype="uint8").astype(bool)
        zwin = zs[int(win.row_off):int(win.row_off) + shp[0], int(win.col_off):int(win.col_off) + shp[1]]
        zvals = np.sort(zwin[mask])[::-1]
        prev = g
        for e in epochs:
            frac = 1.0 + rates[gi] * (e.year - t0) / 100.0
            if e is epochs[0] or (frac >= 1.0):
                out[e.name].append(g)
                continue
            if prev is None or frac <= 0.0 or (vanish[gi] and e is epochs[-1]):
                out[e.name].append(None)
                prev = None
                continue
            k = int(round(frac * zvals.size))
            if k < 1:
                out[e.name].append(None)
                prev = None
                continue
            thr = zvals[k - 1]
            keep = mask & (zwin >= thr)
            keep = _drop_crumbs(keep, max(20, int(0.02 * keep.sum())))
            parts = [shape(s) for s, v in features.shapes(keep.astype(np.uint8), mask=keep, transform=tr,
                                                           connectivity=4)]
            if not parts:
                out[e.name].append(None)
                prev = None
                continue
            geo = _polygonal(shapely.intersection(shapely.union_all(parts), prev))
            if geo is None or geo.is_empty:
                out[e.name].append(None)
                prev = None
                continue
            out[e.name].append(geo)
            prev = geo
    return out


def _drop_crumbs(mask: np.ndarray, min_px: int) -> np.ndarray:
    """Keep the largest 4-connected piece and any other piece of at least `min_px` pixels."""
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    ok = np.flatnonzero((sizes >= min_px) | (sizes == sizes.max())) + 1
    return np.isin(lab, ok)


def _window(g, grid: SimGrid) -> Window | None:
    minx, miny, maxx, maxy = g.bounds
    c0 = max(int(math.floor((minx - grid.left) / grid.res)) - 1, 0)
    c1 = min(int(math.ceil((maxx - grid.left) / grid.res)) + 1, grid.width)
    r0 = max(int(math.floor((grid.top - maxy) / grid.res)) - 1, 0)
    r1 = min(int(math.ceil((grid.top - miny) / grid.res)) + 1, grid.height)
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)
