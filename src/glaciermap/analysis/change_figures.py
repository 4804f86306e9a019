"""Area-change figures (PNG): rate by size class (paper Fig. 2) and predicted vs inventory area."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from glaciermap.errors import InputDataError  # noqa: E402
from glaciermap.io import atomic_path  # noqa: E402

SIZE_CLASS_EDGES: tuple[float, ...] = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, np.inf)
SIZE_CLASS_LABELS: tuple[str, ...] = (
    "0.1-0.2", "0.2-0.5", "0.5-1", "1-2", "2-5", "5-10", "10-20", ">20",
)


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


def size_classes(area_km2) -> pd.Categorical:
    """Paper size class of each inventory area (NaN below 0.1 km2)."""
    return pd.cut(np.asarray(area_km2, float), bins=list(SIZE_CLASS_EDGES),
                  labels=list(SIZE_CLASS_LABELS), right=False)


def rate_by_size_class_figure(table: pd.DataFrame, path: str | Path) -> Path:
    """Boxplot of per-glacier %/yr rate of kept glaciers per inventory-area size class.

    Each class is annotated with its glacier count and its share of the kept inventory area.
    """
    _need(table, ("area_inventory_km2", "rate_pct_per_yr", "kept"))
    k = table[table["kept"]].copy()
    k["size_class"] = size_classes(k["area_inventory_km2"])
    total = float(k["area_inventory_km2"].sum())
    fig, ax = plt.subplots(figsize=(8, 4.2))
    data, pos = [], []
    for i, lab in enumerate(SIZE_CLASS_LABELS):
        r = k.loc[k["size_class"] == lab, "rate_pct_per_yr"].to_numpy(float)
        r = r[np.isfinite(r)]
        if len(r):
            data.append(r)
            pos.append(i)
    if data:
        ax.boxplot(data, positions=pos, widths=0.6, showfliers=True)
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    y0, y1 = ax.get_ylim()
    ax.set_ylim(y0, y1 + 0.18 * (y1 - y0))  # headroom for the n / area-share labels
    ax.set_xticks(range(len(SIZE_CLASS_LABELS)))
    ax.set_xticklabels(SIZE_CLASS_LABELS)
    ax.set_xlim(-0.6, len(SIZE_CLASS_LABELS) - 0.4)
    ax.set_xlabel("inventory area class (km$^2$)")
    ax.set_ylabel("area change rate (% / yr)")
    ax.set_title(f"Area change rate by size class (kept glaciers: {len(k)})", fontsize=10)
    for i, lab in enumerate(SIZE_CLASS_LABELS):
        sel = k["size_class"] == lab
        share = 100.0 * float(k.loc[sel, "area_inventory_km2"].sum()) / total if total > 0 else 0.0
        ax.annotate(f"n={int(sel.sum())}\n{share:.0f}% area", (i, 1.0),
                    xycoords=("data", "axes fraction"), xytext=(0, -4),
                    textcoords="offset points", ha="center", va="top", fontsize=7)
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
