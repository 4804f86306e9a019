"""What a study found: best trial, trial table, and Optuna's plots, logged to the study's MLflow run."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

log = logging.getLogger(__name__)

#: Optuna plots: (file stem, function name in optuna.visualization[.matplotlib], completed trials needed).
PLOTS = (
    ("optimization_history", "plot_optimization_history", 1),
    ("intermediate_values", "plot_intermediate_values", 1),
    ("param_importances", "plot_param_importances", 2),
)


def summary(study: optuna.Study) -> dict[str, Any]:
    """Counts per state and the best trial (if any trial completed)."""
    counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in TrialState}
    out: dict[str, Any] = {"study": study.study_name, "trials": counts}
    if counts["complete"]:
        best = study.best_trial
        out.update(best_value=best.value, best_trial=best.number, best_params=best.params)
    return out


def write_plots(study: optuna.Study, out_dir: Path) -> list[Path]:
    """PNG (matplotlib) and interactive HTML (plotly) of Optuna's standard study plots."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    written: list[Path] = []
    for stem, fn, needed in PLOTS:
        if n_complete < needed:
            continue
        try:
            ax = getattr(optuna.visualization.matplotlib, fn)(study)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 5)
            fig.tight_layout()
            fig.savefig(out_dir / f"{stem}.png", dpi=100)
            plt.close(fig)
            written.append(out_dir / f"{stem}.png")
            getattr(optuna.visualization, fn)(study).write_html(out_dir / f"{stem}.html", include_plotlyjs="cdn")
            written.append(out_dir / f"{stem}.html")
        except (ValueError, RuntimeError) as err:  # e.g. importances of a single-valued space
            log.warning("skipped the %s plot: %s", stem, err)
    return written


def log_study(client: MlflowClient, parent_run_id: str, study: optuna.Study) -> dict[str, Any]:
    """Best value/params, the trial table and the plots, on the study's parent run."""
    info = summary(study)
    for state, n in info["trials"].items():
        client.log_metric(parent_run_id, f"trials_{state}", n)
    if "best_value" in info:
        client.log_metric(parent_run_id, "best_val_iou", info["best_value"])
        for k, v in info["best_params"].items():
            client.set_tag(parent_run_id, f"best.{k}", str(v))
    client.log_dict(parent_run_id, info, "study/summary.json")
    with tempfile.TemporaryDirectory() as tmp:
        table = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration"))
        table.to_csv(Path(tmp) / "trials.csv", index=False)
        client.log_artifact(parent_run_id, str(Path(tmp) / "trials.csv"), "study")
        for path in write_plots(study, Path(tmp) / "plots"):
            client.log_artifact(parent_run_id, str(path), "study/plots")
    return info
