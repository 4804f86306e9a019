"""glaciermap benchmarks: machine peak, models, data loader, inference, ingest memory, tile scale, growth.

    .venv/bin/python benchmarks/run.py --quick            # < 5 min on a 2-core CPU
    .venv/bin/python benchmarks/run.py                    # fuller (longer) run
    .venv/bin/python benchmarks/run.py --only peak,models # a subset
    .venv/bin/python benchmarks/run.py --readme-only      # rebuild README tables from the JSON
    python benchmarks/run.py --device cuda                # the GPU benchmark (benchmarks/gpu.py)

Each benchmark writes benchmarks/results/<name>.json (atomically) holding its figures and the
machine they were measured on; the tables in benchmarks/README.md are regenerated from those files.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

warnings.filterwarnings("ignore")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from machine import cpu_model, machine  # noqa: E402
from report import write_readme  # noqa: E402

from glaciermap.io import write_json  # noqa: E402

THREADS = 2
BENCHMARKS = ("peak", "models", "loader", "inference", "memory", "tile", "growth")
GROUPS = {"optical": 6, "dem": 3}  # optical_dem: 9 channels
SENSOR_SET = "optical_dem"


# ------------------------------------------------------------------------------------ helpers
def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def timed(fn, iters: int, warmup: int = 1) -> list[float]:
    """Seconds per call of `fn` over `iters` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------------------- peak
def _gflops(fn, flops: float, reps: int) -> dict:
    times = timed(fn, reps, warmup=2)
    return {"seconds_best": min(times), "seconds_median": median(times),
            "gflops_best": flops / min(times) / 1e9, "gflops_median": flops / median(times) / 1e9}


def bench_peak(quick: bool) -> dict:
    """The practical float32 ceiling: the best of a BLAS matrix product (`torch.mm`) and two
    convolutions run by oneDNN, the library of the models' convolutions (1x1: the same product;
    3x3: the models' main operation), both channels_last. On some CPUs, AMD ones among them, the
    BLAS path reaches half of what oneDNN does, and the models then seemed to beat "the peak"."""
    n = 2048 if quick else 4096
    reps = 5
    a, b = torch.randn(n, n), torch.randn(n, n)
    c = torch.empty(n, n)
    kinds = {"mm": _gflops(lambda: torch.mm(a, b, out=c), 2.0 * n ** 3, reps)}
    cl = torch.channels_last
    for name, (batch, ch, hw, k) in {"conv1x1": (1, 1024, 64, 1), "conv3x3": (4, 256, 64, 3)}.items():
        x = torch.randn(batch, ch, hw, hw).contiguous(memory_format=cl)
        w = torch.randn(ch, ch, k, k).contiguous(memory_format=cl)
        with torch.inference_mode():
            kinds[name] = {"batch": batch, "channels": ch, "pixels": hw * hw, "kernel": k, **_gflops(
                lambda: torch.nn.functional.conv2d(x, w, padding=k // 2), 2.0 * batch * ch * ch * k * k * hw * hw,
                reps)}
    source = max(kinds, key=lambda kind: kinds[kind]["gflops_best"])
    return {"matrix_size": n, **kinds, "dtype": "float32", "repeats": reps, "source": source,
            "gflops_best": kinds[source]["gflops_best"], "gflops_median": kinds[source]["gflops_median"]}


def peak_gflops(out: Path, quick: bool) -> float:
    data = read_json(out / "peak.json")
    if data and data.get("machine", {}).get("cpu_model") == cpu_model():
        return float(data["result"]["gflops_best"])
    return bench_peak(quick)["gflops_best"]


# ------------------------------------------------------------------------------------- models
def _model(name: str):
    from glaciermap.models import build_model
    from glaciermap.config.models import ModelConfig

    torch.manual_seed(0)
    return build_model(ModelConfig(name=name), GROUPS)


def bench_model(name: str, size: int, train_batch: int, infer_batch: int, iters: int) -> dict:
    from glaciermap.models import model_summary

    model = _model(name)
    summ = model_summary(model, size)
    gflops = summ["gflops_per_patch"]
    c = model.in_channels
    loc = torch.zeros(train_batch, 2)

    # forward + backward (train mode, AdamW step as in training)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(train_batch, c, size, size)
    y = (torch.rand(train_batch, 1, size, size) > 0.5).float()

    def step():
        opt.zero_grad(set_to_none=True)
        logits, aux = model.forward_with_aux(x, loc)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
        for w, a in aux:
            loss = loss + w * torch.nn.functional.binary_cross_entropy_with_logits(a, y)
        loss.backward()
        opt.step()

    train_times = timed(step, iters)
    t_train = min(train_times)
    del opt
    gc.collect()

    # inference (eval, inference_mode), contiguous and channels_last
    model.eval()
    xi = torch.randn(infer_batch, c, size, size)
    li = torch.zeros(infer_batch, 2)
    infer = {}
    for fmt in ("contiguous", "channels_last"):
        if fmt == "channels_last":
            model = model.to(memory_format=torch.channels_last)
            xin = xi.contiguous(memory_format=torch.channels_last)
        else:
            xin = xi

        def fwd():
            with torch.inference_mode():
                model(xin, li)

        times = timed(fwd, iters)
        t = min(times)
        infer[fmt] = {"seconds_per_batch": t, "seconds_median": median(times), "patches_per_s": infer_batch / t,
                      "megapixels_per_s": infer_batch * size * size / t / 1e6,
                      "gflops_per_s": gflops * infer_batch / t}
    train_pps = train_batch / t_train
    return {"model": name, "size": size, "channels": c, "params": summ["params"],
            "gflops_per_patch": gflops, "train_batch": train_batch, "infer_batch": infer_batch,
            "iters": iters,
            "train": {"seconds_per_step": t_train, "seconds_median": median(train_times), "patches_per_s": train_pps,
                      "gflops_per_s": 3 * gflops * train_pps},
            "inference": infer,
            "channels_last_speedup": infer["contiguous"]["seconds_per_batch"]
            / infer["channels_last"]["seconds_per_batch"]}


def bench_models(quick: bool, peak: float) -> dict:
    from glaciermap.models import MODEL_NAMES

    rows = []
    for name in MODEL_NAMES:
        size = 128 if (quick and name == "glavitu") else 256
        t0 = time.perf_counter()
        r = bench_model(name, size, train_batch=2 if quick else 4, infer_batch=4, iters=2 if quick else 5)
        r["train"]["fraction_of_peak"] = r["train"]["gflops_per_s"] / peak
        for v in r["inference"].values():
            v["fraction_of_peak"] = v["gflops_per_s"] / peak
        r["wall_s"] = time.perf_counter() - t0
        log(f"  {name:14s} {size}px train {r['train']['patches_per_s']:.2f} p/s, infer "
            f"{r['inference']['contiguous']['patches_per_s']:.2f} p/s "
            f"(channels_last {r['inference']['channels_last']['patches_per_s']:.2f}) [{r['wall_s']:.0f}s]")
        rows.append(r)
        gc.collect()
    note = ("times are the best of the timed iterations (after one warm-up); "
            "train = forward+backward+AdamW step; its FLOPs are counted as 3x the forward FLOPs "
            "(torch.utils.flop_counter: convolutions, matmuls, attention only)")
    if quick:
        note += "; --quick runs glavitu at 128 px (256 px takes ~10 s per training step on 2 cores)"
    return {"peak_gflops": peak, "models": rows, "note": note}


# ------------------------------------------------------------------------------ region (data)
def build_region(root: Path, km: float, seed: int = 3, n_glaciers: int | None = None) -> dict:
    """Simulate a km x km region, ingest it to cubes and make k=2 folds (all under `root`)."""
    from glaciermap.config import DataConfig, FoldsConfig, SensorsConfig
    from glaciermap.data.cubes import read_index
    from glaciermap.data.folds import make_folds
    from glaciermap.data.ingest import ingest_region
    from glaciermap.data.simulate import simulate_region
    from glaciermap.config.simulate import SimulateConfig

    n = n_glaciers or max(4, int(round(km * km / 2)))
    t0 = time.perf_counter()
    simulate_region(SimulateConfig(seed=seed, width_km=km, height_km=km, n_glaciers=n), root / "raw",
                    progress=False)
    t1 = time.perf_counter()
    index = ingest_region(root / "raw", root / "cubes", DataConfig(), SensorsConfig(), progress=False)
    t2 = time.perf_counter()
    folds = make_folds(read_index(root / "cubes"), root / "cubes", FoldsConfig(k=2), progress=False)
    t3 = time.perf_counter()
    return {"root": root, "index": index, "folds": folds, "km": km, "n_glaciers_requested": n,
            "simulate_s": t1 - t0, "ingest_s": t2 - t1, "folds_s": t3 - t2}


# ------------------------------------------------------------------------------------- loader
def bench_loader(quick: bool, region: dict, unet_train_pps: float | None, unet_train_batch: int | None) -> dict:
    from glaciermap.config import PatchesConfig, SensorsConfig
    from glaciermap.data.datamodule import GlacierDataModule
    from glaciermap.device import loader_workers

    groups = SensorsConfig().resolve(SENSOR_SET)
    default = PatchesConfig()
    samples = 128 if quick else 1000
    results = []
    for workers in (0, 2):
        cfg = PatchesConfig(size=default.size, batch_size=default.batch_size, num_workers=workers,
                            samples_per_epoch=samples)
        dm = GlacierDataModule(region["root"] / "cubes", region["folds"][0], groups, cfg)
        dm.setup("fit")
        epochs = []
        for epoch in range(2):
            loader = dm.train_dataloader()
            loader.sampler.set_epoch(epoch)
            t0 = time.perf_counter()
            first, n = None, 0
            for batch in loader:
                n += batch["image"].shape[0]
                if first is None:
                    first = time.perf_counter() - t0
            total = time.perf_counter() - t0
            epochs.append({"epoch": epoch, "patches": n, "seconds": total, "first_batch_s": first,
                           "patches_per_s": n / total,
                           "steady_patches_per_s": (n - cfg.batch_size) / max(total - first, 1e-9)})
        # epoch 0 of the main-process loader loads the cubes cold; later epochs hit its cache
        # (workers are not persistent, so with workers every epoch starts cold)
        results.append({"num_workers": workers, "default_setting": workers == loader_workers(default.num_workers),
                        "batch_size": cfg.batch_size, "size": cfg.size, "epochs": epochs,
                        "patches_per_s": min(e["patches_per_s"] for e in epochs)})
        log(f"  num_workers={workers}: {results[-1]['patches_per_s']:.1f} patches/s (slowest epoch)")
    out = {"region_km": region["km"], "train_cubes": len(dm.paths(region["folds"][0].train)),
           "samples_per_epoch": samples, "sensor_set": SENSOR_SET, "settings": results,
           "unet_train_patches_per_s": unet_train_pps, "unet_train_batch": unet_train_batch,
           "default_num_workers": default.num_workers}
    if unet_train_pps:
        for r in results:
            r["ratio_to_unet_train"] = r["patches_per_s"] / unet_train_pps
        ok = [r["num_workers"] for r in results if r["ratio_to_unet_train"] > 1]
        out["settings_faster_than_unet"] = ok
        out["default_faster_than_unet"] = default.num_workers in ok
    return out


# ---------------------------------------------------------------------------------- inference
def bench_inference(quick: bool, region: dict) -> dict:
    from glaciermap.config import DataConfig, SensorsConfig
    from glaciermap.data.windows import prepare_cube
    from glaciermap.data.windows import predict_cube

    groups = SensorsConfig().resolve(SENSOR_SET)
    res = DataConfig().resolution_m
    index = region["index"]
    if quick:
        index = index[index["role"] == "inventory"]
    model = _model("unet")
    stats = region["folds"][0].stats
    cubes = [(prepare_cube(region["root"] / "cubes" / p, groups, stats), a)
             for p, a in zip(index["path"], index["area_km2"])]
    # warm up (first call pays one-off allocation costs)
    predict_cube(model, cubes[0][0], groups, size=256, stride=192, batch_size=8)
    t0 = time.perf_counter()
    cube_km2 = glacier_km2 = pred_km2 = 0.0
    windows = 0
    for cube, area in cubes:
        prob = predict_cube(model, cube, groups, size=256, stride=192, batch_size=8)
        h, w = prob.shape
        cube_km2 += h * w * res * res / 1e6
        glacier_km2 += float(area)
        pred_km2 += float((prob > 0.5).sum()) * res * res / 1e6
        windows += max(1, -(-max(h - 256, 0) // 192) + 1) * max(1, -(-max(w - 256, 0) // 192) + 1)
    t = time.perf_counter() - t0
    return {"model": "unet (random weights)", "size": 256, "stride": 192, "batch_size": 8, "tta": False,
            "cubes": len(cubes), "roles": sorted(index["role"].unique().tolist()),
            "windows": windows, "seconds": t, "cube_km2": cube_km2, "glacier_km2": glacier_km2,
            "cube_km2_per_s": cube_km2 / t, "glacier_km2_per_s": glacier_km2 / t,
            "windows_per_s": windows / t, "predicted_km2_untrained": pred_km2,
            "note": "cube area sums every cube (cubes overlap by their buffers); glacier km2 = "
                    "the inventory outline area of the cubes' glaciers (index area_km2)"}


# ------------------------------------------------------------------------------ ingest memory
# child processes measure their own peak memory (VmHWM / VmRSS belong to the process's own address
# space, reset by exec, unlike getrusage's ru_maxrss, which Linux carries over across fork + exec)
_STATUS_MIB = """
def status_mib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")
"""

_MEM_CHILD = r"""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from glaciermap.config import DataConfig, SensorsConfig
from glaciermap.data.ingest import ingest_region


""" + _STATUS_MIB + r"""

base = status_mib("VmHWM")
t = time.perf_counter()
idx = ingest_region(Path(sys.argv[1]), Path(sys.argv[2]), DataConfig(), SensorsConfig(), progress=False)
dt = time.perf_counter() - t
peak = status_mib("VmHWM")
print(json.dumps({"rss_after_imports_mib": base, "peak_rss_mib": peak, "ingest_s": dt,
                  "cubes": len(idx), "glaciers": int(idx["glacier_id"].nunique()),
                  "max_cube_pixels": int((idx["height"] * idx["width"]).max())}))
"""

_SIM_CHILD = r"""
import sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[4])
from pathlib import Path
from glaciermap.data.simulate import simulate_region
from glaciermap.config.simulate import SimulateConfig
km, n = float(sys.argv[2]), int(sys.argv[3])
simulate_region(SimulateConfig(seed=5, width_km=km, height_km=km, n_glaciers=n), Path(sys.argv[1]), progress=False)
"""


def bench_memory(quick: bool, tmp: Path) -> dict:
    sizes = (4, 8) if quick else (4, 8, 16)
    src = str(HERE.parent / "src")
    rows = []
    for km in sizes:
        raw, cubes = tmp / f"mem{km}" / "raw", tmp / f"mem{km}" / "cubes"
        n = max(4, int(round(km * km / 2)))
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", _SIM_CHILD, str(raw), str(km), str(n), src], check=True)
        sim_s = time.perf_counter() - t
        out = subprocess.run([sys.executable, "-c", _MEM_CHILD, str(raw), str(cubes), src], check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        r.update({"region_km": f"{km}x{km}", "region_km2": km * km, "n_glaciers_requested": n,
                  "simulate_s": sim_s, "ingest_increment_mib": r["peak_rss_mib"] - r["rss_after_imports_mib"]})
        rows.append(r)
        log(f"  {km}x{km} km: peak RSS {r['peak_rss_mib']:.0f} MiB ({r['cubes']} cubes, {r['ingest_s']:.1f}s)")
    return {"method": "ingest_region (DataConfig default workers=1) in a fresh subprocess; peak = VmHWM of /proc/self/status "
                      "(getrusage ru_maxrss is unusable here: Linux carries the parent's peak across fork + exec)",
            "regions": rows,
            "peak_ratio_largest_to_smallest": rows[-1]["peak_rss_mib"] / rows[0]["peak_rss_mib"],
            "area_ratio_largest_to_smallest": rows[-1]["region_km2"] / rows[0]["region_km2"]}


# ------------------------------------------------------------------ tile scale and cost growth
# Synthetic raw regions (benchmarks/synthetic_region.py): a full Sentinel-2 tile cannot be made
# with the package's simulator, which holds whole 2-D fields in memory.
TILE_SIZES = {"quick": (2745, 5490), "full": (5490, 10980)}
#: glaciers on a full 10,980 px tile (scaled by area for smaller ones); --quick uses 1/8 of the
#: density so that inference over every cube fits its time budget
TILE_GLACIERS = {"quick": 32, "full": 256}
GROWTH_GLACIERS = {"quick": (1, 2, 4), "full": (50, 200, 800)}
GROWTH_KM2_PER_GLACIER = 10.0  # constant density: the scene grows with the glacier count
INFER_MODEL = {"name": "unet", "encoder": "resnet18"}
INFER_WINDOW = {"size": 256, "stride": 192, "batch_size": 8}  # PatchesConfig defaults


def _sensors():
    """Sensors limited to optical + DEM (the synthetic regions have no sar.tif)."""
    from glaciermap.config import DEM_BANDS, OPTICAL_BANDS, SensorsConfig

    return SensorsConfig(groups={"optical": list(OPTICAL_BANDS), "dem": list(DEM_BANDS)},
                         sets={"optical": ["optical"], "optical_dem": ["optical", "dem"]})


def vm_status_mib(key: str) -> float:
    """VmHWM / VmRSS of this process from /proc/self/status, MiB (NaN if unavailable)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def infer_model():
    """The random-init U-Net (resnet18 encoder) used by the tile and growth benchmarks, eval mode."""
    from glaciermap.models import build_model
    from glaciermap.config.models import ModelConfig

    torch.manual_seed(0)
    return build_model(ModelConfig(**INFER_MODEL), _sensors().channels(SENSOR_SET)).eval()


def infer_cubes(cubes_dir: Path, model, *, stats_cubes: int = 4, res: float = 10.0) -> dict:
    """predict_cube over every cube of `cubes_dir` (one at a time) plus per-cube glacier figures.

    The normalisation statistics come from the first `stats_cubes` cubes (not timed), then one
    untimed warm-up batch; the timed loop is what `glaciermap infer` does per cube: prepare the
    cube, predict it, compute the predicted area inside the outline (`glacier_stats`).
    Returns timings, counts and `long` (one row per cube, the columns `per_glacier_table` reads).
    """
    from types import SimpleNamespace

    from glaciermap.data.cubes import read_index
    from glaciermap.data.folds import band_stats
    from glaciermap.data.windows import n_windows, predict_cube, prepare_cube
    from glaciermap.inference.run import glacier_stats

    groups = _sensors().resolve(SENSOR_SET)
    index = read_index(cubes_dir)
    paths = [cubes_dir / p for p in index["path"]]
    t = time.perf_counter()
    stats = band_stats(paths[:stats_cubes])
    stats_s = time.perf_counter() - t
    size, stride, batch = INFER_WINDOW["size"], INFER_WINDOW["stride"], INFER_WINDOW["batch_size"]
    with torch.inference_mode():
        model(torch.zeros(batch, model.in_channels, size, size), torch.zeros(batch, 2))
    rss_before = vm_status_mib("VmRSS")
    long, windows, cube_km2, glacier_km2 = [], 0, 0.0, 0.0
    t0 = time.perf_counter()
    for r, path in zip(index.itertuples(), paths):
        cube = prepare_cube(path, groups, stats)
        prob = predict_cube(model, cube, groups, size=size, stride=stride, batch_size=batch)
        view = SimpleNamespace(grid=SimpleNamespace(res=res), mask_glacier=cube.glacier,
                               mask_invalid=(~cube.valid).astype(np.uint8), mask_debris=cube.debris)
        g = glacier_stats(prob, view)
        long.append({"glacier_id": r.glacier_id, "epoch": r.epoch, "role": r.role, "year": r.year, "fold": 0,
                     "area_inventory_km2": r.area_km2, **g})
        h, w = prob.shape
        windows += n_windows(h, w, size, stride)
        cube_km2 += h * w * res * res / 1e6
        glacier_km2 += float(r.area_km2)
    seconds = time.perf_counter() - t0
    return {"cubes": len(index), "glaciers": int(index["glacier_id"].nunique()), "windows": windows,
            "seconds": seconds, "stats_s": stats_s, "cube_km2": cube_km2, "glacier_km2": glacier_km2,
            "glacier_km2_per_s": glacier_km2 / seconds, "windows_per_s": windows / seconds,
            "rss_before_loop_mib": rss_before, "long": long}


_TILE_INGEST_CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from glaciermap.config import DEM_BANDS, OPTICAL_BANDS, DataConfig, SensorsConfig
from glaciermap.data.ingest import ingest_region


""" + _STATUS_MIB + r"""

sensors = SensorsConfig(groups={"optical": list(OPTICAL_BANDS), "dem": list(DEM_BANDS)},
                        sets={"optical": ["optical"], "optical_dem": ["optical", "dem"]})
base = status_mib("VmHWM")
t = time.perf_counter()
idx = ingest_region(Path(sys.argv[1]), Path(sys.argv[2]), DataConfig(), sensors, progress=False)
dt = time.perf_counter() - t
print(json.dumps({"rss_after_imports_mib": base, "peak_rss_mib": status_mib("VmHWM"), "seconds": dt,
                  "cubes": len(idx), "glaciers": int(idx["glacier_id"].nunique()),
                  "max_cube_pixels": int((idx["height"] * idx["width"]).max())}))
"""

_TILE_INFER_CHILD = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
sys.path.insert(0, sys.argv[2])
from pathlib import Path
import run
run.torch.set_num_threads(run.THREADS)
base = run.vm_status_mib("VmHWM")
model = run.infer_model()
r = run.infer_cubes(Path(sys.argv[1]), model)
r.pop("long")
r.update({"rss_after_imports_mib": base, "peak_rss_mib": run.vm_status_mib("VmHWM")})
print(json.dumps(r))
"""


def _child(code: str, *args: str) -> dict:
    """Run `code` in a fresh Python, return the JSON of its last stdout line."""
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"benchmark child failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench_tile(quick: bool, tmp: Path) -> dict:
    """Ingest + inference over synthetic Sentinel-2-like tiles of two sizes, peak RSS of each."""
    from synthetic_region import FULL_TILE_PX, RegionSpec, write_region

    mode = "quick" if quick else "full"
    src = str(HERE.parent / "src")
    rows = []
    for size in TILE_SIZES[mode]:
        n = max(1, int(round(TILE_GLACIERS[mode] * (size / FULL_TILE_PX) ** 2)))
        raw, cubes = tmp / f"tile{size}" / "raw", tmp / f"tile{size}" / "cubes"
        # one acquisition: a tile is one scene (the growth benchmark has a recent epoch)
        spec = RegionSpec(size_px=size, n_glaciers=n, seed=7, epochs={"2016": "2016-08-28"},
                          inventory_epochs=("2016",))
        info = write_region(raw, spec)
        ing = _child(_TILE_INGEST_CHILD, str(raw), str(cubes), src)
        inf = _child(_TILE_INFER_CHILD, str(cubes), str(HERE))
        row = {"size_px": size, "area_km2": info["area_km2"], "glaciers": info["n_glaciers"],
               "glacier_km2": info["glacier_km2"], "raster_bytes": info["raster_bytes"],
               "raster_bytes_uncompressed": info["raster_bytes_uncompressed"], "write_s": info["seconds"],
               "ingest": ing, "inference": inf,
               "peak_rss_mib": max(ing["peak_rss_mib"], inf["peak_rss_mib"])}
        rows.append(row)
        log(f"  {size} px ({info['raster_bytes'] / 2**20:.0f} MiB on disk, {n} glaciers): ingest "
            f"{ing['seconds']:.1f}s peak {ing['peak_rss_mib']:.0f} MiB; inference {inf['seconds']:.1f}s "
            f"peak {inf['peak_rss_mib']:.0f} MiB, {inf['glacier_km2_per_s']:.3f} glacier km2/s")
        shutil.rmtree(tmp / f"tile{size}", ignore_errors=True)
    a, b = rows[0], rows[-1]
    return {"sizes_px": list(TILE_SIZES[mode]), "glaciers_per_full_tile": TILE_GLACIERS[mode],
            "model": f"{INFER_MODEL['name']} ({INFER_MODEL['encoder']}, random weights)", **INFER_WINDOW,
            "sensor_set": SENSOR_SET, "tiles": rows,
            "area_ratio": b["area_km2"] / a["area_km2"],
            "ingest_peak_ratio": b["ingest"]["peak_rss_mib"] / a["ingest"]["peak_rss_mib"],
            "inference_peak_ratio": b["inference"]["peak_rss_mib"] / a["inference"]["peak_rss_mib"],
            "peak_ratio": b["peak_rss_mib"] / a["peak_rss_mib"],
            "method": "synthetic raw region (benchmarks/synthetic_region.py: one scene, optical 6 bands "
                      "float32 + cloud mask at 10 m, DEM at 30 m, written strip by strip); ingest_region "
                      "(DataConfig defaults, workers=1, sensor groups optical + dem) and inference over every "
                      "cube, each in a fresh subprocess; peak = VmHWM of /proc/self/status"}


def area_change_seconds(long: list[dict], repeats: int = 3) -> tuple[float, dict]:
    """Best-of-`repeats` seconds of per_glacier_table + area_change_table + regional_summary."""
    import pandas as pd

    from glaciermap.analysis.area_change import area_change_table, regional_summary
    from glaciermap.inference.run import per_glacier_table

    frame = pd.DataFrame(long)
    best, summary = float("inf"), {}
    for _ in range(repeats):
        t = time.perf_counter()
        summary = regional_summary(area_change_table(per_glacier_table(frame)))
        best = min(best, time.perf_counter() - t)
    return best, summary


def bench_growth(quick: bool, tmp: Path) -> dict:
    """Ingest, inference and area change for regions of growing glacier count at constant density."""
    from glaciermap.config import DataConfig
    from glaciermap.data.ingest import ingest_region
    from synthetic_region import RegionSpec, size_for_density, write_region

    mode = "quick" if quick else "full"
    model = infer_model()
    rows = []
    for n in GROWTH_GLACIERS[mode]:
        root = tmp / f"growth{n}"
        spec = RegionSpec(size_px=size_for_density(n, GROWTH_KM2_PER_GLACIER), n_glaciers=n, seed=13)
        info = write_region(root / "raw", spec)
        t = time.perf_counter()
        index = ingest_region(root / "raw", root / "cubes", DataConfig(), _sensors(), progress=False)
        ingest_s = time.perf_counter() - t
        inf = infer_cubes(root / "cubes", model)
        ac_s, summary = area_change_seconds(inf.pop("long"))
        total = ingest_s + inf["seconds"] + ac_s
        rows.append({"glaciers": n, "size_px": spec.size_px, "area_km2": info["area_km2"],
                     "glacier_km2": info["glacier_km2"], "epochs": info["epochs"], "cubes": len(index),
                     "write_s": info["seconds"], "ingest_s": ingest_s, "inference_s": inf["seconds"],
                     "windows": inf["windows"], "area_change_s": ac_s, "total_s": total,
                     "per_glacier_s": {"ingest": ingest_s / n, "inference": inf["seconds"] / n,
                                       "area_change": ac_s / n, "total": total / n},
                     "kept_glaciers": summary.get("n_kept")})
        log(f"  {n} glaciers ({spec.size_px} px, {len(index)} cubes): ingest {ingest_s:.1f}s, inference "
            f"{inf['seconds']:.1f}s, area change {1000 * ac_s:.1f} ms -> {total / n:.2f} s/glacier")
        shutil.rmtree(root, ignore_errors=True)
    a, b = rows[0], rows[-1]
    ratios = {k: b["per_glacier_s"][k] / a["per_glacier_s"][k] if a["per_glacier_s"][k] > 0 else None
              for k in a["per_glacier_s"]}
    return {"glaciers": list(GROWTH_GLACIERS[mode]), "km2_per_glacier": GROWTH_KM2_PER_GLACIER,
            "model": f"{INFER_MODEL['name']} ({INFER_MODEL['encoder']}, random weights)", **INFER_WINDOW,
            "sensor_set": SENSOR_SET, "regions": rows, "per_glacier_ratio_largest_to_smallest": ratios,
            "method": "synthetic raw regions (benchmarks/synthetic_region.py: inventory + recent scene, same "
                      "glacier size mix for every count, scene side growing with the count) in this process: "
                      "ingest_region (workers=1), inference over every cube (prepare_cube, predict_cube, "
                      "glacier_stats; model built once, not timed), then per_glacier_table + "
                      "area_change_table + regional_summary (best of 3)"}


# --------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--device" in argv and argv[argv.index("--device") + 1] != "cpu":  # the GPU benchmark (benchmarks/gpu.py)
        import gpu

        return gpu.main(argv)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and few iterations (< 5 min, 2 cores)")
    ap.add_argument("--out", type=Path, default=HERE / "results", help="folder for the JSON results")
    ap.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma list of {', '.join(BENCHMARKS)}")
    ap.add_argument("--readme", type=Path, help="the markdown report (default: benchmarks/README.md for the "
                                                "default --out, else <out>/README.md: a scratch run leaves it alone)")
    ap.add_argument("--readme-only", action="store_true", help="only rebuild the README from the JSON")
    args = ap.parse_args(argv)
    if args.readme is None:
        default_out = args.out.resolve() == (HERE / "results").resolve()
        args.readme = HERE / "README.md" if default_out else args.out / "README.md"
    if args.readme_only:
        write_readme(args.out, args.readme)
        return 0
    only = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = set(only) - set(BENCHMARKS)
    if unknown:
        ap.error(f"unknown benchmark(s) {sorted(unknown)}; choose from {BENCHMARKS}")
    torch.set_num_threads(THREADS)
    mode = "quick" if args.quick else "full"
    t_all = time.perf_counter()
    log(f"load average at start: {os.getloadavg()} on {os.cpu_count()} CPUs, {THREADS} torch threads")

    def save(name: str, result: dict, t0: float) -> None:
        data = {"benchmark": name, "mode": mode, "machine": machine(),
                "wall_s": time.perf_counter() - t0, "result": result}
        write_json(args.out / f"{name}.json", data)
        log(f"[{name}] done in {data['wall_s']:.1f}s -> {args.out / (name + '.json')}")

    peak = None
    if "peak" in only:
        t0 = time.perf_counter()
        r = bench_peak(args.quick)
        peak = r["gflops_best"]
        log(f"  peak fp32: {peak:.1f} GFLOP/s ({r['source']}; mm {r['mm']['gflops_best']:.1f})")
        save("peak", r, t0)
    unet_pps = unet_batch = None
    if "models" in only:
        t0 = time.perf_counter()
        peak = peak or peak_gflops(args.out, args.quick)
        r = bench_models(args.quick, peak)
        unet = next(m for m in r["models"] if m["model"] == "unet")
        unet_pps, unet_batch = unet["train"]["patches_per_s"], unet["train_batch"]
        save("models", r, t0)
    need_region = {"loader", "inference"} & set(only)
    with tempfile.TemporaryDirectory(prefix="glaciermap-bench-") as tmpd:
        tmp = Path(tmpd)
        if need_region:
            t0 = time.perf_counter()
            region = build_region(tmp / "region", 4.0)
            log(f"  region 4x4 km: {len(region['index'])} cubes (simulate {region['simulate_s']:.1f}s, "
                f"ingest {region['ingest_s']:.1f}s, folds {region['folds_s']:.1f}s)")
            region_info = {k: region[k] for k in ("km", "simulate_s", "ingest_s", "folds_s")}
            region_info["cubes"] = len(region["index"])
            region_setup_s = time.perf_counter() - t0
        if "loader" in only:
            t0 = time.perf_counter()
            if unet_pps is None:
                prev = read_json(args.out / "models.json")
                if prev:
                    unet = next(m for m in prev["result"]["models"] if m["model"] == "unet")
                    unet_pps, unet_batch = unet["train"]["patches_per_s"], unet["train_batch"]
            r = bench_loader(args.quick, region, unet_pps, unet_batch)
            r["region"] = region_info
            r["region_setup_s"] = region_setup_s
            save("loader", r, t0)
        if "inference" in only:
            t0 = time.perf_counter()
            r = bench_inference(args.quick, region)
            r["region"] = region_info
            log(f"  predict_cube: {r['cube_km2_per_s']:.2f} cube km2/s, {r['glacier_km2_per_s']:.3f} glacier km2/s")
            save("inference", r, t0)
        if "memory" in only:
            t0 = time.perf_counter()
            save("memory", bench_memory(args.quick, tmp), t0)
        if "tile" in only:
            t0 = time.perf_counter()
            save("tile", bench_tile(args.quick, tmp), t0)
        if "growth" in only:
            t0 = time.perf_counter()
            save("growth", bench_growth(args.quick, tmp), t0)
    total = time.perf_counter() - t_all
    write_json(args.out / "run.json", {"benchmark": "run", "mode": mode, "machine": machine(),
                                        "benchmarks": only, "total_s": total})
    write_readme(args.out, args.readme)
    log(f"total {total:.1f}s ({mode}); README: {args.readme}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
