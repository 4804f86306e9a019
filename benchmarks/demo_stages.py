"""Per-stage wall time of the last demo run (`scripts/demo.sh`), from its outputs' timestamps,
and the disk the demo leaves behind (`disk_footprint`; target: under 1 GB). The footprint is the
checkout's folders as they are: the DVC cache and the MLflow artifacts keep every earlier run's
outputs too, so only a fresh clone after one demo measures one demo.

DVC does not time stages, so each stage's duration is the time between its last output and the
previous stage's (outputs are written atomically at a stage's end). Writes
benchmarks/results/demo_stages.json; run from the repository root after `scripts/demo.sh`
(which records its start time in .demo_start).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

#: (stage, file written last by it), in pipeline order; train/evaluate use every matching file.
STAGES = [("simulate", "data/region.yaml"), ("ingest", "products/cubes/index.csv"),
          ("train", "metrics/train/*.json"), ("evaluate", "metrics/evaluate/*.json"),
          ("register", "products/registry.json"), ("infer", "products/predictions/areas.csv"),
          ("area_change", "metrics/area_change.json")]


def stage_times(root: Path, start: float) -> list[dict]:
    """Seconds per stage (folds, ~1 s, is counted in train: DVC may touch folds.json later), listed
    in pipeline order. DVC runs independent stages in an order of its own (register may finish
    before evaluate), so each stage's time runs from the end of the stage that finished just
    before it, not of the one listed before it.

    A stage whose outputs predate the start did not run in this demo (data pulled or simulated
    before, stage up to date): it is listed with `seconds: null` and `reused: true`.
    """
    rows, ends = {}, {}
    for stage, pattern in STAGES:
        files = sorted(root.glob(pattern))
        if not files:
            continue
        end = max(f.stat().st_mtime for f in files)
        rows[stage] = {"stage": stage, "seconds": None, "outputs": len(files)}
        if end < start:
            rows[stage]["reused"] = True
        else:
            ends[stage] = end
    prev = start
    for stage, end in sorted(ends.items(), key=lambda kv: kv[1]):
        rows[stage]["seconds"] = round(end - prev, 1)
        prev = end
    return list(rows.values())


#: what the demo leaves on disk besides its inputs: run folders, the DVC cache, MLflow's artifacts
FOOTPRINT = ("runs", ".dvc/cache", "mlruns", "products", "mlflow.db")


def disk_footprint(root: Path) -> dict[str, int]:
    """Bytes under each of FOOTPRINT (like `du -sb`; absent: 0), and their total."""
    sizes = {}
    for name in FOOTPRINT:
        path = root / name
        files = [path] if path.is_file() else (p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        sizes[name] = sum(f.stat().st_size for f in files) if path.exists() else 0
    return {**sizes, "total": sum(sizes.values())}


def main() -> None:
    from machine import machine  # benchmarks/, beside this file (they import torch)
    from run import bench_peak  # at torch's default threads, those the demo trained with

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", type=Path, default=Path("."))
    ap.add_argument("--start", type=float, help="demo start (epoch s); default: the content of .demo_start")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/demo_stages.json"))
    args = ap.parse_args()
    start = args.start or float((args.root / ".demo_start").read_text())
    rows = stage_times(args.root, start)
    index = pd.read_csv(args.root / "products/cubes/index.csv")
    infer_s = next(r["seconds"] for r in rows if r["stage"] == "infer")
    glacier_km2 = float(index["area_km2"].sum())  # inventory outline area of every predicted cube
    result = {"benchmark": "demo_stages", "stages": rows, "total_s": round(sum(r["seconds"] or 0.0 for r in rows), 1),
              "infer_glacier_km2": glacier_km2, "infer_glacier_km2_per_s": glacier_km2 / infer_s,
              "disk_bytes": disk_footprint(args.root),
              "disk_scope": "this checkout's folders: the DVC cache and MLflow artifacts of every run since it "
                            "was cloned, not of the last demo alone",
              "method": "stage end = newest output's mtime; infer includes loading the fold models from "
                        "the MLflow registry",
              # training is most of the demo and runs at the cores' float32 peak: the same 2 cores
              # measure 146-175 GFLOP/s with AVX2 (AMD EPYC, 2026-12-01) and 516 with AVX-512
              # (2026-11-25), so a demo time means little without the peak it ran at
              "machine": {**machine(), "peak_gflops": round(bench_peak(quick=True)["gflops_best"], 1)}}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
