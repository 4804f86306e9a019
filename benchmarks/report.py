"""Rebuild benchmarks/README.md from benchmarks/results/*.json (no torch needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

INTRO = """# glaciermap benchmarks

Run from the repository root:

    .venv/bin/python benchmarks/run.py --quick     # all benchmarks, < 5 min on 2 CPU cores
    .venv/bin/python benchmarks/run.py             # larger sizes / more iterations
    .venv/bin/python benchmarks/run.py --only models,loader
    .venv/bin/python benchmarks/run.py --readme-only   # rebuild this file from the JSON

Every benchmark writes `benchmarks/results/<name>.json` (figures plus the machine: platform,
CPU model, torch version, threads, device, date). **Everything below this line is generated from
those files by `benchmarks/report.py`; do not edit it by hand.**

What is measured (all with `torch.set_num_threads(2)`, float32, CPU):

* **peak** – best of a few large float32 matrix products (`torch.mm`), the machine's practical
  FLOP/s ceiling; the model figures are given as a fraction of it.
* **models** – every model of `MODEL_NAMES` on the 9-channel `optical_dem` input: training step
  (forward + backward + AdamW, counted as 3x the forward FLOPs) and inference
  (`eval()`, `torch.inference_mode()`, batch 4) in default (contiguous) and `channels_last`
  memory format. FLOPs per patch come from `model_summary` (convolutions, matmuls, attention).
* **loader** – patches/s the training loader of `GlacierDataModule` delivers on a simulated and
  ingested 4x4 km region (k=2 folds, fold 0), for `num_workers` 0 and 2, against the patches/s
  U-Net consumes in training at the same patch size (from **models**). The loader figure is the
  slowest of two epochs, each timed whole: worker start-up and cold cube loading included.
* **inference** – `predict_cube` (256 px windows, stride 192, batch 8, no TTA) with a U-Net over
  the ingested cubes of that region.
* Timings are wall-clock on a shared machine: each result records the load average when it was
  saved; a load above the thread count means other processes competed for the cores and the
  figures are lower than the machine can do.
* **memory** – peak RSS of `ingest_region` in a fresh subprocess for two region sizes.
"""

BEGIN = "<!-- BEGIN GENERATED -->"


def _load(folder: Path, name: str) -> dict | None:
    try:
        return json.loads((folder / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def _machine(d: dict) -> str:
    m = d["machine"]
    return (f"*{d['benchmark']} ({d['mode']}): {m['cpu_model']}, {m['logical_cpus']} logical CPUs, "
            f"{m['platform']}, torch {m['torch']}, {m['threads']} threads, device {m['device']}, "
            f"{m['date']}, load average {m.get('loadavg_1_5_15', '?')} at the end, took {d['wall_s']:.0f} s*")


def _f(x, nd=2) -> str:
    if x is None:
        return "–"
    return f"{x:,.{nd}f}"


def _pct(x) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


def render(folder: Path) -> str:
    out = [INTRO, BEGIN, ""]
    run = _load(folder, "run")
    if run:
        m = run["machine"]
        out.append(f"Last run: `{run['mode']}` mode, benchmarks {', '.join(run['benchmarks'])}, "
                   f"total **{run['total_s']:.0f} s** on {m['cpu_model']} ({m['threads']} threads), "
                   f"{m['date']}.\n")

    peak = _load(folder, "peak")
    out.append("## Machine peak\n")
    if peak:
        r = peak["result"]
        out += ["| matrix | dtype | best GFLOP/s | median GFLOP/s |", "|---|---|---:|---:|",
                f"| {r['matrix_size']}x{r['matrix_size']} | {r['dtype']} | {_f(r['gflops_best'], 1)} | "
                f"{_f(r['gflops_median'], 1)} |", "", _machine(peak), ""]
    else:
        out.append("_not run_\n")

    models = _load(folder, "models")
    out.append("## Models\n")
    if models:
        r = models["result"]
        out += [f"Peak used for the fractions: {_f(r['peak_gflops'], 1)} GFLOP/s.\n",
                "| model | px | params (M) | GFLOP/patch | train patches/s (batch) | train % peak | "
                "infer patches/s | infer MP/s | infer % peak | channels_last patches/s | channels_last MP/s "
                "| channels_last speed-up |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for m in r["models"]:
            ic, il = m["inference"]["contiguous"], m["inference"]["channels_last"]
            out.append(
                f"| {m['model']} | {m['size']} | {m['params'] / 1e6:.1f} | {_f(m['gflops_per_patch'], 1)} | "
                f"{_f(m['train']['patches_per_s'])} ({m['train_batch']}) | {_pct(m['train']['fraction_of_peak'])} | "
                f"{_f(ic['patches_per_s'])} | {_f(ic['megapixels_per_s'])} | {_pct(ic['fraction_of_peak'])} | "
                f"{_f(il['patches_per_s'])} | {_f(il['megapixels_per_s'])} | {_f(m['channels_last_speedup'])}x |")
        out += ["", f"Inference batch {r['models'][0]['infer_batch']}. {r['note']}.", "", _machine(models), ""]
    else:
        out.append("_not run_\n")

    loader = _load(folder, "loader")
    out.append("## Data loader vs. U-Net training\n")
    if loader:
        r = loader["result"]
        unet = r.get("unet_train_patches_per_s")
        out += [f"Region {r['region_km']:g}x{r['region_km']:g} km, {r['train_cubes']} training cubes (fold 0), "
                f"{r['samples_per_epoch']} patches per epoch, sensor set {r['sensor_set']}. U-Net trains at "
                f"{_f(unet)} patches/s (batch {r.get('unet_train_batch')}).\n",
                "| num_workers | default | batch | px | loader patches/s (slowest epoch) | steady patches/s "
                "| first batch s | ratio loader / U-Net |",
                "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for s in r["settings"]:
            steady = min(e["steady_patches_per_s"] for e in s["epochs"])
            first = max(e["first_batch_s"] for e in s["epochs"])
            out.append(f"| {s['num_workers']} | {'yes' if s['default_setting'] else ''} | {s['batch_size']} | "
                       f"{s['size']} | {_f(s['patches_per_s'], 1)} | {_f(steady, 1)} | {_f(first)} | "
                       f"{_f(s.get('ratio_to_unet_train'), 1)}x |")
        if "default_faster_than_unet" in r:
            ok = r["settings_faster_than_unet"]
            out += ["", f"Loader faster than U-Net training at the default setting "
                        f"(num_workers={r['default_num_workers']}): **{'yes' if r['default_faster_than_unet'] else 'no'}**; "
                        f"settings with ratio > 1: num_workers {', '.join(map(str, ok)) or 'none'}."]
        out += ["", _machine(loader), ""]
    else:
        out.append("_not run_\n")

    inf = _load(folder, "inference")
    out.append("## Whole-cube inference (predict_cube)\n")
    if inf:
        r = inf["result"]
        out += ["| model | cubes | windows | seconds | cube km² | cube km²/s | glacier km² | glacier km²/s | "
                "windows/s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
                f"| {r['model']} | {r['cubes']} ({', '.join(r['roles'])}) | {r['windows']} | {_f(r['seconds'], 1)} | "
                f"{_f(r['cube_km2'])} | {_f(r['cube_km2_per_s'], 3)} | {_f(r['glacier_km2'])} | "
                f"{_f(r['glacier_km2_per_s'], 3)} | {_f(r['windows_per_s'])} |",
                "", f"{r['size']} px windows, stride {r['stride']}, batch {r['batch_size']}, TTA {r['tta']}. "
                    f"{r['note']}.", "", _machine(inf), ""]
    else:
        out.append("_not run_\n")

    mem = _load(folder, "memory")
    out.append("## Ingest memory\n")
    if mem:
        r = mem["result"]
        out += ["| region | km² | glaciers | cubes | largest cube (px) | ingest s | RSS after imports MiB | "
                "peak RSS MiB | ingest increment MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for g in r["regions"]:
            out.append(f"| {g['region_km']} km | {g['region_km2']} | {g['glaciers']} | {g['cubes']} | "
                       f"{g['max_cube_pixels']:,} | {_f(g['ingest_s'], 1)} | {_f(g['rss_after_imports_mib'], 0)} | "
                       f"{_f(g['peak_rss_mib'], 0)} | {_f(g['ingest_increment_mib'], 0)} |")
        out += ["", f"{r['method']}. Area grows {r['area_ratio_largest_to_smallest']:.0f}x, peak RSS "
                    f"{r['peak_ratio_largest_to_smallest']:.2f}x.", "", _machine(mem), ""]
    else:
        out.append("_not run_\n")
    return "\n".join(out).rstrip() + "\n"


def write_readme(folder: Path, readme: Path) -> Path:
    text = render(Path(folder))
    tmp = readme.with_name(f".{readme.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, readme)
    return readme


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    write_readme(here / "results", here / "README.md")
