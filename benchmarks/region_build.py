"""Peak memory of `glaciermap region build` on a synthetic full-size Sentinel-2 tile.

Synthesises, in a temporary folder, a fake L2A `.SAFE` in the published layout (10,980 x 10,980 px
at 10 m by default: B02 B03 B04 B08 at 10 m, B11 B12 and SCL at 20 m, lossless JPEG 2000 tiled
1024 px like ESA's; baseline 05.09 with BOA_ADD_OFFSET -1000), a HyP3 RTC VV/VH pair (30 m, power)
and a coherence file, two Copernicus-named DEM tiles (EPSG:4326, 1 arc-second) covering the tile,
and RGI 7-like outlines; every raster is generated and written strip by strip. Then runs
`build_region` (default settings except `buffer_m: null`, the whole tile) in a fresh subprocess
and records its peak RSS (VmHWM of /proc/self/status, read by the child) to
benchmarks/results/region_build.json. Target: <= 2 GiB.

    .venv/bin/python benchmarks/region_build.py                 # full tile (slow: JPEG 2000 coding)
    .venv/bin/python benchmarks/region_build.py --size 2745     # a quarter of the side
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import products_fixtures as pf  # noqa: E402  (the tests' SAFE metadata and outline writers)

CRS = "EPSG:32632"
X0, Y0 = 600_000.0, 5_200_020.0  # upper-left corner of MGRS tile 32TPS-like
STRIP = 1024
TARGET_MIB = 2048


def _strip_values(kind: str, r0: int, h: int, w: int, seed: int) -> np.ndarray:
    """Smooth field + a little noise (compresses like imagery, not like white noise)."""
    rng = np.random.default_rng(seed * 100_003 + r0)
    y, x = np.mgrid[r0:r0 + h, 0:w].astype(np.float32)
    base = np.sin(x / 57.0 + seed) + np.cos(y / 73.0 - seed) + 0.5 * np.sin((x + y) / 311.0)
    if kind == "scl":
        return ((base + 2.5) * 2.4).astype(np.uint8) % 12
    dn = 5000 + 1800 * base + rng.integers(0, 24, size=base.shape)
    dn[(x + y) < w // 8] = 0  # no-data wedge in the north-west corner
    return dn.astype(np.uint16)


def _write_jp2(path: Path, n: int, res: float, kind: str, seed: int) -> None:
    """Generate a GeoTIFF strip by strip, then CreateCopy it to lossless JPEG 2000 (1024 px tiles)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.tif")
    dtype = "uint8" if kind == "scl" else "uint16"
    with rasterio.open(tmp, "w", driver="GTiff", width=n, height=n, count=1, dtype=dtype, crs=CRS,
                       transform=from_origin(X0, Y0, res, res), tiled=True, blockxsize=512,
                       blockysize=512) as ds:
        for r0 in range(0, n, STRIP):
            h = min(STRIP, n - r0)
            ds.write(_strip_values(kind, r0, h, n, seed), 1, window=Window(0, r0, n, h))
    rasterio.shutil.copy(tmp, path, driver="JP2OpenJPEG", QUALITY=100, REVERSIBLE="YES",
                         BLOCKXSIZE=1024, BLOCKYSIZE=1024, RESOLUTIONS=4)
    tmp.unlink()
    for aux in path.parent.glob("*.aux.xml"):
        aux.unlink()


def _write_float(path: Path, n_rows: int, n_cols: int, transform, crs: str, fn, nodata=None) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=n_cols, height=n_rows, count=1, dtype="float32",
                       crs=crs, transform=transform, tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate", nodata=nodata) as ds:
        for r0 in range(0, n_rows, STRIP):
            h = min(STRIP, n_rows - r0)
            rows, cols = np.mgrid[r0:r0 + h, 0:n_cols].astype(np.float64)
            ds.write(fn(rows, cols).astype(np.float32), 1, window=Window(0, r0, n_cols, h))


def make_inputs(root: Path, n: int) -> dict:
    """The fake SAFE, RTC, coherence, DEM tiles and outlines for an n x n px (10 m) tile."""
    date, t = "20230825", "102021"
    safe = root / f"S2A_MSIL2A_{date}T{t}_N0509_R065_T32TPS_{date}T151231.SAFE"
    safe.mkdir(parents=True)
    (safe / "MTD_MSIL2A.xml").write_text(pf.mtd_xml("L2A", "05.09", "2023-08-25T10:20:21.024Z", -1000))
    img = safe / "GRANULE" / f"L2A_T32TPS_A042000_{date}T{t}" / "IMG_DATA"
    stem = f"T32TPS_{date}T{t}"
    for i, b in enumerate(("B02", "B03", "B04", "B08")):
        _write_jp2(img / "R10m" / f"{stem}_{b}_10m.jp2", n, 10, "dn", i)
    for i, b in enumerate(("B11", "B12")):
        _write_jp2(img / "R20m" / f"{stem}_{b}_20m.jp2", n // 2, 20, "dn", 10 + i)
    _write_jp2(img / "R20m" / f"{stem}_SCL_20m.jp2", n // 2, 20, "scl", 20)
    s1 = root / "s1"
    s1.mkdir()
    n30 = -(-n // 3)
    for pol, k in (("VV", 0.08), ("VH", 0.02)):
        _write_float(s1 / f"S1A_IW_{date}T053212_DVP_RTC30_G_gpuned_1A2B_{pol}.tif", n30, n30,
                     from_origin(X0, Y0, 30, 30), CRS, lambda r, c, k=k: k * (1.5 + np.sin(c / 40) * np.cos(r / 30)),
                     nodata=0)
    _write_float(s1 / f"S1AA_20230813T053212_{date}T053212_VVP012_INT80_G_ueF_1A2B_corr.tif", n30, n30,
                 from_origin(X0, Y0, 30, 30), CRS, lambda r, c: 0.5 + 0.4 * np.sin((r + c) / 50), nodata=0)
    # DEM: two 1 arc-second tiles (west / east halves) covering the tile with a margin
    from pyproj import Transformer

    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    xs, ys = [X0 - 500, X0 + 10 * n + 500], [Y0 + 500, Y0 - 10 * n - 500]
    lons, lats = to_ll.transform([xs[0], xs[1], xs[0], xs[1]], [ys[0], ys[0], ys[1], ys[1]])
    res = 1 / 3600
    west, east = np.floor(min(lons) / res) * res, np.ceil(max(lons) / res) * res
    south, north = np.floor(min(lats) / res) * res, np.ceil(max(lats) / res) * res
    width, height = int(round((east - west) / res)), int(round((north - south) / res))
    dem = root / "dem"
    dem.mkdir()
    half = width // 2
    for k, (c0, c1) in enumerate([(0, half), (half, width)]):
        _write_float(dem / f"Copernicus_DSM_COG_10_N46_00_E01{k}_00_DEM.tif", height, c1 - c0,
                     from_origin(west + c0 * res, north, res, res), "EPSG:4326",
                     lambda r, c, c0=c0: 2000 + 800 * np.sin((c + c0) / 900) * np.cos(r / 700), nodata=-32767)
    outlines = root / "rgi7.shp"
    pf.make_outlines(outlines, kind="rgi7", dates=("2023-08-01", "2023-08-01"))
    return {"s2": safe, "s1": s1, "dem": dem, "outlines": outlines}


_CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from pathlib import Path
def vm(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
from glaciermap.data.products import RegionBuildConfig
from glaciermap.data.products.build import build_region
base = vm("VmHWM")
inp = json.loads(sys.argv[1])
t0 = time.perf_counter()
r = build_region([inp["s2"]], inp["outlines"], inp["out"], RegionBuildConfig(buffer_m=None),
                 s1=[inp["s1"]], dem=[inp["dem"]])
print(json.dumps({"rss_after_imports_mib": base, "peak_rss_mib": vm("VmHWM"),
                  "build_s": time.perf_counter() - t0, "grid": [r.grid.width, r.grid.height],
                  "summary": r.summary()}))
"""


def _du_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10_980, help="tile side in 10 m pixels (default: a full tile)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "region_build.json")
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the synthetic inputs (default: system temp)")
    args = ap.parse_args(argv)
    n = args.size - args.size % 6  # whole 20 m and 60 m pixels
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        inp = make_inputs(tmp / "in", n)
        synth_s = time.perf_counter() - t0
        job = {k: str(v) for k, v in inp.items()} | {"out": str(tmp / "region")}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
        p = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(job)], capture_output=True, text=True, env=env)
        if p.returncode != 0:
            print(p.stderr, file=sys.stderr)
            return 1
        child = json.loads(p.stdout.strip().splitlines()[-1])
        child.update({"size_px": n, "synthesise_s": synth_s, "inputs_mib": _du_mib(tmp / "in"),
                      "region_mib": _du_mib(tmp / "region"), "target_mib": TARGET_MIB,
                      "within_target": child["peak_rss_mib"] <= TARGET_MIB})
    result = {
        "benchmark": "region_build",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "logical_cpus": os.cpu_count(), "gdal": rasterio.__gdal_version__,
                    "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()]},
        "wall_s": time.perf_counter() - t_start,
        "result": {"method": "build_region (buffer_m null: the whole tile; S2 + RTC + coherence + 2 DEM tiles) "
                             "in a fresh subprocess; peak = VmHWM of /proc/self/status read by the child",
                   **child},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{n} px: peak RSS {child['peak_rss_mib']:.0f} MiB (target {TARGET_MIB}), build {child['build_s']:.0f} s, "
          f"synthesis {synth_s:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
