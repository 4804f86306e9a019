"""`glaciermap area-change` as a library call: the inference table -> rates, figures, metrics, MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from glaciermap.analysis.area_change import area_change_table, compare_with_truth, regional_summary, write_outputs
from glaciermap.analysis.change_figures import area_scatter_figure, rate_by_size_class_figure
from glaciermap.analysis.figures import glacier_maps_figure
from glaciermap.config import Params
from glaciermap.data.cubes import read_index
from glaciermap.errors import InputDataError
from glaciermap.io import write_json
from glaciermap.tracking.runs import log_to_parent

FIGURES = ("rate_by_size_class.png", "area_scatter.png", "glacier_maps.png")


def read_area_table(areas: Path, params: Params) -> pd.DataFrame:
    """infer's per-glacier table with the area-change columns and filters, or a one-line error."""
    if not areas.exists():
        raise InputDataError("area table missing", path=areas, hint="run `glaciermap infer` first")
    try:
        return area_change_table(pd.read_csv(areas, dtype={"glacier_id": str}), params.area_change)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise InputDataError(f"cannot read the area table ({err})", path=areas,
                             hint="re-run `glaciermap infer`") from None
    except InputDataError as err:
        raise InputDataError(err.problem, path=err.path or areas, hint=err.hint) from None


def truth_check(table: pd.DataFrame, summary: dict[str, Any], raw_dir: Path) -> dict[str, Any] | None:
    """A simulated region's known retreat against the estimate (None for a real region)."""
    truth_path = raw_dir / "truth" / "rates.csv"
    if not truth_path.exists():
        return None
    truth = pd.read_csv(truth_path, dtype={"glacier_id": str})
    cmp = compare_with_truth(table, truth.rename(columns={"rate_pct_per_yr": "true_rate_pct_per_yr"}))
    true_regional = json.loads((raw_dir / "truth" / "regional.json").read_text())["rate_pct_per_yr"]
    rate = summary["rate_pct_per_yr"]
    return {**cmp, "true_regional_rate_pct_per_yr": true_regional,
            "regional_rate_error_pct_per_yr": rate - true_regional if rate is not None else None}


def area_change_stage(params: Params, areas: Path, out: Path, metrics: Path) -> dict[str, Any]:
    """Per-glacier and regional rates with the paper's filters; tables, figures and the metrics JSON;
    logged to the (infer model, sensor set) parent run. Returns the regional summary."""
    table = read_area_table(areas, params)
    summary = regional_summary(table)
    truth = truth_check(table, summary, params.data.raw_dir)
    if truth is not None:
        summary["truth"] = truth
    write_outputs(table, summary, out)
    rate_by_size_class_figure(table, out / FIGURES[0])
    area_scatter_figure(table, out / FIGURES[1])
    largest = table.sort_values("area_inventory_km2", ascending=False).glacier_id.head(4).tolist()
    glacier_maps_figure(params.data.cubes_dir, areas.parent, read_index(params.data.cubes_dir), largest,
                        out / FIGURES[2])
    write_json(metrics, summary)
    truth = truth or {}
    log_to_parent(params, params.infer.model, params.infer.sensor_set,
                  {"area_change_rate_pct_per_yr": summary["rate_pct_per_yr"], "area_change_n_kept": summary["n_kept"],
                   "area_change_true_rate_pct_per_yr": truth.get("true_regional_rate_pct_per_yr"),
                   "area_change_rate_error_pct_per_yr": truth.get("regional_rate_error_pct_per_yr"),
                   "area_change_glacier_rate_r": truth.get("pearson_r")},
                  files=[out / "area_change.csv", *(out / f for f in FIGURES)],
                  payloads={"area_change_summary.json": summary})
    return summary
