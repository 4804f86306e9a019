"""Terrain: the simulation grid, a procedural alpine DEM (or a real one), and DEM geometry.

Conventions: arrays are (rows, cols) with rows running north -> south; x = east, y = north;
azimuths are degrees clockwise from north; slope/aspect from central differences.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import reproject, transform as warp_transform
from scipy import ndimage
from scipy.interpolate import PchipInterpolator

from glaciermap.data.dem import check_usable, find_voids
from glaciermap.errors import InputDataError

from . import noise

MIN_ELEV_M, MAX_ELEV_M = 1500.0, 3800.0


# ------------------------------------------------------------------------------------------ grids
@dataclass(frozen=True)
class SimGrid:
    """A north-up regular grid: CRS, top-left corner, pixel size and shape."""

    crs: CRS
    left: float
    top: float
    res: float
    width: int
    height: int

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0.0, self.left, 0.0, -self.res, self.top)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.left, self.top - self.res * self.height, self.left + self.res * self.width, self.top)

    @property
    def pixel_area(self) -> float:
        return self.res * self.res

    def padded(self, px: int) -> SimGrid:
        return SimGrid(self.crs, self.left - px * self.res, self.top + px * self.res, self.res,
                       self.width + 2 * px, self.height + 2 * px)

    def with_res(self, res: float, margin_px: int = 0) -> SimGrid:
        """Grid with pixel size `res` covering this one (same top-left corner), plus a margin."""
        width = math.ceil(self.width * self.res / res - 1e-9) + 2 * margin_px
        height = math.ceil(self.height * self.res / res - 1e-9) + 2 * margin_px
        return SimGrid(self.crs, self.left - margin_px * res, self.top + margin_px * res, res, width, height)


def region_grid_from_center(crs: CRS, lon: float, lat: float, width_m: float, height_m: float,
                            res: float) -> SimGrid:
    """Grid of about width x height metres centred on (lon, lat), corner snapped to whole pixels."""
    xs, ys = warp_transform(CRS.from_epsg(4326), crs, [lon], [lat])
    width, height = max(int(round(width_m / res)), 1), max(int(round(height_m / res)), 1)
    left = round((xs[0] - width_m / 2) / res) * res
    top = round((ys[0] + height_m / 2) / res) * res
    return SimGrid(crs, float(left), float(top), res, width, height)


def grid_from_bounds(crs: CRS, left: float, bottom: float, right: float, top: float,
                     res: float) -> SimGrid:
    left_s = math.ceil(left / res) * res
    top_s = math.floor(top / res) * res
    width = int(math.floor((right - left_s) / res + 1e-9))
    height = int(math.floor((top_s - bottom) / res + 1e-9))
    return SimGrid(crs, left_s, top_s, res, max(width, 0), max(height, 0))


def routing_factor(grid: SimGrid) -> int:
    """Fine pixels per routing cell: 40 m cells, coarser on huge grids (<= ~1.5 million cells)."""
    cell = max(40.0, math.sqrt(grid.width * grid.height * grid.res ** 2 / 1.5e6))
    return max(1, int(round(cell / grid.res)))


# -------------------------------------------------------------------------------- DEM geometry
def gradient(z: np.ndarray, res: float) -> tuple[np.ndarray, np.ndarray]:
    """(dz/dx east, dz/dy north) in m/m."""
    grow, gcol = np.gradient(z.astype(np.float32), res)
    return gcol, -grow


def slope_aspect(z: np.ndarray, res: float) -> tuple[np.ndarray, np.ndarray]:
    """Slope and aspect in radians (aspect: direction the slope faces, clockwise from north)."""
    gx, gy = gradient(z, res)
    slope = np.arctan(np.hypot(gx, gy)).astype(np.float32)
    aspect = np.mod(np.arctan2(-gx, -gy), 2 * np.pi).astype(np.float32)
    return slope, aspect


def cos_incidence(slope: np.ndarray, aspect: np.ndarray, azimuth_deg: float,
                  elevation_deg: float) -> np.ndarray:
    """Cosine of the angle between the surface normal and a direction (sun or radar)."""
    zen = math.radians(90.0 - elevation_deg)
    az = math.radians(azimuth_deg)
    return (math.cos(zen) * np.cos(slope)
            + math.sin(zen) * np.sin(slope) * np.cos(az - aspect)).astype(np.float32)


def cast_shadow(z: np.ndarray, res: float, azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Cast-shadow mask (True in shadow) for a light source at azimuth / elevation.

    The DEM is rotated so that the light comes from the left; a pixel is in shadow when some
    pixel between it and the light rises above the ray towards the light, i.e. when the running
    maximum of z + s * tan(elevation) (s = distance away from the light) exceeds its own value.
    Self-shadowed slopes (facing away) are included.
    """
    fill = float(np.nanmin(z)) - 1e5
    zz = np.where(np.isfinite(z), z, fill).astype(np.float32)
    # rotate so the direction *towards* the light points to -col (west): a light at azimuth a
    # must end at azimuth 270, i.e. rotate the map by (a - 270) degrees clockwise
    angle = azimuth_deg - 270.0
    rot = ndimage.rotate(zz, angle, reshape=True, order=1, mode="nearest", prefilter=False)
    cols = np.arange(rot.shape[1], dtype=np.float32) * (res * math.tan(math.radians(elevation_deg)))
    g = rot + cols[None, :]
    run = np.maximum.accumulate(g, axis=1)
    prev = np.empty_like(run)
    prev[:, 0] = -np.inf
    prev[:, 1:] = run[:, :-1]
    shadow = (prev > g + 0.5).astype(np.float32)
    back = ndimage.rotate(shadow, -angle, reshape=True, order=1, mode="constant", cval=0.0, prefilter=False)
    r0 = (back.shape[0] - z.shape[0]) // 2
    c0 = (back.shape[1] - z.shape[1]) // 2
    return back[r0:r0 + z.shape[0], c0:c0 + z.shape[1]] > 0.5


# ------------------------------------------------------------------------------ hydrology (D8)
_OFFS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def fill_depressions(z: np.ndarray, eps: float = 1e-3,
                     rng: np.random.Generator | None = None) -> np.ndarray:
    """Priority-flood fill from the grid edge with a small gradient on flats."""
    edge = np.zeros(z.shape, bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    return priority_flood(z, edge, eps, rng)


def d8_receivers(z: np.ndarray, cell: float, rng: np.random.Generator | None = None,
                 jitter: float = 0.0) -> np.ndarray:
    """Flat index of each cell's steepest-descent neighbour; -1 where no neighbour is lower.

    With `rng`, each descent is scaled by a random factor in [1, 1 + jitter] before choosing, which
    breaks the straight eight-direction artefacts of D8 without ever routing uphill.
    """
    h, w = z.shape
    zp = np.pad(z.astype(np.float64), 1, mode="constant", constant_values=np.inf)
    best = np.zeros((h, w))
    rec = np.full((h, w), -1, np.int64)
    rows, cols = np.mgrid[0:h, 0:w]
    for dr, dc in _OFFS:
        dist = cell * math.hypot(dr, dc)
        drop = (z - zp[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]) / dist
        if rng is not None:
            drop = drop * (1.0 + jitter * rng.random((h, w)))
        better = drop > best
        best = np.where(better, drop, best)
        rec = np.where(better, (rows + dr) * w + (cols + dc), rec)
    return rec.ravel()


def flow_accumulation(z: np.ndarray, rec: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Upstream sum of `weight` (cells if None) along D8 receivers, in descending-z order."""
    order = np.argsort(-z.ravel(), kind="stable")
    acc = (np.ones(z.size) if weight is None else weight.astype(np.float64).ravel()).tolist()
    recl = rec.tolist()
    for i in order.tolist():
        r = recl[i]
        if r >= 0:
            acc[r] += acc[i]
    return np.asarray(acc).reshape(z.shape)


# --------------------------------------------------------------------------- resampling helpers
def upsample(arr: np.ndarray, factor: int, shape: tuple[int, int], order: int = 3) -> np.ndarray:
    """Resample a coarse grid (cells of `factor` fine pixels, same corner) onto the fine grid."""
    if factor == 1:
        return arr[: shape[0], : shape[1]].astype(np.float32)
    out = ndimage.zoom(arr.astype(np.float32), factor, order=order, mode="nearest", grid_mode=True,
                       prefilter=order > 1)
    out = out[: shape[0], : shape[1]]
    if out.shape != shape:  # coarse grid covers the fine one, so this only pads by edge values
        out = np.pad(out, ((0, shape[0] - out.shape[0]), (0, shape[1] - out.shape[1])), mode="edge")
    return out


def block_mean(arr: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks (edge blocks partial)."""
    if factor == 1:
        return arr.astype(np.float32)
    h, w = arr.shape
    hc, wc = math.ceil(h / factor), math.ceil(w / factor)
    pad = np.pad(arr.astype(np.float64), ((0, hc * factor - h), (0, wc * factor - w)), mode="edge")
    return pad.reshape(hc, factor, wc, factor).mean(axis=(1, 3)).astype(np.float32)


# ------------------------------------------------------------------------ procedural terrain
@dataclass
class Terrain:
    """Elevation on the padded fine grid (the scene grid plus `pad` pixels on every side)."""

    grid: SimGrid
    pad: int
    z: np.ndarray  # float32 metres

    @property
    def scene_slice(self) -> tuple[slice, slice]:
        p = self.pad
        return slice(p, self.grid.height - p), slice(p, self.grid.width - p)


def priority_flood(z: np.ndarray, seeds: np.ndarray, eps: float,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Raise `z` so that every cell drains (strictly downhill, step >= eps) to one of `seeds`.

    With `rng`, the step on filled flats is random (eps * U(0.2, 1.8)), so the flood front, and
    the drainage it leaves across flats, grows irregularly instead of in straight lines.
    """
    h, w = z.shape
    steps = (eps * (0.2 + 1.6 * rng.random(h * w))).tolist() if rng is not None else None
    zf = z.astype(np.float64).ravel().tolist()
    closed = bytearray(h * w)
    heap = []
    for i in np.flatnonzero(seeds.ravel()).tolist():
        closed[i] = 1
        heap.append((zf[i], i))
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        zi, i = pop(heap)
        r, c = divmod(i, w)
        for dr, dc in _OFFS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w:
                j = rr * w + cc
                if not closed[j]:
                    closed[j] = 1
                    e = steps[j] if steps is not None else eps
                    if zf[j] <= zi + e:
                        zf[j] = zi + e
                    push(heap, (zf[j], j))
    return np.asarray(zf).reshape(h, w)


def _steady_state(order: list[int], rec: list[int], slope: list[float], dist: list[float],
                  base: list[float]) -> list[float]:
    """Integrate slopes upstream from the outlets: z[i] = z[rec[i]] + slope[i] * dist[i]."""
    z = list(base)
    for i in order:
        r = rec[i]
        if r >= 0:
            z[i] = z[r] + slope[i] * dist[i]
    return z


def procedural_terrain(grid: SimGrid, pad: int, rng: np.random.Generator,
                       p75_m: float = 2900.0) -> Terrain:
    """Alpine terrain from a steady-state stream-power landscape plus small-scale roughness.

    On a coarse grid (>= 80 m) of a domain at least 12 km across around the region, drainage is
    routed (D8, randomised) to two river outlets on the border; channel slopes follow the
    steady-state stream-power law S = k * uplift / sqrt(A) capped by a 40 degree threshold
    hillslope, and elevations are integrated upstream from the outlets (a few iterations, since
    drainage depends on elevation). Elevations are remapped (monotone, smooth) onto an alpine
    hypsometric curve with ~25% of the region above `p75_m` and peaks below 3800 m, then the
    surface is upsampled (cubic) to the fine grid and gets ridged roughness
    (stronger on steep slopes).
    """
    cell = max(80.0, math.sqrt(grid.width * grid.height * grid.res ** 2 / 3e5))
    f = max(1, int(round(cell / grid.res)))
    cell = f * grid.res
    # domain: whole coarse cells, >= 12 km, centred on the padded grid, aligned to its pixels
    wc = max(math.ceil(grid.width / f) + 4, math.ceil(12000.0 / cell))
    hc = max(math.ceil(grid.height / f) + 4, math.ceil(12000.0 / cell))
    ox = (wc - math.ceil(grid.width / f)) // 2  # coarse cells left of the grid
    oy = (hc - math.ceil(grid.height / f)) // 2
    shape = (hc, wc)
    env = noise.gaussian_field(rng, shape, cell, 10000.0)
    z0 = 500.0 * env + 300.0 * noise.fbm(rng, shape, cell, 6000.0, 200.0, 2.5)
    uplift = np.exp(0.3 * env + 0.2 * noise.gaussian_field(rng, shape, cell, 3000.0))
    # outlets: the lowest border cells, far apart
    edge = np.zeros(shape, bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    er, ec = np.nonzero(edge)
    min_sep = 0.4 * min(hc, wc)
    chosen: list[int] = []
    for k in np.argsort(z0[er, ec], kind="stable").tolist():
        if all(math.hypot(er[k] - er[j], ec[k] - ec[j]) >= min_sep for j in chosen):
            chosen.append(k)
        if len(chosen) == 3:
            break
    outlets = np.zeros(shape, bool)
    outlets[er[chosen], ec[chosen]] = True
    # initial drainage from a rough surface without km-scale basins (a large flooded basin leaves
    # straight divides where the flood fronts of two outlets meet)
    rough0 = noise.fbm(rng, shape, cell, 4000.0, 2 * cell, 2.2)
    z = priority_flood(400.0 * rough0, outlets, eps=0.05, rng=rng)
    tan_hill = math.tan(math.radians(36.0))
    base_level = MIN_ELEV_M + 150.0 + 200.0 * rng.random()
    rows, cols = np.divmod(np.arange(hc * wc), wc)
    base = np.full(hc * wc, base_level).tolist()
    for _ in range(5):
        rec = d8_receivers(z, cell, rng, jitter=1.0)
        rec[outlets.ravel()] = -1
        area_km2 = flow_accumulation(z, rec) * cell * cell / 1e6
        slope = np.minimum(0.3 * uplift / np.sqrt(area_km2), tan_hill)
        dist = np.where(rec >= 0, cell * np.hypot(rec // wc - rows, rec % wc - cols), cell)
        order = np.argsort(z.ravel(), kind="stable").tolist()
        z = np.asarray(_steady_state(order, rec.tolist(), slope.ravel().tolist(), dist.tolist(),
                                     base)).reshape(shape)
    # hypsometry: map the region's elevation quantiles smoothly (monotone) onto an alpine curve
    # with ~25% of the area above p75_m; keeps ridges and valleys where they are
    region = z[oy:oy + math.ceil(grid.height / f), ox:ox + math.ceil(grid.width / f)]
    levels = np.array([0.0, 5.0, 25.0, 50.0, 75.0, 95.0, 100.0])
    src_q = np.percentile(region, levels)
    jit = rng.uniform(-1.0, 1.0, len(levels))
    dst_q = np.array([base_level + 60.0 * jit[0], 2000.0 + 60 * jit[1], 2380.0 + 60 * jit[2],
                      2660.0 + 50 * jit[3], p75_m + 30 * jit[4], p75_m + 420.0 + 60 * jit[5],
                      MAX_ELEV_M - 120.0 + 60 * jit[6]])
    src_q = src_q + np.arange(len(levels)) * 1e-3  # strictly increasing
    dst_q = np.maximum.accumulate(dst_q)
    remap = PchipInterpolator(src_q, dst_q, extrapolate=True)
    z = remap(np.clip(z, src_q[0] - 200.0, src_q[-1] + 200.0))
    z = _soft_limits(ndimage.gaussian_filter(z, 0.7), MIN_ELEV_M, MAX_ELEV_M, knee=100.0)
    # fine grid: cubic upsampling of the coarse cells covering it
    r_lo, c_lo = max(oy - 2, 0), max(ox - 2, 0)
    sub = z[r_lo:oy + math.ceil(grid.height / f) + 2, c_lo:ox + math.ceil(grid.width / f) + 2]
    up = ndimage.zoom(sub.astype(np.float32), f, order=3, mode="nearest", grid_mode=True)
    r0, c0 = (oy - r_lo) * f, (ox - c_lo) * f
    zbase = up[r0:r0 + grid.height, c0:c0 + grid.width]
    slope_b, _ = slope_aspect(zbase, grid.res)
    steep = np.clip(np.sin(slope_b) / 0.65, 0.0, 1.0)
    crest = noise.ridged(rng, grid.shape, grid.res, largest_m=4 * cell, smallest_m=4 * grid.res, gain=0.5)
    grain = noise.fbm(rng, grid.shape, grid.res, largest_m=2 * cell, smallest_m=2 * grid.res, beta=2.2)
    zfine = zbase + (6.0 + 30.0 * steep ** 1.5) * (crest - 0.35) + (2.0 + 4.0 * steep) * grain
    return Terrain(grid, pad, zfine.astype(np.float32))


def _soft_limits(z: np.ndarray, lo: float, hi: float, knee: float = 250.0) -> np.ndarray:
    """Identity inside [lo + knee, hi - knee]; compresses smoothly so lo / hi are never passed."""
    out = z.astype(np.float64).copy()
    up = out > hi - knee
    out[up] = hi - knee * np.exp(-(out[up] - (hi - knee)) / knee)
    dn = out < lo + knee
    out[dn] = lo + knee * np.exp((out[dn] - (lo + knee)) / knee)
    return out


# ------------------------------------------------------------------------------- real DEM
def read_dem_footprint(path: Path, crs: CRS) -> tuple[tuple[float, float, float, float], dict]:
    """Inner axis-aligned rectangle (in `crs`) of a DEM's extent, and its metadata."""
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as err:
        raise InputDataError(f"cannot read DEM: {err}", path=path,
                             hint="dem_path must be a GeoTIFF (or another raster GDAL reads)") from None
    with src:
        if src.crs is None:
            raise InputDataError("DEM has no CRS", path=path,
                                 hint="assign one, e.g. with gdal_edit.py -a_srs EPSG:4326")
        left, bottom, right, top = src.bounds
        n = 41
        t = np.linspace(0.0, 1.0, n)
        edges = {
            "left": (np.full(n, left), bottom + t * (top - bottom)),
            "right": (np.full(n, right), bottom + t * (top - bottom)),
            "bottom": (left + t * (right - left), np.full(n, bottom)),
            "top": (left + t * (right - left), np.full(n, top)),
        }
        proj = {k: warp_transform(src.crs, crs, list(xs), list(ys)) for k, (xs, ys) in edges.items()}
        inner = (max(proj["left"][0]), max(proj["bottom"][1]), min(proj["right"][0]), min(proj["top"][1]))
        meta = {"crs": src.crs, "res": src.res, "nodata": src.nodata}
    if inner[2] <= inner[0] or inner[3] <= inner[1]:
        raise InputDataError("DEM extent is empty in the target CRS", path=path)
    return inner, meta


def real_terrain(path: Path, grid: SimGrid, pad: int, rng: np.random.Generator) -> Terrain:
    """A real DEM reprojected onto the padded grid (cubic spline) plus a few metres of roughness."""
    with rasterio.open(path) as src:
        try:
            raw = src.read(1, masked=True).astype(np.float32)
        except rasterio.errors.RasterioIOError as err:
            raise InputDataError(f"cannot read DEM pixels (truncated or corrupt file: {err})",
                                 path=path, hint="re-download or re-export the DEM") from None
        data = raw.filled(np.nan)
        void = find_voids(data, src.nodata)  # also sentinels without a nodata tag, spikes, pits
        check_usable(data, void, path)
        data[void] = np.nan
        out = np.full(grid.shape, np.nan, np.float32)
        # fill voids first so the spline does not smear NaN
        valid = np.isfinite(data)
        if not valid.all():
            idx = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
            data = data[tuple(idx)]
        reproject(data, out, src_transform=src.transform, src_crs=src.crs, src_nodata=np.nan,
                  dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
                  resampling=Resampling.cubic_spline)
    inner = np.isfinite(out)
    core = inner[pad:pad + grid.height - 2 * pad, pad:pad + grid.width - 2 * pad]
    if not core.any():
        raise InputDataError("DEM does not cover the requested region", path=path)
    if not core.all():
        frac = 1.0 - core.mean()
        if frac > 0.02:
            raise InputDataError(f"DEM leaves {100 * frac:.1f}% of the region without data", path=path,
                                 hint="choose a region inside the DEM")
    if not inner.all():
        idx = ndimage.distance_transform_edt(~inner, return_distances=False, return_indices=True)
        out = out[tuple(idx)]
    slope, _ = slope_aspect(out, grid.res)
    rough = noise.fbm(rng, grid.shape, grid.res, largest_m=120.0, smallest_m=2.5 * grid.res, beta=2.5)
    z = out + (2.0 + 8.0 * np.clip(np.sin(slope) / 0.7, 0, 1)) * rough
    return Terrain(grid, pad, z.astype(np.float32))
