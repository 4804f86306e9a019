"""Commands of the analysis stages: evaluate, area-change, inventory-change, inventory-compare, benchmark."""

from __future__ import annotations

from pathlib import Path

from glaciermap.commands import Command


def _evaluate_args(p):
    p.add_argument("--model", required=True, help="key under models: in params.yaml")
    p.add_argument("--sensors", required=True, help="sensor set name")
    p.add_argument("--out", type=Path, help="JSON output (default metrics/evaluate/<model>_<sensors>.json)")


def _evaluate(args, params):
    from glaciermap.analysis.evaluate import evaluate, log_evaluation
    from glaciermap.io import write_json

    result = evaluate(params, args.model, args.sensors, progress=not args.quiet)
    out = args.out or Path("metrics/evaluate") / f"{args.model}_{args.sensors}.json"
    write_json(out, result)
    log_evaluation(params, result)
    m = result["mean"]
    print(f"{args.model}/{args.sensors}: test IoU {m['iou_mean']:.3f} +- {m['iou_std']:.3f} over "
          f"{len(result['folds'])} folds -> {out}")


def _area_change_args(p):
    p.add_argument("--areas", type=Path, default=Path("products/predictions/areas.csv"))
    p.add_argument("--out", type=Path, default=Path("products/area_change"))
    p.add_argument("--metrics", type=Path, default=Path("metrics/area_change.json"))


def _area_change(args, params):
    from glaciermap.analysis.area_change_stage import area_change_stage
    from glaciermap.io import check_writable

    check_writable(args.out, folder=True)
    check_writable(args.metrics)
    summary = area_change_stage(params, args.areas, args.out, args.metrics)
    print(f"regional rate {summary['rate_pct_per_yr']} %/yr from {summary['n_kept']} of "
          f"{summary['n_total']} glaciers -> {args.out}")


def _inventory_change_args(p):
    p.add_argument("old", type=Path, help="older outline inventory (any vector format and CRS)")
    p.add_argument("new", type=Path, help="newer outline inventory of the same glaciers")
    p.add_argument("--id-column", required=True, help="glacier id column, the same ids in both files")
    p.add_argument("--date-column", required=True, help="date column (ISO date, year or RGI YYYYMMDD)")
    p.add_argument("--new-id-column", help="id column of NEW when it differs")
    p.add_argument("--new-date-column", help="date column of NEW when it differs")
    p.add_argument("--out", type=Path, default=Path("products/inventory_change"))


def _inventory_change(args, params):
    from glaciermap.analysis.inventory_change import inventory_change_stage

    s = inventory_change_stage(args.old, args.new, args.out, params.area_change, id_column=args.id_column,
                               date_column=args.date_column, new_id_column=args.new_id_column,
                               new_date_column=args.new_date_column)
    print(f"regional rate {s['rate_pct_per_yr']} %/yr from {s['n_kept']} of {s['n_total']} glaciers -> {args.out}")


def _inventory_compare_args(p):
    p.add_argument("--predicted", type=Path, default=Path("products/predictions/outlines.gpkg"))
    p.add_argument("--inventory", type=Path, required=True, help="outline inventory of the same date")
    p.add_argument("--id-column", required=True, help="the inventory's glacier id column (ids as in the cubes)")
    p.add_argument("--epoch", help="epoch of the predicted outlines to compare (needed if there are several)")
    p.add_argument("--out", type=Path, default=Path("products/inventory_compare"))


def _inventory_compare(args, params):
    from glaciermap.analysis.inventory_change import compare_stage

    s = compare_stage(args.predicted, args.inventory, args.out, id_column=args.id_column, epoch=args.epoch)
    print(f"{s['n']} glaciers: IoU mean {s['iou_mean']}, total area difference {s['total_area_diff_pct']} % "
          f"-> {args.out}")


def _benchmark_args(p):
    p.add_argument("--sensors", help="sensor set of the trained models (default: train.sensor_sets[0])")
    p.add_argument("--baseline-band", required=True, help="band thresholded by the baseline (e.g. NIR)")
    p.add_argument("--rgb", default="R,G,B", help="bands of the figure's background image (default R,G,B)")
    p.add_argument("--out", type=Path, default=Path("metrics.json"))
    p.add_argument("--figure", type=Path, default=Path("predictions.png"))
    p.add_argument("--details", type=Path, default=Path("products/benchmark"),
                   help="folder for the per-glacier area tables")


def _benchmark(args, params):
    from glaciermap.analysis.benchmark import benchmark_stage

    result = benchmark_stage(params, args.sensors or params.train.sensor_sets[0], args.baseline_band,
                             rgb_bands=args.rgb.split(","), out=args.out, figure=args.figure, details=args.details,
                             progress=not args.quiet)
    for name, m in result["methods"].items():
        a = m["area"]
        print(f"{name:>16}: IoU {m['iou']:.3f} (held-out pixels {m['heldout_pixels']['iou']:.3f})  "
              f"precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
              f"area error median |{a['median_abs_error_pct']:.1f}| %, total {a['total_error_pct']:+.1f} %")
    print(f"-> {args.out}, {args.figure}")


def _compare_args(p):
    p.add_argument("--evaluate", type=Path, default=Path("metrics/evaluate"), help="evaluate's JSON folder")
    p.add_argument("--area-change", type=Path, default=Path("metrics/area_change"),
                   help="folder of area-change metrics, one <model>_<sensors>.json per configuration")
    p.add_argument("--out", type=Path, default=Path("results.json"))
    p.add_argument("--table", type=Path, default=Path("results.md"))
    p.add_argument("--figure", type=Path, default=Path("compare.png"))


def _compare(args, params):
    from glaciermap.analysis.compare import compare, markdown_table
    from glaciermap.tracking.runs import runs_page

    result = compare(params, args.evaluate, args.area_change, args.out, table=args.table, figure=args.figure)
    print(markdown_table(result["rows"]), end="")
    print(f"-> {args.out}, {args.table}, {args.figure}")
    by_rate = any(r["rate_error_pct_per_yr"] is not None for r in result["rows"])  # a simulated region
    page = runs_page(params, "area_change_abs_rate_error_pct_per_yr", ascending=True) if by_rate else runs_page(params)
    if page is not None:
        print(f"in the MLflow UI (README: Comparing runs in MLflow), "
              f"{'smallest rate error' if by_rate else 'best test IoU'} first: {page}")


COMMANDS = [
    Command("evaluate", "test-set metrics per fold (the paper's Table 1) for one model and sensor set",
            _evaluate, _evaluate_args),
    Command("area-change", "per-glacier and regional area-change rates with the paper's filters",
            _area_change, _area_change_args),
    Command("inventory-change", "per-glacier and regional area change between two outline inventories (no model)",
            _inventory_change, _inventory_change_args),
    Command("inventory-compare", "a model's predicted outlines against an inventory of the same date: area "
            "difference and IoU per glacier", _inventory_compare, _inventory_compare_args),
    Command("compare", "one row per (model, sensor set): test IoU over folds, debris and clean IoU, rate error",
            _compare, _compare_args),
    Command("benchmark", "held-out scores and per-glacier areas: trained models vs a band-threshold baseline",
            _benchmark, _benchmark_args),
]
