"""Area-change figures (PNG): rate by size class (paper Fig. 2, with 1-sigma error bars and the
extrapolated glaciers) and predicted vs inventory area."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from glaciermap.analysis.area_change import SIZE_CLASS_LABELS, class_rates  # noqa: E402
from glaciermap.errors import InputDataError  # noqa: E402
from glaciermap.io import atomic_path  # noqa: E402


def _need(table: pd.DataFrame, cols: tuple[str, ...]) -> None:
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise InputDataError(
            f"figure needs the output of area_change_table; missing column(s): {', '.join(missing)}"
        )


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def _positions(frame: pd.DataFrame, width: float = 0.5) -> np.ndarray:
    """x of each row: its size class's index, the rows of one class spread evenly across `width`."""
    index = frame["size_class"].map({lab: i for i, lab in enumerate(SIZE_CLASS_LABELS)}).to_numpy(float)
    groups = frame.groupby("size_class")
    rank, n = groups.cumcount().to_numpy(float), groups["size_class"].transform("size").to_numpy(float)
    return index + (rank - (n - 1) / 2) * width / n


def rate_by_size_class_figure(table: pd.DataFrame, path: str | Path) -> Path:
    """Per-glacier %/yr rates per outline-area class (:data:`SIZE_CLASS_LABELS`).

    Kept glaciers: a boxplot per class and each glacier with its 1-sigma error bar
    (``rate_sigma_pct_per_yr``; none without area bounds). The class rate that dropped glaciers get
    (:func:`~glaciermap.analysis.area_change.class_rates`): a diamond with the class spread, hollow
    where interpolated from neighbouring classes; the dropped (extrapolated) glaciers: grey crosses
    at it. Each class is annotated with its kept (n) and extrapolated (+) counts and its share of the
    kept outline area.
    """
    _need(table, ("area_inventory_km2", "size_class", "rate_pct_per_yr", "rate_sigma_pct_per_yr", "kept",
                  "extrapolated_rate_pct_per_yr"))
    k = table[table["kept"] & np.isfinite(table["rate_pct_per_yr"])]
    dropped = table[~table["kept"] & np.isfinite(table["extrapolated_rate_pct_per_yr"])]
    classes = class_rates(table)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    boxes = [(i, k.loc[k["size_class"] == lab, "rate_pct_per_yr"].to_numpy(float))
             for i, lab in enumerate(SIZE_CLASS_LABELS)]
    boxes = [(i, r) for i, r in boxes if len(r)]
    if boxes:
        grey = {"color": "0.65"}
        ax.boxplot([r for _, r in boxes], positions=[i for i, _ in boxes], widths=0.6, showfliers=False,
                   boxprops=grey, whiskerprops=grey, capprops=grey, medianprops=grey)
        ax.errorbar(_positions(k), k["rate_pct_per_yr"], yerr=np.nan_to_num(k["rate_sigma_pct_per_yr"].to_numpy(float)),
                    fmt="o", ms=3, color="tab:blue", elinewidth=0.8, capsize=0, label="kept glacier, 1 sigma")
    if len(dropped):
        ax.plot(_positions(dropped), dropped["extrapolated_rate_pct_per_yr"], "x", ms=4, color="0.45",
                label="dropped glacier: class rate")
    has_rate = np.isfinite(classes["rate_pct_per_yr"].to_numpy(float))
    for interpolated, label in ((False, "class rate, +- spread"), (True, "class rate, interpolated")):
        c = classes[has_rate & (classes["interpolated"] == interpolated)]
        if len(c):
            ax.errorbar(c.index + 0.38, c["rate_pct_per_yr"], yerr=np.nan_to_num(c["sd_pct_per_yr"].to_numpy(float)),
                        fmt="D", ms=5, color="tab:orange", mfc="white" if interpolated else "tab:orange",
                        capsize=2, elinewidth=0.8, label=label)
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    y0, y1 = ax.get_ylim()
    ax.set_ylim(y0, y1 + 0.2 * (y1 - y0))  # headroom for the count / area-share labels
    ax.set_xticks(range(len(SIZE_CLASS_LABELS)))
    ax.set_xticklabels(SIZE_CLASS_LABELS)
    ax.set_xlim(-0.6, len(SIZE_CLASS_LABELS) - 0.4)
    ax.set_xlabel("inventory area class (km$^2$)")
    ax.set_ylabel("area change rate (% / yr)")
    ax.set_title(f"Area change rate by size class (kept glaciers: {len(k)}, extrapolated: {len(dropped)})",
                 fontsize=10)
    total = float(k["area_inventory_km2"].sum())
    for i, lab in enumerate(SIZE_CLASS_LABELS):
        sel = k["size_class"] == lab
        share = 100.0 * float(k.loc[sel, "area_inventory_km2"].sum()) / total if total > 0 else 0.0
        ax.annotate(f"n={int(sel.sum())} +{int((dropped['size_class'] == lab).sum())}\n{share:.0f}% area", (i, 1.0),
                    xycoords=("data", "axes fraction"), xytext=(0, -4),
                    textcoords="offset points", ha="center", va="top", fontsize=7)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _mae_bias(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    ok = np.isfinite(pred) & np.isfinite(ref)
    if not ok.any():
        return float("nan"), float("nan")
    err = pred[ok] - ref[ok]
    return float(np.abs(err).mean()), float(err.mean())


def area_scatter_figure(table: pd.DataFrame, path: str | Path) -> Path:
    """Predicted (corrected) inventory-year area vs outline area, log axes, 1:1 line.

    MAE and bias (predicted - outline, km2) are annotated for all glaciers and for kept ones.
    """
    _need(table, ("area_inventory_km2", "area_inv_km2", "kept"))
    ref = table["area_inventory_km2"].to_numpy(float)
    pred = table["area_inv_km2"].to_numpy(float)
    kept = table["kept"].to_numpy(bool)
    pos = (ref > 0) & (pred > 0) & np.isfinite(ref) & np.isfinite(pred)
    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.scatter(ref[pos & ~kept], pred[pos & ~kept], s=10, c="lightgrey", label="filtered out")
    ax.scatter(ref[pos & kept], pred[pos & kept], s=10, c="tab:blue", label="kept")
    if pos.any():
        lo = min(ref[pos].min(), pred[pos].min()) * 0.8
        hi = max(ref[pos].max(), pred[pos].max()) * 1.25
    else:
        lo, hi = 0.05, 100.0
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="1:1")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("inventory outline area (km$^2$)")
    ax.set_ylabel("predicted area, inventory year (km$^2$)")
    mae_all, bias_all = _mae_bias(pred, ref)
    mae_k, bias_k = _mae_bias(pred[kept], ref[kept])
    ax.text(0.03, 0.97,
            f"all (n={len(ref)}): MAE {mae_all:.3f}, bias {bias_all:+.3f} km$^2$\n"
            f"kept (n={int(kept.sum())}): MAE {mae_k:.3f}, bias {bias_k:+.3f} km$^2$",
            transform=ax.transAxes, va="top", fontsize=8)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
