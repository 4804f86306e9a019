"""Per-glacier area change between the inventory year and a recent year (Diaconu & Bamber 2023),
with calibrated uncertainty, the DL4GAM filters and area-class extrapolation (Diaconu et al. 2025).

Input: one row per glacier (produced by the inference stage), with the predicted glacier area
counted INSIDE the inventory outline over visible pixels only, per epoch, and its 1-sigma bounds.
This module

1. corrects partly masked glaciers (:func:`correct_masked_area`), bounds included,
2. computes per-glacier rates in km2/yr and %/yr (relative to the PREDICTED inventory-year
   area, so a systematic over/under-estimate of the model cancels in the ratio) and their sigma,
3. flags glaciers that are too small, poorly mapped in the inventory year, too masked, whose change
   is not resolved (SNR), or extreme outliers, and says why in ``reason`` (:func:`area_change_table`),
4. gives every dropped glacier the rate of its area class (:func:`class_rates`),
5. aggregates the kept glaciers' regional rate and the region-wide rate of all glaciers, each with
   its sigma (:func:`regional_summary`),
6. optionally compares with known rates (:func:`compare_with_truth`), and writes outputs.

Formulas
--------
Area and its uncertainty per epoch. p is the per-pixel mean of the calibrated probabilities of
the members of the fold that held the glacier out. The glacier boundary is the p = 0.5 contour;
its position error is taken as Gaussian, so its 1-sigma envelope lies between the
p = Phi(+1) = 0.8413 and p = Phi(-1) = 0.1587 contours (Phi: standard normal CDF). Inside the
outline, over visible pixels::

    A    = area(p >= 0.5)        A_lo = area(p >= 0.8413)        A_hi = area(p >= 0.1587)
    sigma_A = (A_hi - A_lo) / 2

Disagreeing members flatten p and so widen the band: one number for the model's (epistemic) and
the pixels' (aleatoric) uncertainty. A_lo and A_hi come from infer as ``area_lo_*_km2`` and
``area_hi_*_km2``; without them sigma is NaN (e.g. two outline inventories).

Masked correction (recall on masked pixels assumed equal to that on visible pixels)::

    V = (1 - m) * A_outline                   visible part of the outline (km2)
    M = m * A_outline                         masked part of the outline (km2)
    A_corr = P_vis + M * (P_vis / V)  =  P_vis / (1 - m)

with ``P_vis`` the predicted area over visible outline pixels. ``P_vis / V`` (clipped to [0, 1])
is the glacier fraction of the visible outline, i.e. the visible-pixel recall with respect to the
outline. If nothing is visible (m == 1) the fraction is unknown and the test-year ``recall`` is
used instead: ``A_corr = recall * A_outline`` (NaN if recall is NaN). Such glaciers are flagged
``flag_masked`` anyway for any ``max_masked_frac < 1``. The bounds scale like the area::

    s = A_corr / P_vis  (1 / (1 - m) when P_vis == 0; NaN when m == 1)
    sigma_corr = s * (A_hi - A_lo) / 2                          -> sigma_inv_km2, sigma_recent_km2

Ice missed in the inventory year. Inside the outline every pixel is glacier in the inventory
year, so what the model misses there is known::

    M0 = max(A_outline - A_inv, 0)                                            -> missed_inv_km2

How much of M0 is gone by the recent epoch is not: the model misses debris-covered and shaded
ice, which sits on the tongues, where the retreat is. ``missed_ice`` says what is assumed:

- ``proportional`` (DL4GAM's recall correction, the default): the model misses the same share of
  the glacier in both epochs, so the change is the predicted change and the rate is relative to
  the predicted inventory area; a systematic under-estimate cancels in the ratio. When the
  missed ice is where the retreat is, this counts too little loss.
- ``uniform``: the share g of M0 gone by the recent epoch is unknown, g ~ U(0, 1) (mean 1/2,
  standard deviation 1/sqrt(12)); the rate is relative to the outline's own area::

    gone   = M0 / 2                                    -> missed_gone_km2
    sigma_missed = M0 / sqrt(12)                       -> sigma_missed_km2
    change = A_recent - A_inv - gone                   (proportional: A_recent - A_inv)
    A_base = A_outline                                 (proportional: A_inv)    -> area_base_km2

With ``uniform`` and M0 > 0 the change is ``A_recent - (A_inv + A_outline) / 2``: an error in A_inv
moves M0 by as much the other way, so it reaches the change at half weight, w_inv = 1/2
(w_inv = 1 with ``proportional`` or where M0 = 0).

Rates (``dt = year_recent - year_inv``; the two epochs' errors independent; ``k = sigma_scale``)::

    change_km2 = change
    s = sqrt((w_inv * sigma_inv)**2 + sigma_recent**2)                  -> sigma_change_band_km2
    rate_km2_per_yr = change / dt
    rate_pct_per_yr = 100 * rate_km2_per_yr / A_base
    rate_sigma_km2_per_yr = k * sqrt(s**2 + sigma_missed**2) / dt
    rate_sigma_pct_per_yr = 100 * rate_sigma_km2_per_yr / A_base  (denominator uncertainty ignored)
    snr = |rate_km2_per_yr| / rate_sigma_km2_per_yr

Filters (each a ``flag_*`` column; ``kept`` = none set; ``reason`` = "kept" or the set flags'
names joined by "+", e.g. "small+low_recall")::

    small                  A_outline < min_area_km2
    low_recall             recall_test < min_recall (or NaN)
    low_inventory_recall   recall_test < min_inventory_recall (None: off)
    masked                 m_inv > max_masked_frac or m_recent > max_masked_frac
    low_snr                |rate| < min_snr * rate_sigma, or sigma unknown (min_snr = 0: off)
    no_rate                rate_pct not finite (e.g. A_inv == 0)
    extreme                two-sided: among glaciers passing all the filters above (finite
                           rate), the floor(drop_extreme_frac * n) with the largest
                           |rate_pct - median| (median over the same glaciers)

Regional rate of the kept glaciers, and its sigma under the two extreme assumptions on how the
glaciers' errors correlate and under the chosen one, ``rho = band_correlation`` (``s_i``, the
sigma of glacier i's change from its probability bands, ``sigma_change_band_km2`` above;
``m_i = sigma_missed``; ``W = sum(A_base * dt)``; ``k = sigma_scale``; ``tau =
discrepancy_pct_per_yr``, the region's error that no band shows)::

    rate_pct_per_yr = 100 * sum(change) / W
    B(rho) = sqrt((1 - rho) * sum s_i**2 + rho * (sum s_i)**2)    every pair of band errors
                                                                  correlated by rho
    S(x) = sqrt((100 * k * x / W)**2 + tau**2)
    rate_sigma_independent_pct_per_yr = S(sqrt(B(0)**2 + (sum m_i)**2))
    rate_sigma_correlated_pct_per_yr  = S(sum s_i + sum m_i)
    rate_sigma_pct_per_yr             = S(sqrt(B(rho)**2 + (sum m_i)**2))        (the headline)

and its parts before k and tau, ``rate_sigma_band_independent_pct_per_yr`` (100 * B(0) / W),
``rate_sigma_band_correlated_pct_per_yr`` (100 * B(1) / W) and ``rate_sigma_missed_pct_per_yr``
(100 * sum m_i / W), from which the validity benchmark fits k, rho and tau.

The rate equals ``100 * (sum A_recent - sum A_inv) / (sum A_inv * dt)`` (proportional) when all
glaciers share ``dt``, and otherwise weights each glacier's change by its own time span; large
glaciers dominate, unlike the mean of per-glacier rates. Errors from scene to scene and glacier
to glacier (clouds, shadows, the debris of one tongue) average out; the missed-ice share g is one
unknown of the model and the region, so its terms add up in all three; errors one model makes on
every glacier alike (tongues it misses, fresh forefield it maps as ice) do not average out, and
the correlated sigma bounds that case. Such errors are not in the bands at all where the model is
confidently wrong; ``tau`` carries them. The three numbers come from simulated regions with known
truth (README): ``k`` from the kept glaciers' true rates, ``rho`` and ``tau`` from the regions'
true rates; the defaults (1, 0, 0) take the bands as they are.
With ``proportional`` every m_i is 0.

Area-class extrapolation. Classes of the outline area with edges
[0, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, inf] km2 (Paul et al. 2020; DL4GAM), centred (for
interpolation) at the geometric mean of their edges, at 0.05 km2 for [0, 0.1) and 40 km2 for
[20, inf). Per class c with kept glaciers::

    r_c = 100 * sum_c(A_recent - A_inv) / sum_c(A_inv * dt)     area-weighted kept rate
    sd_c = sample std of the kept glaciers' rate_pct (>= 2 of them), else the pooled
           within-class std sqrt(sum_c (n_c - 1) sd_c**2 / sum_c (n_c - 1))

A class without kept glaciers gets r_c by linear interpolation in log(centre) between its nearest
classes with kept glaciers (the end value beyond the first/last one) and the pooled std. Every
dropped glacier gets its class's r_c and sd_c (``extrapolated_rate_pct_per_yr``,
``extrapolated_sigma_pct_per_yr``). Region-wide, over ALL glaciers i (kept: estimates; dropped:
outline area ``A_out`` at the class rate)::

    c_i = change                      (kept)     c_i = A_out * r_c / 100 * dt   (dropped)
    w_i = A_base * dt                 (kept)     w_i = A_out * dt               (dropped)
    e_i = s_i / dt                    (kept)     e_i = A_out * sd_c / 100       (dropped)
    M = k * sum_kept(m_i) * sum(w_i) / sum_kept(w_i)  (the missed-ice term, scaled to every glacier;
                                                       M_yr likewise from m_i / dt)
    E**2 = k**2 * ((1 - rho) * sum_kept (e_i * dt)**2 + rho * (sum_kept e_i * dt)**2)
           + sum_dropped (e_i * dt)**2
    regionwide_rate_pct_per_yr = 100 * sum(c_i) / sum(w_i)
    regionwide_sigma_pct_per_yr = sqrt((100 * sqrt(E**2 + M**2) / sum(w_i))**2 + tau**2)
    regionwide_change_km2_per_yr = sum(c_i / dt),  its sigma sqrt(E_yr**2 + M_yr**2 + T**2)
                                   (E_yr: E of e_i; T = tau / 100 * sum(w_i / dt))

Outputs are JSON-safe: NaN and inf become None in the summaries.
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
#: the 1-sigma area bounds per epoch (predicted, visible): A_lo (p >= 0.8413), A_hi (p >= 0.1587)
BOUND_COLUMNS: tuple[str, ...] = ("area_lo_inv_km2", "area_hi_inv_km2", "area_lo_recent_km2", "area_hi_recent_km2")
FLAG_COLUMNS: tuple[str, ...] = (
    "flag_small", "flag_low_recall", "flag_low_inventory_recall", "flag_masked", "flag_low_snr",
    "flag_no_rate", "flag_extreme",
)
#: area classes of the outline area (km2) for extrapolation and the size-class figure
SIZE_CLASS_EDGES: tuple[float, ...] = (0.0, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, math.inf)
SIZE_CLASS_LABELS: tuple[str, ...] = (
    "<0.1", "0.1-0.2", "0.2-0.5", "0.5-1", "1-2", "2-5", "5-10", "10-20", ">20",
)
#: where each class sits on the log-area axis: geometric mean of its edges; 0.05 and 40 km2 for the open ends
SIZE_CLASS_CENTRES: tuple[float, ...] = (
    0.05, *(math.sqrt(lo * hi) for lo, hi in zip(SIZE_CLASS_EDGES[1:-2], SIZE_CLASS_EDGES[2:-1])), 40.0,
)


def size_class(area_km2) -> np.ndarray:
    """Index (0..8) of each outline area's class in SIZE_CLASS_EDGES (lower edge inclusive)."""
    a = np.asarray(area_km2, dtype=float)
    return np.clip(np.searchsorted(SIZE_CLASS_EDGES, a, side="right") - 1, 0, len(SIZE_CLASS_LABELS) - 1)


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
    for ep in ("inv", "recent"):
        lo_c, hi_c = f"area_lo_{ep}_km2", f"area_hi_{ep}_km2"
        if lo_c in df.columns and hi_c in df.columns:
            lo, hi = pd.to_numeric(df[lo_c], errors="coerce"), pd.to_numeric(df[hi_c], errors="coerce")
            bad = (lo < 0) | (hi < lo)  # NaN bounds pass: sigma unknown
            if bad.any():
                raise InputDataError(f"area bounds need 0 <= {lo_c} <= {hi_c}; not so for glacier(s) "
                                     f"{list(df.loc[bad, 'glacier_id'][:5])}")
    dt = pd.to_numeric(df["year_recent"]) - pd.to_numeric(df["year_inv"])
    if (dt <= 0).any():
        ids = list(df.loc[dt <= 0, "glacier_id"][:5])
        raise InputDataError(
            f"year_recent must be after year_inv; not so for glacier(s) {ids}",
            hint="the recent epoch must be later than the inventory year",
        )


def area_change_table(df: pd.DataFrame, cfg: AreaChangeConfig | None = None) -> pd.DataFrame:
    """Per-glacier corrected areas, rates, their sigmas, filter flags and class rates (new DataFrame).

    Added columns: ``dt_yr``, ``size_class``, ``area_inv_km2``, ``area_recent_km2`` (corrected
    when ``cfg.correct_masked``, else the visible predictions), ``sigma_inv_km2``,
    ``sigma_recent_km2``, ``missed_inv_km2``, ``missed_gone_km2``, ``sigma_missed_km2``,
    ``area_base_km2``, ``change_km2`` (``cfg.missed_ice``), ``sigma_change_band_km2`` (the change's
    sigma from the two epochs' bands, ``s_i`` below), ``rate_km2_per_yr``, ``rate_pct_per_yr``, ``rate_sigma_km2_per_yr``,
    ``rate_sigma_pct_per_yr``, ``snr`` (sigmas NaN without area bounds), the flags of
    FLAG_COLUMNS, ``kept``, ``reason``, and for dropped glaciers ``extrapolated_rate_pct_per_yr``
    and ``extrapolated_sigma_pct_per_yr`` (their class's, :func:`class_rates`; NaN when kept).
    """
    cfg = cfg or AreaChangeConfig()
    _validate(df)
    t = df.copy().reset_index(drop=True)
    for c in REQUIRED_COLUMNS[1:]:
        t[c] = pd.to_numeric(t[c], errors="coerce").astype(float)
    for c in BOUND_COLUMNS:
        t[c] = pd.to_numeric(t[c], errors="coerce").astype(float) if c in t.columns else np.nan

    a_out = t["area_inventory_km2"].to_numpy()
    recall = t["recall_test"].to_numpy()
    t["dt_yr"] = t["year_recent"] - t["year_inv"]
    t["size_class"] = np.asarray(SIZE_CLASS_LABELS, dtype=object)[size_class(a_out)]
    for ep in ("inv", "recent"):
        pred = t[f"pred_area_{ep}_km2"].to_numpy()
        m = t[f"masked_frac_{ep}"].to_numpy()
        half_band = (t[f"area_hi_{ep}_km2"].to_numpy() - t[f"area_lo_{ep}_km2"].to_numpy()) / 2
        if cfg.correct_masked:
            area = np.asarray(correct_masked_area(pred, m, a_out, recall), dtype=float)
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(pred > 0, area / pred, np.where(m < 1, 1.0 / (1.0 - m), np.nan))
        else:
            area, scale = pred, 1.0
        t[f"area_{ep}_km2"] = np.asarray(area, dtype=float)
        t[f"sigma_{ep}_km2"] = scale * half_band

    dt = t["dt_yr"].to_numpy()
    a_inv = t["area_inv_km2"].to_numpy()
    missed = np.clip(a_out - a_inv, 0.0, None)  # NaN stays NaN
    uniform = cfg.missed_ice == "uniform"
    t["missed_inv_km2"] = missed
    t["missed_gone_km2"] = missed / 2 if uniform else 0.0
    t["sigma_missed_km2"] = missed / math.sqrt(12.0) if uniform else 0.0
    t["area_base_km2"] = base = a_out if uniform else a_inv
    t["change_km2"] = t["area_recent_km2"].to_numpy() - a_inv - t["missed_gone_km2"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = t["change_km2"].to_numpy() / dt
        rate_pct = np.where(base > 0, 100.0 * rate / base, np.nan)
        w_inv = np.where(uniform & (missed > 0), 0.5, 1.0)  # d change / d A_inv
        t["sigma_change_band_km2"] = band = np.hypot(w_inv * t["sigma_inv_km2"].to_numpy(),
                                                     t["sigma_recent_km2"].to_numpy())
        rate_sigma = cfg.sigma_scale * np.hypot(band, t["sigma_missed_km2"].to_numpy()) / dt
        rate_sigma_pct = np.where(base > 0, 100.0 * rate_sigma / base, np.nan)
        t["snr"] = np.abs(rate) / rate_sigma
    t["rate_km2_per_yr"] = rate
    t["rate_pct_per_yr"] = rate_pct
    t["rate_sigma_km2_per_yr"] = rate_sigma
    t["rate_sigma_pct_per_yr"] = rate_sigma_pct

    t["flag_small"] = a_out < cfg.min_area_km2
    t["flag_low_recall"] = ~(recall >= cfg.min_recall)  # NaN recall -> flagged
    inv_min = cfg.min_inventory_recall
    t["flag_low_inventory_recall"] = ~(recall >= inv_min) if inv_min is not None else False
    t["flag_masked"] = (t["masked_frac_inv"] > cfg.max_masked_frac) | (
        t["masked_frac_recent"] > cfg.max_masked_frac
    )
    t["flag_low_snr"] = (cfg.min_snr > 0) & ~(np.abs(rate) >= cfg.min_snr * rate_sigma)  # NaN sigma -> flagged
    t["flag_no_rate"] = ~np.isfinite(rate_pct)
    passing = ~t[[c for c in FLAG_COLUMNS if c != "flag_extreme"]].any(axis=1)
    t["flag_extreme"] = False
    n_pass = int(passing.sum())
    n_drop = int(math.floor(cfg.drop_extreme_frac * n_pass + 1e-9))
    if n_drop > 0:
        r = t.loc[passing, "rate_pct_per_yr"]
        dev = (r - r.median()).abs()
        worst = dev.sort_values(ascending=False, kind="mergesort").index[:n_drop]
        t.loc[worst, "flag_extreme"] = True
    for c in FLAG_COLUMNS:
        t[c] = t[c].astype(bool)
    t["kept"] = ~t[list(FLAG_COLUMNS)].any(axis=1)
    names = [c.removeprefix("flag_") for c in FLAG_COLUMNS]
    t["reason"] = ["+".join(n for n, f in zip(names, row) if f) or "kept" for row in t[list(FLAG_COLUMNS)].to_numpy()]

    classes = class_rates(t).set_index("size_class")
    dropped = ~t["kept"].to_numpy()
    for col, src in (("extrapolated_rate_pct_per_yr", "rate_pct_per_yr"), ("extrapolated_sigma_pct_per_yr",
                                                                          "sd_pct_per_yr")):
        t[col] = np.where(dropped, classes.loc[t["size_class"], src].to_numpy(float), np.nan)
    return t


def class_rates(table: pd.DataFrame) -> pd.DataFrame:
    """One row per area class (SIZE_CLASS_LABELS order): ``size_class``, ``centre_km2``, ``n_kept``,
    ``rate_pct_per_yr`` (area-weighted kept rate, interpolated in log(centre) where no glacier is
    kept, constant beyond the end classes), ``sd_pct_per_yr`` (sample std of the kept rates, the
    pooled within-class std where fewer than 2 are kept), ``interpolated``. NaN rates when nothing
    is kept; NaN std when no class has 2 kept glaciers. Needs the columns of :func:`area_change_table`.
    """
    k = table[table["kept"]]
    g = k.assign(d_area=k["change_km2"], weight=k["area_base_km2"] * k["dt_yr"]).groupby("size_class")
    out = pd.DataFrame({"size_class": SIZE_CLASS_LABELS, "centre_km2": SIZE_CLASS_CENTRES}).set_index("size_class")
    out["n_kept"] = g.size().reindex(out.index, fill_value=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        measured = 100.0 * g["d_area"].sum() / g["weight"].sum()
    measured = measured.reindex(out.index).to_numpy(float)
    sd = g["rate_pct_per_yr"].std(ddof=1).reindex(out.index).to_numpy(float)
    n = out["n_kept"].to_numpy()
    dof = np.where(n >= 2, n - 1, 0)
    pooled = math.sqrt(np.nansum(dof * sd**2) / dof.sum()) if dof.sum() > 0 else math.nan
    has = np.isfinite(measured)
    x = np.log(out["centre_km2"].to_numpy())
    out["rate_pct_per_yr"] = np.interp(x, x[has], measured[has]) if has.any() else np.nan
    out["sd_pct_per_yr"] = np.where(n >= 2, sd, pooled)
    out["interpolated"] = ~has
    return out.reset_index()


def _num(x: Any) -> float | None:
    """JSON-safe float (NaN/inf -> None)."""
    x = float(x)
    return x if math.isfinite(x) else None


def regional_summary(table: pd.DataFrame, cfg: AreaChangeConfig | None = None) -> dict[str, Any]:
    """Regional figures from :func:`area_change_table` (JSON-safe dict; formulas in the module doc).

    Kept glaciers: ``rate_pct_per_yr`` (summed areas, so large glaciers weigh more) with
    ``rate_sigma_independent_pct_per_yr`` and ``rate_sigma_correlated_pct_per_yr`` (headline
    ``rate_sigma_pct_per_yr``: band errors correlated by ``cfg.band_correlation``, scaled by
    ``cfg.sigma_scale``, with ``cfg.discrepancy_pct_per_yr``; None unless every kept glacier has a
    sigma), the three numbers and the sigma's three parts before them,
    ``rate_km2_per_yr`` (total area change per year) with its two sigmas; all glaciers:
    ``regionwide_rate_pct_per_yr``, ``regionwide_sigma_pct_per_yr``, ``regionwide_change_km2_per_yr``,
    ``regionwide_change_sigma_km2_per_yr``, ``n_extrapolated``; ``size_classes`` (the rows of
    :func:`class_rates`). Also the median and mean per-glacier %/yr rate, counts per filter (a
    glacier can have several flags) and total areas. NaN -> None.
    """
    missing = [c for c in ("kept", "rate_pct_per_yr", "area_inv_km2", "area_recent_km2", "dt_yr", "size_class",
                           "change_km2", "area_base_km2", "sigma_change_band_km2", "sigma_missed_km2",
                           "rate_sigma_km2_per_yr", "extrapolated_rate_pct_per_yr",
                           "extrapolated_sigma_pct_per_yr", *FLAG_COLUMNS) if c not in table.columns]
    if missing:
        raise InputDataError(
            f"regional_summary needs the output of area_change_table; missing: {', '.join(missing)}"
        )
    kept = table["kept"].to_numpy(bool)
    k = table[kept]
    denom = float((k["area_base_km2"] * k["dt_yr"]).sum())
    rate_pct = 100.0 * float(k["change_km2"].sum()) / denom if denom > 0 else float("nan")
    dt = k["dt_yr"].to_numpy(float)
    s_change = k["sigma_change_band_km2"].to_numpy(float)  # NaN: unknown
    m_change = k["sigma_missed_km2"].to_numpy(float)
    cfg = cfg or AreaChangeConfig()
    rho, kappa, tau = cfg.band_correlation, cfg.sigma_scale, cfg.discrepancy_pct_per_yr
    headline, independent, correlated = _sigma_sums(s_change, m_change, rho)
    headline_yr, _, correlated_yr = _sigma_sums(s_change / dt, m_change / dt, rho)
    pct = 100.0 / denom if denom > 0 else float("nan")  # denom > 0: something kept
    some = 1.0 if len(k) else float("nan")  # empty sums are unknown, not 0
    tau_yr = tau / 100.0 * float(k["area_base_km2"].sum())  # tau in km2/yr of the kept glaciers

    def scaled(x: float, t: float) -> float:  # S(x) of the module doc
        return math.hypot(kappa * x, t)

    a_inv_sum = float(k["area_inv_km2"].sum())
    return {
        "n_total": int(len(table)),
        "n_kept": int(len(k)),
        **{f"n_{c.removeprefix('flag_')}": int(table[c].sum()) for c in FLAG_COLUMNS},
        "rate_pct_per_yr": _num(rate_pct),
        "rate_sigma_pct_per_yr": _num(scaled(pct * headline, tau)),
        "rate_sigma_independent_pct_per_yr": _num(scaled(pct * independent, tau)),
        "rate_sigma_correlated_pct_per_yr": _num(scaled(pct * correlated, tau)),
        "sigma_scale": kappa,
        "band_correlation": rho,
        "discrepancy_pct_per_yr": tau,
        "rate_sigma_band_independent_pct_per_yr": _num(pct * _band_sum(s_change, 0.0)),
        "rate_sigma_band_correlated_pct_per_yr": _num(pct * _band_sum(s_change, 1.0)),
        "rate_sigma_missed_pct_per_yr": _num(pct * m_change.sum()),
        "rate_km2_per_yr": _num(some * k["rate_km2_per_yr"].sum()),
        "rate_sigma_km2_per_yr": _num(some * scaled(headline_yr, tau_yr)),
        "rate_sigma_correlated_km2_per_yr": _num(some * scaled(correlated_yr, tau_yr)),
        "missed_inv_kept_km2": _num(some * k["missed_inv_km2"].sum()),
        "missed_gone_kept_km2": _num(some * k["missed_gone_km2"].sum()),
        **_regionwide(table, kept, cfg),
        "median_glacier_rate_pct_per_yr": _num(k["rate_pct_per_yr"].median()) if len(k) else None,
        "mean_glacier_rate_pct_per_yr": _num(k["rate_pct_per_yr"].mean()) if len(k) else None,
        "area_outline_total_km2": _num(table["area_inventory_km2"].sum()),
        "area_outline_kept_km2": _num(k["area_inventory_km2"].sum()),
        "area_inv_kept_km2": _num(a_inv_sum),
        "area_recent_kept_km2": _num(k["area_recent_km2"].sum()),
        "kept_area_share": _num(k["area_inventory_km2"].sum() / table["area_inventory_km2"].sum())
        if float(table["area_inventory_km2"].sum()) > 0 else None,
        "mean_dt_yr": _num(k["dt_yr"].mean()) if len(k) else None,
        "size_classes": [{c: (_num(v) if isinstance(v, float) else v) for c, v in r.items()}
                         for r in class_rates(table).astype(object).to_dict("records")],
    }


def _band_sum(s: np.ndarray, rho: float) -> float:
    """Sigma of a sum of errors with sigmas s_i, every pair correlated by rho:
    sqrt((1 - rho) * sum s_i**2 + rho * (sum s_i)**2) (rho = 0: in quadrature; 1: added up)."""
    return float(np.sqrt((1.0 - rho) * (s**2).sum() + rho * s.sum() ** 2))


def _sigma_sums(s: np.ndarray, m: np.ndarray, rho: float) -> tuple[float, float, float]:
    """(headline, independent, correlated) sigma of a sum of glaciers: band sigmas s_i correlated by
    rho, independent or all aligned; the missed-ice sigmas m_i (one unknown share g) added up in all."""
    return (float(math.hypot(_band_sum(s, rho), m.sum())), float(math.hypot(_band_sum(s, 0.0), m.sum())),
            float(s.sum() + m.sum()))


def _regionwide(table: pd.DataFrame, kept: np.ndarray, cfg: AreaChangeConfig) -> dict[str, Any]:
    """Region-wide rate over all glaciers: kept ones measured (band errors correlated by rho and
    scaled by k), dropped ones at their class rate; the regional discrepancy tau on top."""
    rho, kappa, tau = cfg.band_correlation, cfg.sigma_scale, cfg.discrepancy_pct_per_yr
    dt = table["dt_yr"].to_numpy(float)
    a_out = table["area_inventory_km2"].to_numpy(float)
    change = np.where(kept, table["change_km2"].to_numpy(float),
                      a_out * table["extrapolated_rate_pct_per_yr"].to_numpy(float) / 100 * dt)
    weight = np.where(kept, table["area_base_km2"].to_numpy(float), a_out) * dt
    sigma = np.where(kept, table["sigma_change_band_km2"].to_numpy(float) / dt,
                     a_out * table["extrapolated_sigma_pct_per_yr"].to_numpy(float) / 100)
    denom, kept_weight = weight.sum(), weight[kept].sum()
    m = table["sigma_missed_km2"].to_numpy(float)[kept]  # scaled from the kept glaciers to every glacier
    scale = denom / kept_weight if kept_weight > 0 else 0.0
    missed, missed_yr = kappa * m.sum() * scale, kappa * (m / dt[kept]).sum() * scale
    tau_yr = tau / 100.0 * float((weight / dt).sum())

    def spread(e: np.ndarray) -> float:  # E of the module doc: kept band errors correlated, dropped not
        return math.hypot(kappa * _band_sum(e[kept], rho), _band_sum(e[~kept], 0.0))

    return {
        "regionwide_rate_pct_per_yr": _num(100 * change.sum() / denom) if denom > 0 else None,
        "regionwide_sigma_pct_per_yr": _num(math.hypot(100 * math.hypot(spread(sigma * dt), missed) / denom, tau))
        if denom > 0 else None,
        "regionwide_change_km2_per_yr": _num((change / dt).sum()),
        "regionwide_change_sigma_km2_per_yr": _num(math.hypot(spread(sigma), missed_yr, tau_yr)),
        "n_extrapolated": int(np.isfinite(table["extrapolated_rate_pct_per_yr"].to_numpy(float)).sum()),
    }


def compare_with_truth(table: pd.DataFrame, truth_rates: pd.DataFrame) -> dict[str, Any]:
    """Kept glaciers' predicted vs true per-glacier %/yr rates.

    Returns ``n`` (kept glaciers with a finite true rate), ``pearson_r`` (None if n < 2 or a
    constant series), ``mae`` = mean|pred - true|, ``bias`` = mean(pred - true), ``rmse``;
    ``glacier_cover_1sigma`` / ``glacier_cover_2sigma``: the fraction of those with a sigma
    (``n_with_sigma`` of them) whose true rate lies within 1 / 2 ``rate_sigma_pct_per_yr`` of the
    estimate (a calibrated sigma covers about 68 % / 95 %); and, if the truth has true areas
    (``area_inventory_km2``, ``area_recent_km2``, ``dt_years``), the kept glaciers' true regional
    rate and the relative error of their summed predicted area per epoch
    (``kept_true_rate_pct_per_yr``, ``kept_area_error_inv_pct``, ``kept_area_error_recent_pct``).
    """
    missing = [c for c in ("glacier_id", "true_rate_pct_per_yr") if c not in truth_rates.columns]
    if missing:
        raise InputDataError(f"truth rates table is missing column(s): {', '.join(missing)}")
    for c in ("glacier_id", "kept", "rate_pct_per_yr", "rate_sigma_pct_per_yr"):
        if c not in table.columns:
            raise InputDataError(f"area-change table is missing column {c!r} (run area_change_table)")
    m = table.loc[table["kept"], ["glacier_id", "rate_pct_per_yr", "rate_sigma_pct_per_yr"]].merge(
        truth_rates[["glacier_id", "true_rate_pct_per_yr"]], on="glacier_id", how="inner"
    )
    m = m[np.isfinite(m["rate_pct_per_yr"]) & np.isfinite(m["true_rate_pct_per_yr"].astype(float))]
    n = int(len(m))
    if n == 0:
        return {"n": 0, "pearson_r": None, "mae": None, "bias": None, "rmse": None, "n_with_sigma": 0,
                "glacier_cover_1sigma": None, "glacier_cover_2sigma": None}
    pred = m["rate_pct_per_yr"].to_numpy(float)
    true = m["true_rate_pct_per_yr"].to_numpy(float)
    sigma = m["rate_sigma_pct_per_yr"].to_numpy(float)
    err = pred - true
    r = float("nan")
    if n >= 2 and np.std(pred) > 0 and np.std(true) > 0:
        r = float(np.corrcoef(pred, true)[0, 1])
    has = np.isfinite(sigma)
    cover = {f"glacier_cover_{k}sigma": _num(np.mean(np.abs(err[has]) <= k * sigma[has])) if has.any() else None
             for k in (1, 2)}
    return {
        "n": n,
        "pearson_r": _num(r),
        "mae": _num(np.abs(err).mean()),
        "bias": _num(err.mean()),
        "rmse": _num(np.sqrt((err**2).mean())),
        "n_with_sigma": int(has.sum()),
        **cover,
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
