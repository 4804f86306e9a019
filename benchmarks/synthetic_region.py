"""Synthetic raw regions of any size, written strip by strip (benchmark tooling, not package code).

`glaciermap.data.simulate` holds whole 2-D fields in memory, so it cannot make a full
Sentinel-2 tile (10,980 x 10,980 px at 10 m). This module writes a raw region in the format of
docs/data-format.md section 1 (region.yaml, dem.tif, outlines.gpkg, scenes/<epoch>/optical.tif +
cloud.tif) whose rasters are generated and written one full-width strip of tiles at a time, so
its memory is bounded by a strip whatever the tile size:

* **optical.tif** – 6 bands `B2 B3 B4 B8 B11 B12`, float32 surface reflectance 0..1 quantised to
  1e-4 (as L2A digital numbers), NaN no data (a triangular swath-edge wedge in the north-west
  corner). Rock / ice spectra after the (rasterised) outlines of that epoch, modulated by
  multi-octave smooth noise (albedo texture) plus per-pixel sensor noise, bright opaque clouds.
* **cloud.tif** – uint8: 0 clear, 1 cloud (smooth noise above a threshold), 255 no data.
* **dem.tif** – float32 elevation (m) at 30 m covering the same extent (+2 px each side), from
  smooth noise (valleys ~1,600 m to peaks ~3,800 m).
* **outlines.gpkg** – `n_glaciers` non-overlapping star-shaped blobs (log-uniform 0.1-5 km2,
  elongated and rotated), EPSG:4326 as RGI ships them, columns `glacier_id`, `date`, `area_km2`.
  The recent epoch paints each glacier 5% smaller (linear), so the scenes show retreat.

All GeoTIFFs: tiled 256 px, band-interleaved (as the package's simulator writes them), deflate
(level 1, horizontal-differencing predictor: about 40-60% of the raw size here, written at
~100-200 MB/s on 2 cores), band descriptions set, BigTIFF when needed. Deterministic for a seed.

    .venv/bin/python benchmarks/synthetic_region.py /tmp/tile --size 10980 --glaciers 256
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import yaml
from rasterio import Affine
from rasterio.features import rasterize
from rasterio.windows import Window
from shapely import affinity
from shapely.geometry import Polygon

#: Sentinel-2 L2A bands the package's `optical` sensor group reads, in file order.
OPTICAL_BANDS: tuple[str, ...] = ("B2", "B3", "B4", "B8", "B11", "B12")
#: Reflectance of bare rock and of glacier ice / snow per band (snow bright in the visible,
#: dark in the SWIR: NDSI ~ 0.8; rock NDSI < 0).
ROCK = np.array([0.08, 0.10, 0.12, 0.20, 0.24, 0.19], np.float32)
ICE = np.array([0.62, 0.60, 0.57, 0.48, 0.06, 0.05], np.float32)
CLOUD = np.array([0.75, 0.74, 0.73, 0.72, 0.50, 0.38], np.float32)
BLOCK = 256
#: deflate level: 1 writes ~2x faster than the simulator's 4 (with its floating-point predictor)
#: for about the same size on these data; horizontal-differencing predictor (2) for every dtype
ZLEVEL = 1
FULL_TILE_PX = 10_980  # a Sentinel-2 MGRS tile at 10 m


@dataclass(frozen=True)
class RegionSpec:
    """What to write: a square `size_px` x `size_px` scene at `res_m` with `n_glaciers` outlines."""

    size_px: int
    n_glaciers: int
    seed: int = 0
    res_m: float = 10.0
    dem_res_m: float = 30.0
    crs: str = "EPSG:32632"
    origin: tuple[float, float] = (399_960.0, 5_200_020.0)  # upper-left corner (an MGRS 32T tile's)
    epochs: dict[str, str] = field(default_factory=lambda: {"2016": "2016-08-28", "2023": "2023-08-25"})
    inventory_epochs: tuple[str, ...] = ("2016",)
    min_area_km2: float = 0.1
    max_area_km2: float = 5.0
    cloud_fraction: float = 0.05
    nodata_wedge: float = 0.15  # the no-data triangle's legs, as a fraction of the scene side
    recent_shrink: float = 0.95  # linear scale of each glacier in the recent epochs
    stratified_areas: bool = True  # areas at evenly spaced log quantiles (same size mix for any n)
    strip_rows: int = BLOCK

    @property
    def transform(self) -> Affine:
        return Affine(self.res_m, 0.0, self.origin[0], 0.0, -self.res_m, self.origin[1])

    @property
    def area_km2(self) -> float:
        return (self.size_px * self.res_m / 1000.0) ** 2


def size_for_density(n_glaciers: int, km2_per_glacier: float, res_m: float = 10.0) -> int:
    """Side (px) of the square scene that holds `n_glaciers` at one glacier per `km2_per_glacier`."""
    side_km = math.sqrt(n_glaciers * km2_per_glacier)
    return max(BLOCK, int(round(side_km * 1000.0 / res_m)))


# ----------------------------------------------------------------------------------- outlines
def _blob(rng: np.random.Generator, area_m2: float, cx: float, cy: float) -> Polygon:
    """A star-shaped (hence simple) blob of the given area, elongated and rotated at random."""
    theta = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.uniform(0.0, 0.3 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    poly = Polygon(np.c_[r * np.cos(theta), r * np.sin(theta)])
    aspect = rng.uniform(1.0, 2.5)
    poly = affinity.scale(poly, aspect, 1.0 / aspect, origin=(0, 0))
    poly = affinity.rotate(poly, rng.uniform(0, 180), origin=(0, 0))
    poly = affinity.scale(poly, math.sqrt(area_m2 / poly.area), math.sqrt(area_m2 / poly.area), origin=(0, 0))
    return affinity.translate(poly, cx, cy)


def glacier_outlines(spec: RegionSpec) -> gpd.GeoDataFrame:
    """`spec.n_glaciers` non-overlapping blobs inside the scene (scene CRS), 200 m apart at least.

    Areas are log-uniform in [min_area_km2, max_area_km2] (at the quantiles (i + 0.5) / n with
    `stratified_areas`, so regions of any size share one size mix: mean ~1.25 km2); blobs are
    placed largest first by rejection sampling (centres uniform, at least one blob radius + 50 m
    from the scene edge). Raises ValueError if the scene is too crowded to place them all.
    """
    rng = np.random.default_rng(spec.seed)
    q = ((np.arange(spec.n_glaciers) + 0.5) / spec.n_glaciers if spec.stratified_areas
         else rng.uniform(0.0, 1.0, spec.n_glaciers))
    lo, hi = np.log(spec.min_area_km2), np.log(spec.max_area_km2)
    areas = np.exp(lo + q * (hi - lo)) * 1e6
    areas = np.sort(areas)[::-1]
    x0, y1 = spec.origin
    side = spec.size_px * spec.res_m
    polys: list[Polygon] = []
    centres = np.zeros((0, 2))
    radii = np.zeros(0)
    for a in areas:
        for _ in range(2000):
            poly = _blob(rng, a, 0.0, 0.0)
            minx, miny, maxx, maxy = poly.bounds
            rad = max(-minx, -miny, maxx, maxy)
            if side < 2 * rad + 100:
                continue
            cx = rng.uniform(x0 + rad + 50, x0 + side - rad - 50)
            cy = rng.uniform(y1 - side + rad + 50, y1 - rad - 50)
            if len(centres) and (np.hypot(*(centres - (cx, cy)).T) < radii + rad + 200).any():
                continue
            polys.append(affinity.translate(poly, cx, cy))
            centres = np.vstack([centres, (cx, cy)])
            radii = np.append(radii, rad)
            break
        else:
            raise ValueError(f"cannot place {spec.n_glaciers} glaciers on a {spec.size_px} px scene")
    ids = [f"G{spec.seed:02d}-{i:05d}" for i in range(len(polys))]
    inv = spec.epochs[spec.inventory_epochs[0]]
    return gpd.GeoDataFrame({"glacier_id": ids, "date": inv, "area_km2": [p.area / 1e6 for p in polys]},
                            geometry=polys, crs=spec.crs)


# ------------------------------------------------------------------------------- smooth noise
class SmoothNoise:
    """Multi-octave value noise (bilinear interpolation of coarse Gaussian grids), by strips.

    Each octave is a coarse grid with one value every `cell` pixels; a strip of rows is made by
    interpolating only the coarse rows it needs, so a 10,980 px scene never exists whole.
    Values have zero mean and roughly unit standard deviation.
    """

    def __init__(self, rng: np.random.Generator, height: int, width: int,
                 cells: tuple[int, ...] = (1024, 256, 64, 16), gains: tuple[float, ...] = (1.0, 0.6, 0.35, 0.2)):
        self.width = width
        self.octaves = [(cell, g, rng.standard_normal((height // cell + 3, width // cell + 3)).astype(np.float32))
                        for cell, g in zip(cells, gains)]
        self.norm = 1.0 / math.sqrt(sum(g * g for g in gains)) * 1.6  # bilinear smoothing lowers the std

    def strip(self, row0: int, nrows: int) -> np.ndarray:
        """(nrows, width) float32 noise for scene rows row0 .. row0 + nrows - 1."""
        out = np.zeros((nrows, self.width), np.float32)
        cols = np.arange(self.width, dtype=np.float32)
        for cell, gain, grid in self.octaves:
            fx = cols / cell
            ix = fx.astype(np.int64)
            wx = (fx - ix).astype(np.float32)
            fy = (np.arange(row0, row0 + nrows, dtype=np.float32)) / cell
            iy = fy.astype(np.int64)
            wy = (fy - iy).astype(np.float32)[:, None]
            rows_needed = np.arange(iy.min(), iy.max() + 2)
            g = grid[rows_needed]
            gx = g[:, ix] * (1 - wx) + g[:, ix + 1] * wx  # (k, width): interpolated along x
            lo = gx[iy - rows_needed[0]]
            hi = gx[iy - rows_needed[0] + 1]
            out += gain * (lo * (1 - wy) + hi * wy)
        out *= self.norm
        return out


# ------------------------------------------------------------------------------------ writing
def _profile(spec: RegionSpec, count: int, dtype: str, nodata: float | int, *, width: int | None = None,
             height: int | None = None, transform: Affine | None = None) -> dict:
    return {"driver": "GTiff", "width": width or spec.size_px, "height": height or spec.size_px,
            "count": count, "dtype": dtype, "crs": spec.crs, "transform": transform or spec.transform,
            "nodata": nodata, "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "deflate",
            "zlevel": ZLEVEL, "predictor": 2, "interleave": "band",
            "BIGTIFF": "IF_SAFER"}


def _strips(height: int, rows: int) -> Iterator[tuple[int, int]]:
    for r0 in range(0, height, rows):
        yield r0, min(rows, height - r0)


def _write_dem(path: Path, spec: RegionSpec, rng: np.random.Generator) -> None:
    """30 m DEM covering the scene plus 2 DEM pixels on each side."""
    side = spec.size_px * spec.res_m
    n = int(math.ceil(side / spec.dem_res_m)) + 4
    x0, y1 = spec.origin
    transform = Affine(spec.dem_res_m, 0, x0 - 2 * spec.dem_res_m, 0, -spec.dem_res_m, y1 + 2 * spec.dem_res_m)
    noise = SmoothNoise(rng, n, n, cells=(256, 64, 16, 4), gains=(1.0, 0.5, 0.25, 0.1))
    with rasterio.open(path, "w", **_profile(spec, 1, "float32", float("nan"), width=n, height=n,
                                             transform=transform)) as ds:
        ds.set_band_description(1, "elevation")
        for r0, h in _strips(n, spec.strip_rows):
            z = 2600.0 + 450.0 * noise.strip(r0, h)
            ds.write(np.clip(z, 1500.0, 4200.0)[None], window=Window(0, r0, n, h))


def _nodata_strip(spec: RegionSpec, r0: int, h: int) -> np.ndarray:
    """True in the no-data wedge (north-west triangle, like the edge of an orbit swath)."""
    leg = spec.nodata_wedge * spec.size_px
    rows = np.arange(r0, r0 + h)[:, None]
    cols = np.arange(spec.size_px)[None, :]
    return (rows + cols) < leg


def _write_scene(folder: Path, spec: RegionSpec, glaciers: gpd.GeoSeries, rng: np.random.Generator) -> None:
    """optical.tif and cloud.tif of one epoch, strip by strip."""
    folder.mkdir(parents=True, exist_ok=True)
    n = spec.size_px
    albedo = SmoothNoise(rng, n, n)
    clouds = SmoothNoise(rng, n, n, cells=(512, 128, 32), gains=(1.0, 0.5, 0.25))
    # threshold of the (about standard normal) cloud field that leaves `cloud_fraction` cloudy
    sample = np.concatenate([clouds.strip(int(r), 1)[0, ::8] for r in np.linspace(0, n - 1, 48)])
    thr = float(np.quantile(sample, 1 - spec.cloud_fraction)) if spec.cloud_fraction > 0 else np.inf
    bounds = np.array([g.bounds for g in glaciers]) if len(glaciers) else np.zeros((0, 4))
    y_top = spec.origin[1]
    with rasterio.open(folder / "optical.tif", "w", **_profile(spec, len(OPTICAL_BANDS), "float32",
                                                               float("nan"))) as opt, \
            rasterio.open(folder / "cloud.tif", "w", **_profile(spec, 1, "uint8", 255)) as cl:
        for i, b in enumerate(OPTICAL_BANDS, start=1):
            opt.set_band_description(i, b)
        cl.set_band_description(1, "cloud")
        for r0, h in _strips(n, spec.strip_rows):
            win = Window(0, r0, n, h)
            top, bottom = y_top - r0 * spec.res_m, y_top - (r0 + h) * spec.res_m
            hit = np.flatnonzero((bounds[:, 1] < top) & (bounds[:, 3] > bottom)) if len(bounds) else []
            strip_tf = spec.transform * Affine.translation(0, r0)
            ice = (rasterize(((glaciers.iloc[j], 1) for j in hit), out_shape=(h, n), transform=strip_tf,
                             fill=0, dtype="uint8").astype(bool) if len(hit) else np.zeros((h, n), bool))
            tex = 1.0 + 0.25 * albedo.strip(r0, h)
            cfield = clouds.strip(r0, h)
            cloud = cfield > thr
            nodata = _nodata_strip(spec, r0, h)
            data = np.where(ice[None], ICE[:, None, None], ROCK[:, None, None]) * tex[None]
            # sensor noise: one Gaussian strip, each band reading it at another column offset
            # (5x cheaper than a draw per band, and no band shares a pixel's noise)
            white = rng.standard_normal((h, n + 37 * len(OPTICAL_BANDS)), dtype=np.float32)
            for b in range(len(OPTICAL_BANDS)):
                data[b] += 0.004 * white[:, 37 * b:37 * b + n]
            data = np.where(cloud[None], CLOUD[:, None, None], data)
            data = np.round(np.clip(data, 0.0, 1.0) * 1e4) / np.float32(1e4)  # L2A-like 1e-4 steps
            data[:, nodata] = np.nan
            opt.write(data.astype(np.float32), window=win)
            mask = cloud.astype(np.uint8)
            mask[nodata] = 255
            cl.write(mask[None], window=win)


def folder_bytes(root: Path, pattern: str = "*.tif") -> int:
    """Bytes of the files under `root` matching `pattern` (recursively)."""
    return sum(p.stat().st_size for p in root.rglob(pattern))


def write_region(root: Path, spec: RegionSpec) -> dict:
    """Write the raw region of `spec` into `root` (created); return what was written.

    Returns a dict: size_px, area_km2, n_glaciers, glacier_km2, raster_bytes (all GeoTIFFs on
    disk), raster_bytes_uncompressed, seconds.
    """
    t0 = time.perf_counter()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(spec.seed + 1)
    outlines = glacier_outlines(spec)
    _write_dem(root / "dem.tif", spec, rng)
    inv = set(spec.inventory_epochs)
    for epoch in spec.epochs:
        geoms = outlines.geometry if epoch in inv else outlines.geometry.apply(
            lambda g: affinity.scale(g, spec.recent_shrink, spec.recent_shrink, origin="centroid"))
        _write_scene(root / "scenes" / epoch, spec, geoms, rng)
    outlines.to_crs(4326).to_file(root / "outlines.gpkg", driver="GPKG", layer="outlines")
    manifest = {"name": f"synthetic-{spec.size_px}px-{spec.n_glaciers}g", "id_column": "glacier_id",
                "date_column": "date", "inventory_epochs": list(spec.inventory_epochs),
                "epochs": {e: {"date": d} for e, d in spec.epochs.items()}}
    (root / "region.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    n = spec.size_px
    dem_n = int(math.ceil(n * spec.res_m / spec.dem_res_m)) + 4
    raw_bytes = len(spec.epochs) * n * n * (4 * len(OPTICAL_BANDS) + 1) + dem_n * dem_n * 4
    return {"size_px": n, "area_km2": spec.area_km2, "n_glaciers": len(outlines),
            "glacier_km2": float(outlines["area_km2"].sum()), "epochs": len(spec.epochs),
            "raster_bytes": folder_bytes(root), "raster_bytes_uncompressed": raw_bytes,
            "seconds": time.perf_counter() - t0}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="region folder to write")
    ap.add_argument("--size", type=int, default=FULL_TILE_PX, help="scene side in pixels (10 m)")
    ap.add_argument("--glaciers", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    info = write_region(args.out, RegionSpec(size_px=args.size, n_glaciers=args.glaciers, seed=args.seed))
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
