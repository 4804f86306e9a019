"""Area change between two outline inventories, and a model's outlines against an inventory.

No model is involved in :func:`inventory_change`: two inventories of the same glaciers (e.g. a
1928 and a 2020 manual mapping) give the same per-glacier table, filters, regional rate and
size-class figure as `glaciermap area-change` (the formulas of
:mod:`glaciermap.analysis.area_change`). The inventories' areas are exact, so nothing is masked
and recall is 1: of the paper's filters, only the size filter and the two-sided extreme filter act.

:func:`compare_with_inventory` scores predicted outlines (`products/predictions/outlines.gpkg`)
against an inventory of the same date: per glacier, the area difference and the IoU.

Areas are computed in a Lambert azimuthal equal-area projection centred on the glaciers (never in
degrees, whatever the files' CRS): ``area_km2 = polygon area / 1e6``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import CRS

from glaciermap.analysis.area_change import _num, area_change_table, regional_summary, write_outputs
from glaciermap.analysis.change_figures import rate_by_size_class_figure
from glaciermap.config.area_change import AreaChangeConfig
from glaciermap.data.dates import inventory_year
from glaciermap.errors import InputDataError
from glaciermap.io import atomic_path, write_json


def equal_area_crs(*frames: gpd.GeoDataFrame) -> CRS:
    """Lambert azimuthal equal-area (WGS 84) centred on the centre of all the frames' outlines."""
    bounds = np.array([f.to_crs(4326).total_bounds for f in frames])
    lon = (bounds[:, 0].min() + bounds[:, 2].max()) / 2
    lat = (bounds[:, 1].min() + bounds[:, 3].max()) / 2
    return CRS.from_proj4(f"+proj=laea +lat_0={lat:.6f} +lon_0={lon:.6f} +datum=WGS84 +units=m +no_defs")


def read_inventory(path: str | Path, id_column: str, date_column: str | None = None) -> gpd.GeoDataFrame:
    """Outlines with columns glacier_id, year (decimal; only with `date_column`), geometry.

    Rows sharing an id are parts of one glacier and are merged; they must then share a date.
    A missing file, CRS or column, an unparseable date or an empty geometry is an InputDataError.
    """
    path = Path(path)
    gdf = _read_vector(path, [c for c in (id_column, date_column) if c is not None])
    ids = gdf[id_column].astype(str)
    empty = sorted(set(ids[gdf.geometry.isna() | gdf.geometry.is_empty]))
    if empty:
        raise InputDataError(f"empty geometry for glacier(s) {empty[:10]}", path=path)
    out = gpd.GeoDataFrame({"glacier_id": ids.values}, geometry=gdf.geometry.make_valid().values, crs=gdf.crs)
    if date_column is not None:
        out["year"] = gdf[date_column].apply(inventory_year).astype(float).values
        bad = sorted(set(out.glacier_id[out.year.isna()]))
        if bad:
            raise InputDataError(f"unparseable date in column {date_column!r} for glacier(s) {bad[:10]}", path=path)
        mixed = out.groupby("glacier_id").year.nunique()
        if (mixed > 1).any():
            raise InputDataError(f"parts of one glacier with different dates: {mixed.index[mixed > 1].tolist()[:10]}",
                                 path=path, hint="each glacier id needs one date")
    return out.dissolve(by="glacier_id", aggfunc="first", as_index=False)


def _read_vector(path: Path, columns: list[str]) -> gpd.GeoDataFrame:
    """A vector file with a CRS, at least one feature and the given columns, or an InputDataError."""
    if not path.exists():
        raise InputDataError("outlines file not found", path=path)
    try:
        gdf = gpd.read_file(path)
    except Exception as err:  # pyogrio raises several types for unreadable files
        raise InputDataError(f"cannot read outlines: {err}", path=path) from None
    if gdf.crs is None:
        raise InputDataError("outlines have no CRS", path=path, hint="write a .prj or set the CRS")
    missing = [c for c in columns if c not in gdf.columns]
    if missing:
        raise InputDataError(f"column(s) {missing} missing (columns: {list(gdf.columns)})", path=path,
                             hint="name the id and date columns with --id-column / --date-column")
    if len(gdf) == 0:
        raise InputDataError("no outlines in file", path=path)
    return gdf


def _areas_km2(gdf: gpd.GeoDataFrame, crs: CRS) -> pd.Series:
    return pd.Series((gdf.to_crs(crs).area / 1e6).to_numpy(), index=gdf["glacier_id"].to_numpy())


def inventory_change(old: gpd.GeoDataFrame, new: gpd.GeoDataFrame,
                     cfg: AreaChangeConfig | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-glacier table and regional summary of the change from inventory `old` to `new`
    (frames from :func:`read_inventory`, any CRS; areas in an equal-area projection).

    Glaciers of one inventory only are left out and listed in the summary (`only_in_old`,
    `only_in_new`): a glacier absent from the newer inventory may have vanished or been left out,
    which the files cannot tell apart.
    """
    crs = equal_area_crs(old, new)
    a_old, a_new = _areas_km2(old, crs), _areas_km2(new, crs)
    y_old, y_new = old.set_index("glacier_id")["year"], new.set_index("glacier_id")["year"]
    both = sorted(set(a_old.index) & set(a_new.index))
    if not both:
        raise InputDataError(f"the inventories share no glacier id (old: {sorted(a_old.index)[:3]}..., new: "
                             f"{sorted(a_new.index)[:3]}...)", hint="check --id-column: ids must match across dates")
    df = pd.DataFrame({
        "glacier_id": both, "area_inventory_km2": a_old[both].to_numpy(), "year_inv": y_old[both].to_numpy(),
        "year_recent": y_new[both].to_numpy(), "pred_area_inv_km2": a_old[both].to_numpy(),
        "pred_area_recent_km2": a_new[both].to_numpy(), "masked_frac_inv": 0.0, "masked_frac_recent": 0.0,
        "recall_test": 1.0})
    table = area_change_table(df, cfg)
    summary = regional_summary(table, cfg)
    summary["only_in_old"] = sorted(set(a_old.index) - set(both))
    summary["only_in_new"] = sorted(set(a_new.index) - set(both))
    summary["area_crs"] = crs.srs
    return table, summary


def inventory_change_stage(old: Path, new: Path, out: Path, cfg: AreaChangeConfig, *, id_column: str,
                           date_column: str, new_id_column: str | None = None,
                           new_date_column: str | None = None) -> dict[str, Any]:
    """`glaciermap inventory-change`: read both inventories, write area_change.csv,
    area_change_summary.json and rate_by_size_class.png into `out` (replaced as a whole)."""
    old_gdf = read_inventory(old, id_column, date_column)
    new_gdf = read_inventory(new, new_id_column or id_column, new_date_column or date_column)
    table, summary = inventory_change(old_gdf, new_gdf, cfg)
    for name, ids in (("old", summary["only_in_old"]), ("new", summary["only_in_new"])):
        if ids:
            warnings.warn(f"{old if name == 'old' else new}: {len(ids)} glacier(s) only in the {name} inventory "
                          f"left out: {ids[:10]}", stacklevel=2)
    with atomic_path(out) as tmp:
        write_outputs(table, summary, tmp)
        rate_by_size_class_figure(table, tmp / "rate_by_size_class.png")
    return summary


def compare_with_inventory(predicted: gpd.GeoDataFrame, inventory: gpd.GeoDataFrame) -> tuple[pd.DataFrame,
                                                                                               dict[str, Any]]:
    """Per-glacier predicted vs inventory area and IoU (frames with glacier_id and geometry, any CRS).

    ``area_diff_km2 = A_pred - A_inv``, ``area_diff_pct = 100 * area_diff_km2 / A_inv``,
    ``iou = area(pred & inv) / area(pred | inv)``, all in an equal-area projection. A glacier of
    the inventory without a predicted outline has A_pred = 0 and IoU 0; predicted glaciers absent
    from the inventory are left out (listed in the summary as `not_in_inventory`). The summary:
    glacier count, mean and median IoU, summed areas and their relative difference, median
    absolute per-glacier difference.
    """
    crs = equal_area_crs(predicted, inventory)
    pred = predicted.to_crs(crs).dissolve(by="glacier_id").geometry
    inv = inventory.to_crs(crs).set_index("glacier_id").geometry
    rows = []
    for gid, g in inv.items():
        p = pred.get(gid)
        a_inv = g.area / 1e6
        a_pred = 0.0 if p is None else p.area / 1e6
        inter = 0.0 if p is None else g.intersection(p).area / 1e6
        union = a_inv + a_pred - inter
        rows.append({"glacier_id": gid, "area_inventory_km2": a_inv, "area_predicted_km2": a_pred,
                     "area_diff_km2": a_pred - a_inv, "area_diff_pct": 100 * (a_pred - a_inv) / a_inv if a_inv else np.nan,
                     "iou": inter / union if union > 0 else np.nan})
    table = pd.DataFrame(rows)
    total_inv, total_pred = table.area_inventory_km2.sum(), table.area_predicted_km2.sum()
    summary = {"n": int(len(table)), "iou_mean": _num(table.iou.mean()), "iou_median": _num(table.iou.median()),
               "area_inventory_km2": _num(total_inv), "area_predicted_km2": _num(total_pred),
               "total_area_diff_pct": _num(100 * (total_pred - total_inv) / total_inv) if total_inv else None,
               "median_abs_area_diff_pct": _num(table.area_diff_pct.abs().median()),
               "not_in_inventory": sorted(set(pred.index) - set(inv.index)), "area_crs": crs.srs}
    return table, summary


def read_predicted(path: str | Path, epoch: str | None) -> gpd.GeoDataFrame:
    """Predicted outlines (`glaciermap infer`'s outlines.gpkg: glacier_id, epoch, geometry) of one
    epoch, merged per glacier; `epoch` may be None when the file holds one epoch only."""
    path = Path(path)
    gdf = _read_vector(path, ["glacier_id"])
    if "epoch" in gdf.columns:
        epochs = sorted(gdf.epoch.astype(str).unique())
        if epoch is None and len(epochs) > 1:
            raise InputDataError(f"predicted outlines of several epochs {epochs}", path=path,
                                 hint="choose the inventory's date with --epoch")
        if epoch is not None and epoch not in epochs:
            raise InputDataError(f"no predicted outline of epoch {epoch!r}; epochs: {epochs}", path=path)
        gdf = gdf[gdf.epoch.astype(str) == (epoch or epochs[0])]
    return gpd.GeoDataFrame({"glacier_id": gdf.glacier_id.astype(str).values}, geometry=gdf.geometry.values,
                            crs=gdf.crs).dissolve(by="glacier_id", as_index=False)


def compare_stage(predicted: Path, inventory: Path, out: Path, *, id_column: str, epoch: str | None = None
                  ) -> dict[str, Any]:
    """`glaciermap inventory-compare`: a model's outlines of one epoch against an inventory of the
    same date; writes comparison.csv and comparison_summary.json into `out` (replaced as a whole)."""
    table, summary = compare_with_inventory(read_predicted(predicted, epoch), read_inventory(inventory, id_column))
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        with open(tmp / "comparison.csv", "w", newline="") as fh:
            table.to_csv(fh, index=False)
        write_json(tmp / "comparison_summary.json", summary)
    return summary


__all__ = ["read_inventory", "inventory_change", "inventory_change_stage", "compare_with_inventory",
           "compare_stage", "equal_area_crs"]
