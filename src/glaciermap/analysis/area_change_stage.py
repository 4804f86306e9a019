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
from glaciermap.data.cubes import INDEX_FILE, read_index
from glaciermap.errors import InputDataError
from glaciermap.io import atomic_path, write_json
from glaciermap.tracking.runs import log_to_parent, read_provenance

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


def read_truth(raw_dir: Path) -> tuple[pd.DataFrame, float] | None:
    """A simulated region's true per-glacier rates and regional rate (None for a real region),
    checked: readable, with the columns the comparison needs."""
    rates_path, regional_path = raw_dir / "truth" / "rates.csv", raw_dir / "truth" / "regional.json"
    if not rates_path.exists():
        return None
    hint = "re-run `glaciermap simulate`, or remove truth/ for a real region"
    try:
        truth = pd.read_csv(rates_path, dtype={"glacier_id": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise InputDataError(f"cannot read the true rates ({err})", path=rates_path, hint=hint) from None
    missing = [c for c in ("glacier_id", "rate_pct_per_yr") if c not in truth.columns]
    if missing:
        raise InputDataError(f"true rates lack column(s) {missing}", path=rates_path, hint=hint)
    try:
        regional = float(json.loads(regional_path.read_text())["rate_pct_per_yr"])
    except FileNotFoundError:
        raise InputDataError("file missing (truth/rates.csv has no regional.json beside it)", path=regional_path,
                             hint=hint) from None
    except (ValueError, KeyError, TypeError) as err:
        raise InputDataError(f"cannot read the true regional rate ({type(err).__name__}: {err})",
                             path=regional_path, hint=hint) from None
    return truth.rename(columns={"rate_pct_per_yr": "true_rate_pct_per_yr"}), regional


def truth_check(table: pd.DataFrame, summary: dict[str, Any], truth: tuple[pd.DataFrame, float]) -> dict[str, Any]:
    """A simulated region's known retreat (from :func:`read_truth`) against the estimate: per glacier
    (:func:`compare_with_truth`), and the all-glacier true rate against the kept glaciers' rate
    (``regional_rate_error_pct_per_yr``) and the region-wide one (``regionwide_rate_error_pct_per_yr``)."""
    rates, true_regional = truth
    cmp = compare_with_truth(table, rates)
    def error(key: str) -> float | None:
        return summary[key] - true_regional if summary[key] is not None else None

    return {**cmp, "true_regional_rate_pct_per_yr": true_regional,
            "regional_rate_error_pct_per_yr": error("rate_pct_per_yr"),
            "regionwide_rate_error_pct_per_yr": error("regionwide_rate_pct_per_yr")}


def check_predictions_match_cubes(table: pd.DataFrame, index: pd.DataFrame, areas: Path, cubes_dir: Path,
                                  map_ids: list[str]) -> None:
    """Every glacier of the area table is in the cube index, and the glaciers drawn in the map
    figure have a probability raster for each of their epochs; otherwise one InputDataError."""
    unknown = sorted(set(table.glacier_id) - set(index.glacier_id))
    if unknown:
        raise InputDataError(f"{len(unknown)} of {len(table)} glacier(s) of the area table are not in the cube "
                             f"index {cubes_dir / INDEX_FILE}: {unknown[:5]}", path=areas,
                             hint="the predictions come from other cubes: re-run `glaciermap infer` on these cubes, "
                                  "or point data.cubes_dir at the cubes they were made from")
    rows = index[index.glacier_id.isin(map_ids)]
    missing = [str(areas.parent / r.epoch / f"{r.glacier_id}.tif") for r in rows.itertuples()
               if not (areas.parent / r.epoch / f"{r.glacier_id}.tif").exists()]
    if missing:
        raise InputDataError(f"{len(missing)} probability raster(s) missing, e.g. {missing[0]}", path=areas,
                             hint="re-run `glaciermap infer` (the cube index lists epochs the predictions lack)")


def area_change_stage(params: Params, areas: Path, out: Path, metrics: Path) -> dict[str, Any]:
    """Per-glacier and regional rates with the paper's filters; tables, figures and the metrics JSON;
    logged to the parent run of the (model, sensor set) that made the predictions (infer's
    provenance.json beside `areas`; the infer section's for predictions written before it was
    recorded). Returns the regional summary, which names that configuration.

    Every input (area table, cube index, probability rasters of the mapped glaciers, a simulated
    region's truth) is checked before anything is written; `out` is replaced as a whole.
    """
    table = read_area_table(areas, params)
    index = read_index(params.data.cubes_dir)
    largest = table.sort_values("area_inventory_km2", ascending=False).glacier_id.head(4).tolist()
    check_predictions_match_cubes(table, index, areas, params.data.cubes_dir, largest)
    truth_inputs = read_truth(params.data.raw_dir)
    made_by = read_provenance(areas.parent) or {"model": params.infer.model, "sensor_set": params.infer.sensor_set}
    summary = {"model": made_by["model"], "sensor_set": made_by["sensor_set"],
               **regional_summary(table, params.area_change)}
    truth = truth_check(table, summary, truth_inputs) if truth_inputs is not None else None
    if truth is not None:
        summary["truth"] = truth
    with atomic_path(out) as tmp:
        write_outputs(table, summary, tmp)
        rate_by_size_class_figure(table, tmp / FIGURES[0])
        area_scatter_figure(table, tmp / FIGURES[1])
        glacier_maps_figure(params.data.cubes_dir, areas.parent, index, largest, tmp / FIGURES[2])
    write_json(metrics, summary)
    truth = truth or {}
    log_to_parent(params, summary["model"], summary["sensor_set"],
                  {"area_change_rate_pct_per_yr": summary["rate_pct_per_yr"], "area_change_n_kept": summary["n_kept"],
                   "area_change_rate_sigma_pct_per_yr": summary["rate_sigma_pct_per_yr"],
                   "area_change_rate_sigma_independent_pct_per_yr": summary["rate_sigma_independent_pct_per_yr"],
                   "area_change_rate_sigma_correlated_pct_per_yr": summary["rate_sigma_correlated_pct_per_yr"],
                   "area_change_regionwide_rate_pct_per_yr": summary["regionwide_rate_pct_per_yr"],
                   "area_change_regionwide_sigma_pct_per_yr": summary["regionwide_sigma_pct_per_yr"],
                   "area_change_n_extrapolated": summary["n_extrapolated"],
                   "area_change_true_rate_pct_per_yr": truth.get("true_regional_rate_pct_per_yr"),
                   "area_change_rate_error_pct_per_yr": truth.get("regional_rate_error_pct_per_yr"),
                   "area_change_abs_rate_error_pct_per_yr": (  # sortable in the UI: smallest first
                       None if truth.get("regional_rate_error_pct_per_yr") is None
                       else abs(truth["regional_rate_error_pct_per_yr"])),
                   "area_change_regionwide_rate_error_pct_per_yr": truth.get("regionwide_rate_error_pct_per_yr"),
                   "area_change_glacier_rate_r": truth.get("pearson_r"),
                   "area_change_glacier_cover_1sigma": truth.get("glacier_cover_1sigma"),
                   "area_change_glacier_cover_2sigma": truth.get("glacier_cover_2sigma")},
                  files=[out / "area_change.csv", *(out / f for f in FIGURES)],
                  payloads={"area_change_summary.json": summary})
    return summary
