"""Per-glacier area change between the inventory year and a recent year (Diaconu & Bamber 2023).

Input: one row per glacier (produced by the inference stage), with the predicted glacier area
counted INSIDE the inventory outline over visible pixels only, per epoch. This module

1. corrects partly masked glaciers (:func:`correct_masked_area`),
2. computes per-glacier rates in km2/yr and %/yr (relative to the PREDICTED inventory-year
   area, so a systematic over/under-estimate of the model cancels in the ratio),
3. flags glaciers that are too small, poorly mapped in the inventory year, too masked, or
   extreme outliers (:func:`area_change_table`),
4. aggregates a regional rate from summed areas (:func:`regional_summary`),
5. optionally compares with known rates (:func:`compare_with_truth`), and writes outputs.

Formulas
--------
Masked correction (recall on masked pixels assumed equal to that on visible pixels)::

    V = (1 - m) * A_outline                   visible part of the outline (km2)
    M = m * A_outline                         masked part of the outline (km2)
    A_corr = P_vis + M * (P_vis / V)  =  P_vis / (1 - m)

with ``P_vis`` the predicted area over visible outline pixels. ``P_vis / V`` (clipped to [0, 1])
is the glacier fraction of the visible outline, i.e. the visible-pixel recall with respect to the
outline. If nothing is visible (m == 1) the fraction is unknown and the test-year ``recall`` is
used instead: ``A_corr = recall * A_outline`` (NaN if recall is NaN). Such glaciers are flagged
``flag_masked`` anyway for any ``max_masked_frac < 1``.

Rates (``dt = year_recent - year_inv``)::

    rate_km2_per_yr = (A_recent - A_inv) / dt
    rate_pct_per_yr = 100 * rate_km2_per_yr / A_inv          (A_inv: predicted, corrected)
    rate_sd_km2_per_yr = sqrt(sd_inv**2 + sd_recent**2) / dt  (ensemble spreads, each scaled by
                                                              the same 1/(1-m) as its area)
    rate_sd_pct_per_yr = 100 * rate_sd_km2_per_yr / A_inv    (denominator uncertainty ignored)

Extreme filter: TWO-sided. Among glaciers passing the other filters (and having a finite
rate), the ``floor(drop_extreme_frac * n)`` glaciers with the largest ``|rate_pct - median|``
are flagged ``flag_extreme`` (median over the same glaciers).

Regional rate (kept glaciers)::

    rate_pct_per_yr = 100 * sum(A_recent - A_inv) / sum(A_inv * dt)

which equals ``100 * (sum A_recent - sum A_inv) / (sum A_inv * dt)`` when all glaciers share
``dt``, and otherwise weights each glacier's change by its own time span. Large glaciers
therefore dominate, unlike the mean of per-glacier rates.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from glaciermap.config.area_change import AreaChangeConfig
from glaciermap.errors import InputDataError
from glaciermap.io import atomic_path, write_json

REQUIRED_COLUMNS: tuple[str, ...] = (
    "glacier_id",
    "area_inventory_km2",
    "year_inv",
    "year_recent",
    "pred_area_inv_km2",
    "pred_area_recent_km2",
    "masked_frac_inv",
    "masked_frac_recent",
    "recall_test",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("pred_std_inv_km2", "pred_std_recent_km2")
FLAG_COLUMNS: tuple[str, ...] = (
    "flag_small", "flag_low_recall", "flag_masked", "flag_no_rate", "flag_extreme",
)


def correct_masked_area(pred_area_visible, masked_frac, area_outline, recall=None):
    """Predicted area corrected for masked outline pixels: ``P_vis / (1 - m)``.

    The masked part ``m * A_outline`` contributes ``m * A_outline * (P_vis / V)`` with
    ``V = (1 - m) * A_outline`` the visible outline area, i.e. the masked pixels are assumed to
    be glacier with the same recall as the visible ones (the fraction ``P_vis / V`` is clipped to
    [0, 1]). Where nothing is visible (``m >= 1``) ``recall * A_outline`` is returned (NaN when
    ``recall`` is None/NaN). Works on scalars and arrays; returns a float or an ndarray.
    """
    p = np.asarray(pred_area_visible, dtype=float)
    m = np.asarray(masked_frac, dtype=float)
    a = np.asarray(area_outline, dtype=float)
    r = np.asarray(np.nan if recall is None else recall, dtype=float)
    p, m, a, r = np.broadcast_arrays(p, m, a, r)
    visible = (1.0 - m) * a
    has_visible = visible > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.clip(np.where(has_visible, p / visible, np.nan), 0.0, 1.0)
    out = np.where(has_visible, p + m * a * frac, r * a)
    out = np.where(m <= 0, p, out)  # exactly the visible prediction when nothing is masked
    return float(out) if out.ndim == 0 else out


def _validate(df: pd.DataFrame) -> None:
    if not isinstance(df, pd.DataFrame):
        raise InputDataError(f"area-change input must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise InputDataError(
            f"area-change table is missing required column(s): {', '.join(missing)}",
            hint=f"expected columns: {', '.join(REQUIRED_COLUMNS)}",
        )
    if len(df) == 0:
        raise InputDataError("area-change table is empty (no glaciers)")
    dup = df["glacier_id"][df["glacier_id"].duplicated()].unique()
    if len(dup):
        raise InputDataError(f"duplicate glacier_id in area-change table: {list(dup[:5])}")
    numeric = [c for c in REQUIRED_COLUMNS if c not in ("glacier_id", "recall_test")]
    for c in numeric:
        vals = pd.to_numeric(df[c], errors="coerce")
        bad = vals.isna()
        if bad.any():
            ids = list(df.loc[bad, "glacier_id"][:5])
            raise InputDataError(f"NaN or non-numeric values in column {c!r} for glacier(s) {ids}")
        if c.endswith("_km2") and (vals < 0).any():
            ids = list(df.loc[vals < 0, "glacier_id"][:5])
            raise InputDataError(f"negative area in column {c!r} for glacier(s) {ids}")
        if c.startswith("masked_frac") and ((vals < 0) | (vals > 1)).any():
            ids = list(df.loc[(vals < 0) | (vals > 1), "glacier_id"][:5])
            raise InputDataError(f"column {c!r} must lie in [0, 1]; glacier(s) {ids}")
    dt = pd.to_numeric(df["year_recent"]) - pd.to_numeric(df["year_inv"])
    if (dt <= 0).any():
        ids = list(df.loc[dt <= 0, "glacier_id"][:5])
        raise InputDataError(
            f"year_recent must be after year_inv; not so for glacier(s) {ids}",
            hint="the recent epoch must be later than the inventory year",
        )


def area_change_table(df: pd.DataFrame, cfg: AreaChangeConfig | None = None) -> pd.DataFrame:
    """Per-glacier corrected areas, rates, rate uncertainties and filter flags (new DataFrame).

    Added columns: ``dt_yr``, ``area_inv_km2``, ``area_recent_km2`` (corrected when
    ``cfg.correct_masked``, else the visible predictions), ``sd_inv_km2``, ``sd_recent_km2``,
    ``rate_km2_per_yr``, ``rate_pct_per_yr``, ``rate_sd_km2_per_yr``, ``rate_sd_pct_per_yr``
    (NaN without ensemble spreads), the flags ``flag_small``, ``flag_low_recall`` (also when
    recall is NaN), ``flag_masked`` (either epoch above ``max_masked_frac``), ``flag_no_rate``
    (non-finite rate, e.g. zero predicted inventory area), ``flag_extreme``, and ``kept``.
    """
    cfg = cfg or AreaChangeConfig()
    _validate(df)
    t = df.copy().reset_index(drop=True)
    for c in REQUIRED_COLUMNS[1:]:
        t[c] = pd.to_numeric(t[c], errors="coerce").astype(float)
    for c in OPTIONAL_COLUMNS:
        t[c] = pd.to_numeric(t[c], errors="coerce").astype(float) if c in t.columns else np.nan

    a_out = t["area_inventory_km2"].to_numpy()
    recall = t["recall_test"].to_numpy()
    t["dt_yr"] = t["year_recent"] - t["year_inv"]
    for ep in ("inv", "recent"):
        pred = t[f"pred_area_{ep}_km2"].to_numpy()
        sd = t[f"pred_std_{ep}_km2"].to_numpy()
        m = t[f"masked_frac_{ep}"].to_numpy()
        if cfg.correct_masked:
            area = correct_masked_area(pred, m, a_out, recall)
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(pred > 0, area / pred, np.where(m < 1, 1.0 / (1.0 - m), np.nan))
            sd = sd * scale
        else:
            area = pred
        t[f"area_{ep}_km2"] = np.asarray(area, dtype=float)
        t[f"sd_{ep}_km2"] = np.asarray(sd, dtype=float)

    dt = t["dt_yr"].to_numpy()
    a_inv = t["area_inv_km2"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = (t["area_recent_km2"].to_numpy() - a_inv) / dt
        rate_pct = np.where(a_inv > 0, 100.0 * rate / a_inv, np.nan)
        rate_sd = np.sqrt(t["sd_inv_km2"].to_numpy() ** 2 + t["sd_recent_km2"].to_numpy() ** 2) / dt
        rate_sd_pct = np.where(a_inv > 0, 100.0 * rate_sd / a_inv, np.nan)
    t["rate_km2_per_yr"] = rate
    t["rate_pct_per_yr"] = rate_pct
    t["rate_sd_km2_per_yr"] = rate_sd
    t["rate_sd_pct_per_yr"] = rate_sd_pct

    t["flag_small"] = a_out < cfg.min_area_km2
    t["flag_low_recall"] = ~(recall >= cfg.min_recall)  # NaN recall -> flagged
    t["flag_masked"] = (t["masked_frac_inv"] > cfg.max_masked_frac) | (
        t["masked_frac_recent"] > cfg.max_masked_frac
    )
    t["flag_no_rate"] = ~np.isfinite(rate_pct)
    passing = ~(t["flag_small"] | t["flag_low_recall"] | t["flag_masked"] | t["flag_no_rate"])
    t["flag_extreme"] = False
    n_pass = int(passing.sum())
    n_drop = int(math.floor(cfg.drop_extreme_frac * n_pass + 1e-9))
    if n_drop > 0:
        r = t.loc[passing, "rate_pct_per_yr"]
        dev = (r - r.median()).abs()
        worst = dev.sort_values(ascending=False, kind="mergesort").index[:n_drop]
        t.loc[worst, "flag_extreme"] = True
    t["kept"] = passing & ~t["flag_extreme"]
    for c in (*FLAG_COLUMNS, "kept"):
        t[c] = t[c].astype(bool)
    return t


def _num(x: Any) -> float | None:
    """JSON-safe float (NaN/inf -> None)."""
    x = float(x)
    return x if math.isfinite(x) else None


def regional_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Regional figures from the kept glaciers of :func:`area_change_table` (JSON-safe dict).

    ``rate_pct_per_yr = 100 * sum(A_recent - A_inv) / sum(A_inv * dt)`` (summed areas, so large
    glaciers weigh more); ``rate_km2_per_yr = sum(rate_km2_per_yr)`` (total area change per
    year); its uncertainty (when every kept glacier has ensemble spreads) assumes independent
    glaciers: ``sqrt(sum rate_sd_km2_per_yr**2)``. Also the median and mean per-glacier %/yr
    rate, counts per filter (a glacier can have several flags) and total areas. NaN -> None.
    """
    missing = [c for c in ("kept", "rate_pct_per_yr", "area_inv_km2", "area_recent_km2", "dt_yr",
                           *FLAG_COLUMNS) if c not in table.columns]
    if missing:
        raise InputDataError(
            f"regional_summary needs the output of area_change_table; missing: {', '.join(missing)}"
        )
    k = table[table["kept"]]
    d_area = k["area_recent_km2"] - k["area_inv_km2"]
    denom = float((k["area_inv_km2"] * k["dt_yr"]).sum())
    rate_pct = 100.0 * float(d_area.sum()) / denom if denom > 0 else float("nan")
    sd = k["rate_sd_km2_per_yr"] if "rate_sd_km2_per_yr" in k else pd.Series(dtype=float)
    has_sd = len(k) > 0 and bool(np.isfinite(sd).all())
    rate_km2 = float(k["rate_km2_per_yr"].sum()) if len(k) else float("nan")
    rate_sd_km2 = float(np.sqrt((sd**2).sum())) if has_sd else float("nan")
    mean_area_inv_dt = denom / float(k["dt_yr"].sum()) if len(k) else float("nan")
    rate_sd_pct = 100.0 * rate_sd_km2 / mean_area_inv_dt if has_sd and denom > 0 else float("nan")
    a_inv_sum = float(k["area_inv_km2"].sum())
    return {
        "n_total": int(len(table)),
        "n_kept": int(len(k)),
        "n_small": int(table["flag_small"].sum()),
        "n_low_recall": int(table["flag_low_recall"].sum()),
        "n_masked": int(table["flag_masked"].sum()),
        "n_no_rate": int(table["flag_no_rate"].sum()),
        "n_extreme": int(table["flag_extreme"].sum()),
        "rate_pct_per_yr": _num(rate_pct),
        "rate_sd_pct_per_yr": _num(rate_sd_pct),
        "rate_km2_per_yr": _num(rate_km2),
        "rate_sd_km2_per_yr": _num(rate_sd_km2),
        "median_glacier_rate_pct_per_yr": _num(k["rate_pct_per_yr"].median()) if len(k) else None,
        "mean_glacier_rate_pct_per_yr": _num(k["rate_pct_per_yr"].mean()) if len(k) else None,
        "area_outline_total_km2": _num(table["area_inventory_km2"].sum()),
        "area_outline_kept_km2": _num(k["area_inventory_km2"].sum()),
        "area_inv_kept_km2": _num(a_inv_sum),
        "area_recent_kept_km2": _num(k["area_recent_km2"].sum()),
        "kept_area_share": _num(k["area_inventory_km2"].sum() / table["area_inventory_km2"].sum())
        if float(table["area_inventory_km2"].sum()) > 0 else None,
        "mean_dt_yr": _num(k["dt_yr"].mean()) if len(k) else None,
    }


def compare_with_truth(table: pd.DataFrame, truth_rates: pd.DataFrame) -> dict[str, Any]:
    """Kept glaciers' predicted vs true per-glacier %/yr rates.

    Returns ``n`` (kept glaciers with a finite true rate), ``pearson_r`` (None if n < 2 or a
    constant series), ``mae`` = mean|pred - true|, ``bias`` = mean(pred - true), ``rmse``; and,
    if the truth has true areas (``area_inventory_km2``, ``area_recent_km2``, ``dt_years``), the
    kept glaciers' true regional rate and the relative error of their summed predicted area per
    epoch (``kept_true_rate_pct_per_yr``, ``kept_area_error_inv_pct``, ``kept_area_error_recent_pct``).
    """
    missing = [c for c in ("glacier_id", "true_rate_pct_per_yr") if c not in truth_rates.columns]
    if missing:
        raise InputDataError(f"truth rates table is missing column(s): {', '.join(missing)}")
    for c in ("glacier_id", "kept", "rate_pct_per_yr"):
        if c not in table.columns:
            raise InputDataError(f"area-change table is missing column {c!r} (run area_change_table)")
    m = table.loc[table["kept"], ["glacier_id", "rate_pct_per_yr"]].merge(
        truth_rates[["glacier_id", "true_rate_pct_per_yr"]], on="glacier_id", how="inner"
    )
    m = m[np.isfinite(m["rate_pct_per_yr"]) & np.isfinite(m["true_rate_pct_per_yr"].astype(float))]
    n = int(len(m))
    if n == 0:
        return {"n": 0, "pearson_r": None, "mae": None, "bias": None, "rmse": None}
    pred = m["rate_pct_per_yr"].to_numpy(float)
    true = m["true_rate_pct_per_yr"].to_numpy(float)
    err = pred - true
    r = float("nan")
    if n >= 2 and np.std(pred) > 0 and np.std(true) > 0:
        r = float(np.corrcoef(pred, true)[0, 1])
    return {
        "n": n,
        "pearson_r": _num(r),
        "mae": _num(np.abs(err).mean()),
        "bias": _num(err.mean()),
        "rmse": _num(np.sqrt((err**2).mean())),
        **_kept_area_check(table, truth_rates),
    }


def _kept_area_check(table: pd.DataFrame, truth_rates: pd.DataFrame) -> dict[str, Any]:
    """Where a regional error comes from: the kept glaciers' true regional rate (selection) and the
    predicted-minus-true summed area per epoch (model), when the truth table has true areas."""
    cols = ("area_inventory_km2", "area_recent_km2", "dt_years")
    if any(c not in truth_rates.columns for c in cols):
        return {}
    m = table.loc[table["kept"], ["glacier_id", "area_inv_km2", "area_recent_km2"]].merge(
        truth_rates[["glacier_id", *cols]].rename(columns=lambda c: f"true_{c}" if c != "glacier_id" else c),
        on="glacier_id", how="inner")
    if m.empty:
        return {}
    true_inv, true_rec = m["true_area_inventory_km2"].sum(), m["true_area_recent_km2"].sum()
    return {
        "kept_true_rate_pct_per_yr": _num(100 * (true_rec - true_inv) / (m["true_area_inventory_km2"]
                                                                           * m["true_dt_years"]).sum()),
        "kept_area_error_inv_pct": _num(100 * (m["area_inv_km2"].sum() - true_inv) / true_inv),
        "kept_area_error_recent_pct": _num(100 * (m["area_recent_km2"].sum() - true_rec) / max(true_rec, 1e-12)),
    }


def write_outputs(table: pd.DataFrame, summary: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``area_change.csv`` (one row per glacier) and ``area_change_summary.json`` atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "area_change.csv"
    with atomic_path(csv_path) as tmp:
        with open(tmp, "w", newline="") as fh:
            table.to_csv(fh, index=False)
    json_path = write_json(out_dir / "area_change_summary.json",
                           {k: (_num(v) if isinstance(v, float) else v) for k, v in summary.items()})
    return {"table": csv_path, "summary": json_path}
