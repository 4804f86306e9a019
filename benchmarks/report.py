"""Rebuild benchmarks/README.md from benchmarks/results/*.json (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

from glaciermap.io import write_text

INTRO = """# glaciermap benchmarks

Run from the repository root:

    .venv/bin/python benchmarks/run.py --quick     # all benchmarks, < 5 min on 2 CPU cores (85 s idle, 2026-11-25)
    .venv/bin/python benchmarks/run.py             # larger sizes / more iterations
    .venv/bin/python benchmarks/run.py --only models,loader
    .venv/bin/python benchmarks/run.py --readme-only   # rebuild this file from the JSON
    .venv/bin/python benchmarks/validity.py            # validity over 7 regions, end to end (45-60 min)
    .venv/bin/python benchmarks/validity.py --smoke    # its plumbing: one tiny region (about 2 min)

Every benchmark writes `benchmarks/results/<name>.json` (figures plus the machine: platform,
CPU model, torch version, threads, device, date). **Everything below this line is generated from
those files by `benchmarks/report.py`; do not edit it by hand.**

What is measured (all with `torch.set_num_threads(2)`, float32, CPU):

* **peak** – the machine's practical float32 FLOP/s ceiling: the best of a large matrix product
  through BLAS (`torch.mm`) and 1x1 and 3x3 convolutions through oneDNN, channels_last (the
  library and layout that run the models' convolutions fastest; on AMD CPUs the BLAS path reaches
  about half of oneDNN, and measured against it alone the models seemed to run above the peak);
  the model figures are given as a fraction of it.
* **models** – every model of `MODEL_NAMES` on the 9-channel `optical_dem` input: training step
  (forward + backward + AdamW, counted as 3x the forward FLOPs) and inference
  (`eval()`, `torch.inference_mode()`, batch 4) in default (contiguous) and `channels_last`
  memory format. FLOPs per patch come from `model_summary` (convolutions, matmuls, attention).
* **loader** – patches/s the training loader of `GlacierDataModule` delivers on a simulated and
  ingested 4x4 km region (k=2 folds, fold 0), for `num_workers` 0 and 2, against the patches/s
  U-Net consumes in training at the same patch size (from **models**). The loader figure is the
  slowest of two epochs, each timed whole: worker start-up and cold cube loading included.
* **inference** – `predict_cube` (256 px windows, stride 192, batch 8, no TTA, `inference_mode`,
  channels_last: the default for the CNN models since the **models** table showed it 1.2-1.3x
  faster) with a U-Net over the ingested cubes of that region.
* **memory** – peak RSS of `ingest_region` in a fresh subprocess for two region sizes.
* **demo_stages** – wall time per stage of the last `scripts/demo.sh` run and `glaciermap infer`'s
  km² of glacier per second, from the stage outputs' timestamps (`benchmarks/demo_stages.py`).
* **tile** – ingest and inference over a synthetic full Sentinel-2 tile (10,980 x 10,980 px at
  10 m; `--quick`: 2,745 and 5,490 px, full: 5,490 and 10,980 px), built strip by strip by
  `benchmarks/synthetic_region.py` in the raw-region format (one scene: 6-band float32 optical and
  cloud mask at 10 m, 30 m DEM, a few hundred blob outlines of 0.1-5 km² on the full tile, fewer
  pro rata on smaller ones; `--quick` uses 1/8 of that density to fit its time budget). Each stage
  runs in a fresh subprocess: `ingest_region` (defaults, sensor groups optical + dem) and
  inference over every cube with a random-init U-Net (resnet18 encoder, `prepare_cube` +
  `predict_cube` + `glacier_stats`). Peak RSS (VmHWM) of each, raster size on disk, glacier km²
  per second of inference; the ratio of peak RSS between the two sizes should stay ~1 (memory
  bounded by one glacier's cube, not by the tile) and every peak well under 8 GiB. The full mode
  (64 + 256 glaciers) took 160 s on 2 idle cores (2026-11-25), most of it U-Net inference.
* **growth** – the same builder with the glacier count as the variable (`--quick`: 1, 2, 4;
  full: 50, 200, 800 glaciers, one per 10 km², inventory + recent scene, one size mix for every
  count): time of ingest, inference (as in **tile**, model built once) and area change
  (`per_glacier_table` + `area_change_table` + `regional_summary`, best of 3) per glacier. A
  ratio of per-glacier cost largest / smallest region of ~1 means the cost grows linearly with
  the number of glaciers (below 1: a fixed per-region cost being amortised). `--quick` regions are
  tiny, so its ratios mostly show load noise; the full mode (1,050 glaciers, ~10 U-Net windows
  each) took 822 s on 2 idle cores (2026-11-25).
* **validity** – whether the area-change uncertainty is calibrated (issue #16): 8 simulated
  regions, each with its own seed and regime (the demo; debris-heavy, `debris_fraction` 0.6;
  cloudy, `cloud_cover` 0.15; low sun, 25 deg; fast retreat, -3 %/yr; slow retreat, -0.5 %/yr;
  the demo's settings on seed 7; real terrain and outlines: 12 x 12 km of `hef_srtm.tif` with
  `rgi7g_hef_complex.shp` from `../shared/data` or `--shared-data`; when they are absent the run
  stops before any stage with one line naming the file), each run end to end through the CLI
  (simulate, ingest, folds, train per fold, evaluate, register, infer, area-change) in its own
  work folder (`--work`, default /tmp/glaciermap-validity/<region>: params.yaml, data, runs,
  `mlflow.db` + `mlruns/`, stage logs; never the project's) with the demo's params.yaml reduced
  for 2 cores: **3 folds of 5 epochs** (`--folds`, `--max-epochs`; the demo trains 5 x 8), demo
  region size (8 x 6 km, 20 glaciers); `--regions a,b` runs a subset and replaces only those
  rows, `--seeds 0,1` sets `train.seeds` (ensemble members, x the training time). Per region:
  the kept-glacier regional rate ± sigma (independent; the fully correlated sigma beside it) and
  the region-wide rate with extrapolation ± sigma against the simulator's **all-glacier** truth
  (`truth/regional.json`), the kept glaciers' own truth (`true_kept_rate_pct_per_yr`: the gap
  to the all-glacier truth is selection, not model), per-glacier coverage (fraction of kept
  glaciers whose true rate, `truth/rates.csv`, lies within 1 and 2 sigma of the estimate,
  `area_change.csv` `rate_pct_per_yr` ± `rate_sigma_pct_per_yr`), r of the kept glaciers'
  rates against the true ones, mean test IoU, wall time per stage. Pooled: coverage over every
  region's kept glaciers, median and max |est - true|, the fraction of regions within 2 sigma,
  the largest sigma and region-wide error, each against the issue's target with pass / fail.
  Figures the pipeline does not write yet (sigma before #16's uncertainty work) are null, and so
  is the verdict on their targets.
* Timings are wall-clock on a shared 2-core machine where other work (training runs, tests) is
  often running: every result records the 1/5/15-minute load average when it was saved; a load
  above the thread count means other processes competed for the cores and the figures are lower
  than the machine can do. Compare figures only at similar load.
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


def _peak_section(r: dict) -> list[str]:
    """Machine peak: the lines between the heading and the machine line."""
    out: list[str] = []
    rows = [("mm", f"`torch.mm` {r['matrix_size']}x{r['matrix_size']}", r.get("mm", r))]
    rows += [(k, f"{r[k]['kernel']}x{r[k]['kernel']} conv (oneDNN, channels_last), batch {r[k]['batch']}, "
                 f"{r[k]['channels']} channels, {r[k]['pixels']:,} px", r[k])
             for k in ("conv1x1", "conv3x3") if k in r]
    out += ["| product | dtype | best GFLOP/s | median GFLOP/s | used as peak |", "|---|---|---:|---:|---|"]
    out += [f"| {label} | {r['dtype']} | {_f(x['gflops_best'], 1)} | {_f(x['gflops_median'], 1)} | "
            f"{'yes' if r.get('source', 'mm') == key else ''} |" for key, label, x in rows]
    return out


def _models_section(r: dict) -> list[str]:
    """Models: the lines between the heading and the machine line."""
    out: list[str] = []
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
    out += ["", f"Inference batch {r['models'][0]['infer_batch']}. {r['note']}."]
    return out


def _loader_section(r: dict) -> list[str]:
    """Data loader vs. U-Net training: the lines between the heading and the machine line."""
    out: list[str] = []
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
    return out


def _inference_section(r: dict) -> list[str]:
    """Whole-cube inference (predict_cube): the lines between the heading and the machine line."""
    out: list[str] = []
    out += ["| model | cubes | windows | seconds | cube km² | cube km²/s | glacier km² | glacier km²/s | "
            "windows/s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {r['model']} | {r['cubes']} ({', '.join(r['roles'])}) | {r['windows']} | {_f(r['seconds'], 1)} | "
            f"{_f(r['cube_km2'])} | {_f(r['cube_km2_per_s'], 3)} | {_f(r['glacier_km2'])} | "
            f"{_f(r['glacier_km2_per_s'], 3)} | {_f(r['windows_per_s'])} |",
            "", f"{r['size']} px windows, stride {r['stride']}, batch {r['batch_size']}, TTA {r['tta']}. "
                f"{r['note']}."]
    return out


def _memory_section(r: dict) -> list[str]:
    """Ingest memory: the lines between the heading and the machine line."""
    out: list[str] = []
    out += ["| region | km² | glaciers | cubes | largest cube (px) | ingest s | RSS after imports MiB | "
            "peak RSS MiB | ingest increment MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in r["regions"]:
        out.append(f"| {g['region_km']} km | {g['region_km2']} | {g['glaciers']} | {g['cubes']} | "
                   f"{g['max_cube_pixels']:,} | {_f(g['ingest_s'], 1)} | {_f(g['rss_after_imports_mib'], 0)} | "
                   f"{_f(g['peak_rss_mib'], 0)} | {_f(g['ingest_increment_mib'], 0)} |")
    out += ["", f"{r['method']}. Area grows {r['area_ratio_largest_to_smallest']:.0f}x, peak RSS "
                f"{r['peak_ratio_largest_to_smallest']:.2f}x."]
    return out


def _tile_section(r: dict) -> list[str]:
    """Tile scale: ingest and inference memory: the lines between the heading and the machine line."""
    out: list[str] = []
    out += ["| tile px | km² | rasters on disk MiB (raw) | glaciers | glacier km² | cubes | ingest s | "
            "ingest peak RSS MiB | inference s | windows | glacier km²/s | inference peak RSS MiB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in r["tiles"]:
        ing, inf = t["ingest"], t["inference"]
        out.append(f"| {t['size_px']:,} | {_f(t['area_km2'], 0)} | {_f(t['raster_bytes'] / 2**20, 0)} "
                   f"({_f(t['raster_bytes_uncompressed'] / 2**20, 0)}) | {t['glaciers']} | "
                   f"{_f(t['glacier_km2'], 1)} | {ing['cubes']} | {_f(ing['seconds'], 1)} | "
                   f"{_f(ing['peak_rss_mib'], 0)} | {_f(inf['seconds'], 1)} | {inf['windows']} | "
                   f"{_f(inf['glacier_km2_per_s'], 3)} | {_f(inf['peak_rss_mib'], 0)} |")
    worst = max(t["peak_rss_mib"] for t in r["tiles"])
    out += ["", f"Tile area grows {r['area_ratio']:.0f}x; peak RSS ratio largest / smallest tile: ingest "
                f"**{r['ingest_peak_ratio']:.2f}x**, inference **{r['inference_peak_ratio']:.2f}x**. Highest "
                f"peak {worst / 1024:.2f} GiB ({'well under' if worst < 4096 else 'under' if worst < 8192 else 'OVER'}"
                f" 8 GiB). Model {r['model']}, {r['size']} px windows, stride {r['stride']}, batch "
                f"{r['batch_size']}, sensor set {r['sensor_set']}; {r['glaciers_per_full_tile']} glaciers "
                f"per full tile, scaled by area. {r['method']}."]
    return out


def _growth_section(r: dict) -> list[str]:
    """Cost growth with the number of glaciers: the lines between the heading and the machine line."""
    out: list[str] = []
    out += ["| glaciers | scene px | km² | cubes | windows | windows/glacier | ingest s | inference s | "
            "inference s/window | area change ms | ingest s/glacier | inference s/glacier | "
            "area change ms/glacier | total s/glacier |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for g in r["regions"]:
        pg = g["per_glacier_s"]
        out.append(f"| {g['glaciers']} | {g['size_px']:,} | {_f(g['area_km2'], 0)} | {g['cubes']} | "
                   f"{g['windows']} | {_f(g['windows'] / g['glaciers'], 1)} | {_f(g['ingest_s'], 1)} | "
                   f"{_f(g['inference_s'], 1)} | {_f(g['inference_s'] / max(g['windows'], 1), 3)} | "
                   f"{_f(1000 * g['area_change_s'], 1)} | {_f(pg['ingest'], 3)} | {_f(pg['inference'], 3)} | "
                   f"{_f(1000 * pg['area_change'], 3)} | {_f(pg['total'], 3)} |")
    q = r["per_glacier_ratio_largest_to_smallest"]
    a, b = r["regions"][0], r["regions"][-1]
    wq = (b["windows"] / b["glaciers"]) / (a["windows"] / a["glaciers"])
    out += ["", f"Per-glacier cost, largest / smallest region ({r['glaciers'][-1]} / {r['glaciers'][0]} "
                f"glaciers): ingest **{_f(q['ingest'])}x**, inference **{_f(q['inference'])}x**, area change "
                f"**{_f(q['area_change'])}x**, total **{_f(q['total'])}x** (1 = linear growth); the work "
                f"itself, U-Net windows per glacier, {_f(wq)}x, so the rest of a departure from 1 in "
                f"inference is the machine's load changing between the regions (s/window). Model "
                f"{r['model']}, {r['size']} px windows, stride {r['stride']}, batch {r['batch_size']}; one "
                f"glacier per {r['km2_per_glacier']:g} km². {r['method']}."]
    return out


#: (results file, heading, body) of every benchmark section, in README order
SECTIONS = [
    ("peak", "Machine peak", _peak_section),
    ("models", "Models", _models_section),
    ("loader", "Data loader vs. U-Net training", _loader_section),
    ("inference", "Whole-cube inference (predict_cube)", _inference_section),
    ("memory", "Ingest memory", _memory_section),
    ("tile", "Tile scale: ingest and inference memory", _tile_section),
    ("growth", "Cost growth with the number of glaciers", _growth_section),
]


def render(folder: Path) -> str:
    out = [INTRO, BEGIN, ""]
    run = _load(folder, "run")
    if run:
        m = run["machine"]
        out.append(f"Last run: `{run['mode']}` mode, benchmarks {', '.join(run['benchmarks'])}, "
                   f"total **{run['total_s']:.0f} s** on {m['cpu_model']} ({m['threads']} threads), "
                   f"{m['date']}.\n")
    timed = {n: _load(folder, n) for n, _, _ in SECTIONS}
    quick = {n: d["wall_s"] for n, d in timed.items() if d and d.get("mode") == "quick"}
    full = [n for n, d in timed.items() if d and d.get("mode") != "quick"]
    if quick:
        out.append(f"Quick-mode results on file: {', '.join(f'{n} {s:.0f} s' for n, s in quick.items())}; "
                   f"sum **{sum(quick.values()):.0f} s** (each at the load average it records)"
                   + (f"; full-mode results on file for {', '.join(full)}" if full else "") + ".\n")

    for name, title, section in SECTIONS:
        d = timed[name]
        out.append(f"## {title}\n")
        out += section(d["result"]) + ["", _machine(d), ""] if d else ["_not run_\n"]
    out += _demo_stages(_load(folder, "demo_stages"))
    out += validity_lines(_load(folder, "validity"))
    return "\n".join(out).rstrip() + "\n"


def _demo_stages(d: dict | None) -> list[str]:
    out = ["## Demo pipeline, per stage\n"]
    if not d:
        return out + ["_not run_ (`scripts/demo.sh`, then `.venv/bin/python benchmarks/demo_stages.py`)\n"]
    out += ["| stage | seconds |", "|---|---:|"]
    out += [f"| {r['stage']} | {'not run (output up to date)' if r.get('reused') else _f(r['seconds'], 1)} |"
            for r in d["stages"]]
    m = d["machine"]
    out += ["", f"Total **{_f(d['total_s'], 0)} s**; `glaciermap infer` covered {_f(d['infer_glacier_km2'], 1)} km² "
                f"of glacier (inventory outlines, every glacier and epoch) at **{_f(d['infer_glacier_km2_per_s'])} "
                f"km²/s**. {d['method']}.", "",
            f"*demo_stages: {m['logical_cpus']} logical CPUs, {m['platform']}, {m['date']}, load average "
            f"{m['loadavg_1_5_15']} when the timestamps were read (not during the run)*", ""]
    return out


def _pm(x, s, nd=2) -> str:
    return _f(x, nd) + ("" if s is None else f" ± {_f(s, nd)}")


def _err(row: dict, key: str) -> float | None:
    est, true = row.get(key), row.get("true_rate_pct_per_yr")
    return None if est is None or true is None else est - true


def _budget_lines(rows: list[dict]) -> list[str]:
    """The kept glaciers' change budget per region (validity.change_budget), where measured."""
    rows = [r for r in rows if r.get("change_budget")]
    if not rows:
        return []
    out = ["", "Where the estimated loss departs from the true one (kept glaciers, inside their inventory "
               "outlines, km²): est loss = true loss - (missed at inventory - missed at recent) + "
               "(false at inventory - false at recent).", "",
           "| region | true loss | est loss | recovered | missed inv (debris) | missed recent (debris) | "
           "false recent (forefield) |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = r["change_budget"]
        out.append(f"| {r['name']} | {_f(b['true_loss_km2'])} | {_f(b['est_loss_km2'])} | "
                   f"{_pct(b['loss_recovered'])} | {_f(b['missed_inventory_km2'])} ({_f(b['missed_debris_inventory_km2'])}) | "
                   f"{_f(b['missed_recent_km2'])} ({_f(b['missed_debris_recent_km2'])}) | "
                   f"{_f(b['false_recent_km2'])} ({_f(b['false_forefield_recent_km2'])}) |")
    return out


def validity_lines(d: dict | None) -> list[str]:
    """Validity over regions (benchmarks/validity.py): one row per region, then the pooled targets."""
    out = ["## Validity over regions (calibrated area change)\n"]
    if not d:
        return out + ["_not run_ (`.venv/bin/python benchmarks/validity.py`, about 45-60 min)\n"]
    out += ["| region | seed | true %/yr | est ± σ %/yr | est - true | σ correlated | region-wide ± σ | "
            "rw - true | kept / glaciers | cover 1σ | cover 2σ | r | test IoU (worst fold) | debris IoU | wall s |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in d["regions"]:
        if "skipped" in r or "error" in r:
            why = str(r.get("skipped") or r.get("error")).replace("|", "/")
            out.append(f"| {r['name']} | {r['seed']} | {'skipped' if 'skipped' in r else 'FAILED'}: {why} |"
                       + " |" * 11 + f" {_f(r.get('wall_s'), 0)} |")
            continue
        out.append(
            f"| {r['name']}{' (held out)' if r.get('held_out') else ''} | {r['seed']} | "
            f"{_f(r['true_rate_pct_per_yr'])} | "
            f"{_pm(r['est_rate_pct_per_yr'], r['sigma_pct_per_yr'])} | {_f(_err(r, 'est_rate_pct_per_yr'))} | "
            f"{_f(r.get('sigma_correlated_pct_per_yr'))} | "
            f"{_pm(r['regionwide_rate_pct_per_yr'], r['regionwide_sigma_pct_per_yr'])} | "
            f"{_f(_err(r, 'regionwide_rate_pct_per_yr'))} | {r['n_kept']} / {r['n_glaciers']} | "
            f"{_pct(r['glacier_cover_1sigma'])} | {_pct(r['glacier_cover_2sigma'])} | {_f(r['glacier_r'])} | "
            f"{_f(r['test_iou_mean'], 3)} ({_f(r.get('test_iou_min_fold'), 3)}) | "
            f"{_f(r.get('debris_iou_mean'), 3)} | {_f(r.get('wall_s'), 0)} |")
    out += _budget_lines(d["regions"])
    p = d["pooled"]
    out += ["", f"Pooled over {p['n_regions']} region(s) and {p['n_glaciers_kept']} kept glaciers "
                f"({p['n_glaciers_with_sigma']} with a sigma); fraction of regions within 2σ under fully "
                f"correlated errors: {_pct(p['fraction_within_2sigma_correlated'])}.", "",
            "| target | value | bound | pass |", "|---|---:|---|---|"]
    verdict = {True: "yes", False: "**no**", None: "–"}
    out += [f"| {t['what']} | {_f(t['value'])} | {t['target']} | {verdict[t['pass']]} |" for t in p["targets"]]
    fit = p.get("uncertainty_fit")
    if fit:
        def tested(entries: list[dict]) -> str:
            return ", ".join(f"{x['name']} {x['z']:+.2f}" for x in entries)

        out += ["", f"Uncertainty model the errors call for (maximum likelihood over {fit['n_regions']} regions and "
                    f"{fit['n_glaciers']} kept glaciers, held-out regions left out): sigma_scale k = "
                    f"{fit['sigma_scale']:.2f}, band_correlation ρ = {fit['band_correlation']:.2f}, discrepancy τ = "
                    f"{fit['discrepancy_pct_per_yr']:.3f} %/yr. Each region with the numbers fitted on the others, "
                    f"z = (est - true) / σ: {tested(fit['leave_one_out'])}; within 2σ: "
                    f"{_pct(fit['leave_one_out_within_2sigma'])}; its glaciers within 1σ / 2σ: "
                    f"{_pct(fit['leave_one_out_glacier_cover_1sigma'])} / "
                    f"{_pct(fit['leave_one_out_glacier_cover_2sigma'])}."]
        if fit.get("held_out"):
            out += ["", f"Held-out regions (fresh seeds, never fitted on), with the numbers above: "
                        f"{tested(fit['held_out'])}; within 2σ: {_pct(fit['held_out_within_2sigma'])}; their "
                        f"glaciers within 1σ / 2σ: {_pct(fit['held_out_glacier_cover_1sigma'])} / "
                        f"{_pct(fit['held_out_glacier_cover_2sigma'])}."]
    used = sorted({tuple(r.get(k) for k in ("sigma_scale", "band_correlation", "discrepancy_pct_per_yr"))
                   for r in d["regions"] if "error" not in r and "skipped" not in r}, key=str)
    sigma = ("σ = " + "; ".join(f"k = {1 if k is None else k:g}, ρ = {rho or 0:g}, τ = {tau or 0:g} %/yr"
                                 for k, rho, tau in used)
             + " (area_change.sigma_scale, band_correlation, discrepancy_pct_per_yr)")
    s = d["regions"][0].get("settings", {}) if d["regions"] else {}
    m = d["machine"]
    out += ["", f"Settings ({d['mode']}): {s.get('folds')} folds x {s.get('max_epochs')} epochs of "
                f"{s.get('samples_per_epoch')} patches, seeds {s.get('seeds') or 'params.yaml'}, "
                f"{s.get('model')} on {s.get('sensor_set')}; true = the simulator's all-glacier rate; "
                f"{sigma}. {d['method']}.", "",
            f"*validity ({d['mode']}): {m['cpu_model']}, {m['logical_cpus']} logical CPUs, {m['platform']}, "
            f"torch {m['torch']}, jobs {m['jobs']}, {m['date']}, load average {m['loadavg_1_5_15']} at the end, "
            f"took {d['wall_s']:.0f} s*", ""]
    return out


def write_readme(folder: Path, readme: Path) -> Path:
    return write_text(readme, render(Path(folder)))


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    write_readme(here / "results", here / "README.md")
