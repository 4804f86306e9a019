"""End to end: `dvc repro` on the tiny profile in a temporary copy of the project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def repro(tmp_path_factory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, work / name)
    for name in ("experiments", "src"):
        shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(work / "src")}
    env.pop("MLFLOW_TRACKING_URI", None)
    run(["dvc", "init", "--no-scm", "-q"], work, env)
    run(["glaciermap", "config", "apply", "experiments/tiny.yaml"], work, env)
    run(["glaciermap", "-q", "simulate"], work, env)
    run(["dvc", "add", "-q", "data"], work, env)
    run(["dvc", "repro"], work, env)
    return work, env


def test_stage_outputs_exist(repro):
    work, _ = repro
    assert (work / "products/cubes/index.csv").exists()
    folds = json.loads((work / "products/folds.json").read_text())["folds"]
    assert len(folds) == 2
    for f in (0, 1):
        run_dir = work / f"runs/unet/optical_dem/fold{f}"
        assert (run_dir / "model/model.safetensors").exists()
        assert (run_dir / "checkpoints/last.ckpt").exists()
        assert (work / f"metrics/train/unet_optical_dem_fold{f}_history.csv").exists()
    ev = json.loads((work / "metrics/evaluate/unet_optical_dem.json").read_text())
    assert set(ev["folds"]) == {"fold0", "fold1"}
    assert 0.0 <= ev["mean"]["iou_mean"] <= 1.0
    assert all(r["n_glaciers"] > 0 and r["n_patches"] > 0 for r in ev["folds"].values())


def test_mlflow_holds_parent_and_fold_runs(repro):
    work, _ = repro
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("glaciermap")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("glaciermap.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1
    assert sorted(r.data.tags["glaciermap.fold"] for r in children) == ["0", "1"]
    for r in children:
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert r.info.status == "FINISHED"
        assert "best_val_iou" in r.data.metrics and "val_iou" in r.data.metrics
        assert r.data.tags["glaciermap.model"] == "unet"
        assert r.data.tags["glaciermap.sensor_set"] == "optical_dem"
        assert "dvc_data_md5" in r.data.tags and "git_commit" in r.data.tags
        assert r.data.params["train.max_epochs"] == "1"
    assert "test_iou_mean" in parents[0].data.metrics


def test_dvc_metrics_show_prints_evaluation(repro):
    work, env = repro
    out = run(["dvc", "metrics", "show", "--json"], work, env).stdout
    assert "iou_mean" in out and "best_val_iou" in out


def test_repro_is_up_to_date_afterwards(repro):
    work, env = repro
    out = run(["dvc", "status"], work, env).stdout
    assert "changed" not in out


def test_rerun_resumes_from_last_checkpoint_in_the_same_mlflow_run(repro):
    """Runs last: it extends fold 0 by one epoch, as a re-run after an interruption would."""
    work, env = repro
    run_dir = work / "runs/unet/optical_dem/fold0"
    run_id = (run_dir / "mlflow_run_id").read_text()
    history = work / "metrics/train/unet_optical_dem_fold0_history.csv"
    first = history.read_text().splitlines()
    (work / "more.yaml").write_text("train: {max_epochs: 2}\n")
    run(["glaciermap", "config", "apply", "more.yaml"], work, env)
    run(["glaciermap", "-q", "train", "--model", "unet", "--sensors", "optical_dem", "--fold", "0"], work, env)
    rows = history.read_text().splitlines()
    assert rows[:2] == first[:2]  # epoch 0 kept, not retrained
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    assert (run_dir / "mlflow_run_id").read_text() == run_id
