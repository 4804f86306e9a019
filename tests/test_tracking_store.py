"""Where MLflow keeps a command's runs and models: beside the database it was pointed at."""

from __future__ import annotations

from pathlib import Path

import mlflow

from glaciermap.config import TrackingConfig
from glaciermap.tracking.runs import EXPERIMENT_KIND, experiment_id, resolve_tracking_uri


def test_a_new_experiment_keeps_artifacts_beside_its_sqlite_database(tmp_path, monkeypatch):
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # MLflow's default would be ./mlruns of wherever the command runs
    store = tmp_path / "store"
    resolve_tracking_uri(TrackingConfig(tracking_uri=f"sqlite:///{store / 'mlflow.db'}"))
    exp = mlflow.get_experiment(experiment_id("demo"))
    assert Path(exp.artifact_location.removeprefix("file://")) == store / "mlruns"
    assert exp.tags[EXPERIMENT_KIND[0]] == "custom_model_development"
    with mlflow.start_run(experiment_id=exp.experiment_id):
        mlflow.log_text("x", "a.txt")
    assert list((store / "mlruns").rglob("a.txt")) and not (elsewhere / "mlruns").exists()


def test_an_older_experiment_gets_its_kind(tmp_path):
    resolve_tracking_uri(TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"))
    old = mlflow.create_experiment("made-before")  # as glaciermap used to: no kind tag
    assert experiment_id("made-before") == old
    assert mlflow.get_experiment(old).tags[EXPERIMENT_KIND[0]] == "custom_model_development"


def test_the_runs_page_names_an_existing_experiment_and_creates_none(tmp_path):
    from types import SimpleNamespace

    from glaciermap.tracking.runs import runs_page

    params = SimpleNamespace(tracking=TrackingConfig(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                                                     experiment="compare-here"))
    assert runs_page(params) is None  # no such experiment yet: no link, and asking made none
    assert mlflow.get_experiment_by_name("compare-here") is None
    exp = experiment_id("compare-here")
    page = runs_page(params, "rate_error", ascending=True)
    assert page.startswith(f"http://127.0.0.1:5000/#/experiments/{exp}/runs?workflowType=machine_learning")
    assert page.endswith("orderByKey=metrics.%60rate_error%60&orderByAsc=true")
