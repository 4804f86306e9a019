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
    table = area_change_table(pd.read_csv(args.areas, dtype={"glacier_id": str}), params.area_change)
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
    print(f"regional rate {summary['rate_pct_per_yr']} %/yr from {summary['n_kept']} of "
          f"{summary['n_total']} glaciers -> {args.out}")
