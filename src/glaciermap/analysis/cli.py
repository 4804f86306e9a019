"""`glaciermap area-change`: per-glacier and regional rates from the inference table."""

from __future__ import annotations

from pathlib import Path

from glaciermap.cli import arguments, command


@command("area-change", "per-glacier and regional area-change rates with the paper's filters")
@arguments(lambda p: (
    p.add_argument("--areas", type=Path, default=Path("products/predictions/areas.csv")),
    p.add_argument("--out", type=Path, default=Path("products/area_change")),
    p.add_argument("--metrics", type=Path, default=Path("metrics/area_change.json")),
))
def _area_change(args, params):
    import pandas as pd

    from glaciermap.analysis.area_change import area_change_table, compare_with_truth, regional_summary, write_outputs
    from glaciermap.analysis.change_figures import area_scatter_figure, rate_by_size_class_figure
    from glaciermap.errors import InputDataError
    from glaciermap.io import write_json

    if not args.areas.exists():
        raise InputDataError("area table missing", path=args.areas, hint="run `glaciermap infer` first")
    try:
        table = area_change_table(pd.read_csv(args.areas, dtype={"glacier_id": str}), params.area_change)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise InputDataError(f"cannot read the area table ({err})", path=args.areas,
                             hint="re-run `glaciermap infer`") from None
    except InputDataError as err:
        raise InputDataError(err.problem, path=err.path or args.areas, hint=err.hint) from None
    summary = regional_summary(table)
    truth_path = params.data.raw_dir / "truth" / "rates.csv"
    if truth_path.exists():  # simulated region: check against the known retreat
        import json

        truth = pd.read_csv(truth_path, dtype={"glacier_id": str})
        cmp = compare_with_truth(table, truth.rename(columns={"rate_pct_per_yr": "true_rate_pct_per_yr"}))
        true_regional = json.loads((params.data.raw_dir / "truth" / "regional.json").read_text())
        summary["truth"] = {**cmp, "true_regional_rate_pct_per_yr": true_regional["rate_pct_per_yr"],
                            "regional_rate_error_pct_per_yr":
                                summary["rate_pct_per_yr"] - true_regional["rate_pct_per_yr"]
                                if summary["rate_pct_per_yr"] is not None else None}
    write_outputs(table, summary, args.out)
    rate_by_size_class_figure(table, args.out / "rate_by_size_class.png")
    area_scatter_figure(table, args.out / "area_scatter.png")
    from glaciermap.analysis.figures import glacier_maps_figure
    from glaciermap.data.cubes import read_index

    largest = table.sort_values("area_inventory_km2", ascending=False).glacier_id.head(4).tolist()
    glacier_maps_figure(params.data.cubes_dir, args.areas.parent, read_index(params.data.cubes_dir), largest,
                        args.out / "glacier_maps.png")
    write_json(args.metrics, summary)
    from glaciermap.training.tracking import log_to_parent

    truth = summary.get("truth", {})
    log_to_parent(params, params.infer.model, params.infer.sensor_set,
                  {"area_change_rate_pct_per_yr": summary["rate_pct_per_yr"], "area_change_n_kept": summary["n_kept"],
                   "area_change_true_rate_pct_per_yr": truth.get("true_regional_rate_pct_per_yr"),
                   "area_change_rate_error_pct_per_yr": truth.get("regional_rate_error_pct_per_yr"),
                   "area_change_glacier_rate_r": truth.get("pearson_r")},
                  files=[args.out / n for n in ("area_change.csv", "rate_by_size_class.png", "area_scatter.png",
                                                "glacier_maps.png")],
                  payloads={"area_change_summary.json": summary})
    print(f"regional rate {summary['rate_pct_per_yr']} %/yr from {summary['n_kept']} of "
          f"{summary['n_total']} glaciers -> {args.out}")


# ------------------------------------------------------------------------ real-data benchmarks
@command("prepare-everest", "build a raw region from the real Everest Landsat scene and RGI outlines")
@arguments(lambda p: (
    p.add_argument("--source", type=Path, required=True,
                   help="folder with the LE7...B4/RGB GeoTIFFs and the RGI 6.0 outlines (real-everest)"),
    p.add_argument("--out", type=Path, help="region folder to write (default: data.raw_dir)"),
))
def _prepare_everest(args, params):
    from glaciermap.data.prepare_everest import prepare_everest_region

    out = prepare_everest_region(args.source, args.out or params.data.raw_dir)
    print(f"region written to {out}")


@command("benchmark", "held-out scores and per-glacier areas: trained models vs a band-threshold baseline")
@arguments(lambda p: (
    p.add_argument("--sensors", help="sensor set of the trained models (default: train.sensor_sets[0])"),
    p.add_argument("--baseline-band", required=True, help="band thresholded by the baseline (e.g. NIR)"),
    p.add_argument("--rgb", default="R,G,B", help="bands of the figure's background image (default R,G,B)"),
    p.add_argument("--out", type=Path, default=Path("metrics.json")),
    p.add_argument("--figure", type=Path, default=Path("predictions.png")),
    p.add_argument("--details", type=Path, default=Path("products/benchmark"),
                   help="folder for the per-glacier area tables"),
))
def _benchmark(args, params):
    import numpy as np
    from rasterio.enums import Resampling

    from glaciermap.analysis.benchmark import log_benchmark, run_benchmark
    from glaciermap.analysis.benchmark_figures import benchmark_figure
    from glaciermap.data.raw import open_region, read_on_grid
    from glaciermap.io import atomic_path, write_json

    sensor_set = args.sensors or params.train.sensor_sets[0]
    result, layout, probs, areas = run_benchmark(params, sensor_set, args.baseline_band, progress=not args.quiet)
    args.details.mkdir(parents=True, exist_ok=True)
    for name, table in areas.items():
        with atomic_path(args.details / f"areas_{name}.csv") as tmp:
            table.to_csv(tmp, index=False)
    write_json(args.out, result)
    region = open_region(params.data.raw_dir)
    scene = region.scene_path(region.manifest.inventory_epochs[0], "optical")
    rgb = np.moveaxis(read_on_grid(scene, args.rgb.split(","), layout.grid, resampling=Resampling.nearest), 0, -1)
    titles = {n: f"{n}: held-out IoU {m['heldout_pixels']['iou']:.3f} (cubes {m['iou']:.3f})"
              for n, m in result["methods"].items()}
    benchmark_figure(rgb, layout.labels, probs, titles, args.figure)
    log_benchmark(params, result, [args.out, args.figure, *args.details.glob("areas_*.csv")])
    for name, m in result["methods"].items():
        a = m["area"]
        print(f"{name:>16}: IoU {m['iou']:.3f} (held-out pixels {m['heldout_pixels']['iou']:.3f})  "
              f"precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
              f"area error median |{a['median_abs_error_pct']:.1f}| %, total {a['total_error_pct']:+.1f} %")
    print(f"-> {args.out}, {args.figure}")
