"""`glaciermap compare`: which architecture and which sensors map glaciers best here, in one table.

Reads what the pipeline's stages already wrote for every (model, sensor set) of `train.models` x
`train.sensor_sets`, checks each file is the configuration it is named after, and writes

    results.json   {"rows": [row, ...], "settings": {...}}   (experiments/compare, issue #17)
    results.md     the rows as a markdown table, best mean test IoU first
    compare.png    test IoU per fold, debris-covered IoU, and regional rate error, per configuration

A row, from `metrics/evaluate/<model>_<set>.json` (test glaciers of each fold, mapped by the
members that held them out) and `metrics/area_change/<model>_<set>.json` (area-change stage on
that configuration's predictions):

    iou_mean, iou_std      over the folds (population std, as evaluate reports it)
    iou_min_fold           the worst fold's test IoU
    debris_iou, clean_iou  mean over folds of the IoU on debris-covered / clean ice (metrics.py)
    rate_error_pct_per_yr  est - true regional rate of the kept glaciers (simulated regions only;
                           null for a real region), with its sigma beside it

Each (model, sensor set) is also an MLflow parent run (evaluate and area-change log to it), which
the MLflow UI compares side by side.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from glaciermap.config import Params  # noqa: E402
from glaciermap.errors import InputDataError  # noqa: E402
from glaciermap.io import atomic_path, write_json, write_text  # noqa: E402

#: the issue's row keys, in order (more keys follow them)
ROW_KEYS = ("model", "sensor_set", "iou_mean", "iou_std", "iou_min_fold", "debris_iou", "clean_iou",
            "rate_error_pct_per_yr")


def _read(path: Path, stage: str, model: str, sensor_set: str) -> dict[str, Any]:
    hint = f"run the {stage} stage for {model}/{sensor_set} (`dvc repro`)"
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputDataError("file missing", path=path, hint=hint) from None
    except ValueError as err:
        raise InputDataError(f"not JSON ({err})", path=path, hint=hint) from None
    made_by = (obj.get("model"), obj.get("sensor_set"))
    if made_by != (model, sensor_set):
        raise InputDataError(f"written for {made_by[0]}/{made_by[1]}, not {model}/{sensor_set}", path=path,
                             hint=f"re-run the {stage} stage for {model}/{sensor_set}")
    return obj


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and not np.isfinite(x)) else float(x)


def comparison_row(evaluation: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """One (model, sensor set): accuracy over the folds, on debris and clean ice, and the rate error."""
    folds = evaluation["folds"]
    mean = evaluation["mean"]
    truth = change.get("truth") or {}
    return {
        "model": evaluation["model"], "sensor_set": evaluation["sensor_set"],
        "iou_mean": _num(mean["iou_mean"]), "iou_std": _num(mean["iou_std"]),
        "iou_min_fold": _num(min(f["iou"] for f in folds.values())),
        "debris_iou": _num(mean.get("debris_iou_mean")), "clean_iou": _num(mean.get("clean_iou_mean")),
        "rate_error_pct_per_yr": _num(truth.get("regional_rate_error_pct_per_yr")),
        "iou_folds": {k: _num(f["iou"]) for k, f in folds.items()},
        "debris_recall": _num(mean.get("debris_recall_mean")),
        "rate_pct_per_yr": _num(change.get("rate_pct_per_yr")),
        "rate_sigma_pct_per_yr": _num(change.get("rate_sigma_pct_per_yr")),
        "true_rate_pct_per_yr": _num(truth.get("true_regional_rate_pct_per_yr")),
        "regionwide_rate_error_pct_per_yr": _num(truth.get("regionwide_rate_error_pct_per_yr")),
        "n_kept": change.get("n_kept"), "n_total": change.get("n_total"),
    }


def settings(params: Params) -> dict[str, Any]:
    """What the rows were measured on: the region, folds, training size and each model's build."""
    p = params
    return {
        "region": p.simulate.model_dump(mode="json", include={"name", "seed", "width_km", "height_km", "n_glaciers",
                                                               "debris_fraction", "cloud_cover",
                                                               "regional_rate_pct_per_yr"}),
        "folds": list(p.train.folds), "k": p.folds.k, "seeds": list(p.train.seeds),
        "max_epochs": p.train.max_epochs, "samples_per_epoch": p.patches.samples_per_epoch,
        "patch_size": p.patches.size, "batch_size": p.patches.batch_size, "loss": p.train.loss, "lr": p.train.lr,
        "models": {m: p.models[m].model_dump(mode="json", exclude_defaults=True) for m in p.train.models},
        "sensor_sets": {s: list(p.sensors.sets[s]) for s in p.train.sensor_sets},
    }


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows as a markdown table, in the given order."""
    def f(x: float | None, fmt: str = ".3f") -> str:
        return "n/a" if x is None else format(x, fmt)

    lines = ["| model | sensor set | test IoU (mean +- sd) | worst fold | debris IoU | clean IoU "
             "| rate error %/yr (sigma) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        err = "n/a" if r["rate_error_pct_per_yr"] is None else \
            f"{r['rate_error_pct_per_yr']:+.2f} ({f(r['rate_sigma_pct_per_yr'], '.2f')})"
        lines.append(f"| {r['model']} | {r['sensor_set']} | {f(r['iou_mean'])} +- {f(r['iou_std'])} "
                     f"| {f(r['iou_min_fold'])} | {f(r['debris_iou'])} | {f(r['clean_iou'])} | {err} |")
    return "\n".join(lines) + "\n"


def comparison_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Three panels sharing the configurations: test IoU per fold (dots) and mean (bar), debris vs
    clean IoU, and the regional rate error with its 1-sigma bar."""
    def low(values: list, floor: float) -> float:  # axis start: `floor`, lower where the data need it
        v = [x for x in values if x is not None and np.isfinite(x)]
        return max(0.0, min([floor, *(x - 0.05 for x in v)]))

    labels = [f"{r['model']}\n{r['sensor_set']}" for r in rows]
    y = np.arange(len(rows))
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.45 * len(rows) + 1.6), sharey=True)
    ax = axes[0]
    ax.barh(y, [r["iou_mean"] or 0 for r in rows], color="#9ecae1")
    for i, r in enumerate(rows):
        folds = [v for v in r["iou_folds"].values() if v is not None]
        ax.plot(folds, [i] * len(folds), "k.", ms=5)
    ax.set(xlabel="test IoU (bar: mean, dots: folds)",
           xlim=(low([v for r in rows for v in r["iou_folds"].values()], 0.5), 1.0))
    ax = axes[1]
    ax.barh(y - 0.2, [r["debris_iou"] or 0 for r in rows], 0.4, color="#a6761d", label="debris-covered")
    ax.barh(y + 0.2, [r["clean_iou"] or 0 for r in rows], 0.4, color="#80b1d3", label="clean ice")
    ax.set(xlabel="IoU by surface", xlim=(low([r[k] for r in rows for k in ("debris_iou", "clean_iou")], 0.3), 1.0))
    ax.legend(loc="lower left", fontsize=8)
    ax = axes[2]
    err = [np.nan if r["rate_error_pct_per_yr"] is None else r["rate_error_pct_per_yr"] for r in rows]
    sig = [0 if r["rate_sigma_pct_per_yr"] is None else r["rate_sigma_pct_per_yr"] for r in rows]
    ax.errorbar(err, y, xerr=sig, fmt="o", color="k", capsize=3)
    ax.axvline(0, color="grey", lw=0.8)
    ax.axvspan(-0.3, 0.3, color="#c7e9c0", alpha=0.6, lw=0)
    reach = max([1.0, *(1.3 * abs(e) for e in err if np.isfinite(e))])  # sigma bars beyond it are cut
    ax.set(xlabel="regional rate: est - true (%/yr; green: +-0.3)", xlim=(-reach, reach))
    axes[0].set_yticks(y, labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def compare(params: Params, evaluate_dir: Path, change_dir: Path, out: Path, table: Path | None = None,
            figure: Path | None = None) -> dict[str, Any]:
    """Collect every configuration's row (best mean test IoU first), then write JSON, table and figure.
    Every input is read and checked before anything is written."""
    rows = []
    for model in params.train.models:
        for sensor_set in params.train.sensor_sets:
            name = f"{model}_{sensor_set}.json"
            rows.append(comparison_row(_read(evaluate_dir / name, "evaluate", model, sensor_set),
                                       _read(change_dir / name, "area_change", model, sensor_set)))
    rows.sort(key=lambda r: -(r["iou_mean"] if r["iou_mean"] is not None else -1.0))
    result = {"rows": rows, "settings": settings(params)}
    write_json(out, result)
    if table is not None:
        write_text(table, markdown_table(rows))
    if figure is not None:
        comparison_figure(rows, figure)
    return result
