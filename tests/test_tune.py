"""`glaciermap tune`: Optuna studies over the real training loop, on the tiny region's cubes."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from conftest import FOLDS
from glaciermap.cli import main
from glaciermap.config import load_params, parse_params
from glaciermap.data.folds import write_folds
from glaciermap.errors import ConfigError
from glaciermap.config.tune import TuneConfig
from glaciermap.tuning.study import Objective, load_study, run_worker, study_parent_run
from glaciermap.tracking import runs as tracking

pytestmark = pytest.mark.slow

SPACE = {
    "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "train.loss": {"type": "categorical", "choices": ["bce", "dice"]},
    "patches.batch_size": {"type": "int", "low": 2, "high": 4, "step": 2},
}


@contextmanager
def cwd(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def write_params(root: Path, cubes_dir: Path, storage: str, **tune) -> Path:
    """A params.yaml for a 2-epoch, 64-px, ResNet18 U-Net on fold 0 of the tiny region."""
    raw = {
        "data": {"cubes_dir": str(cubes_dir), "buffer_m": 320.0},
        "folds": {**FOLDS.model_dump(mode="json"), "path": str(root / "folds.json")},
        "patches": {"size": 64, "eval_stride": 64, "samples_per_epoch": 8, "val_samples": 8, "batch_size": 4},
        "models": {"unet": {"name": "unet", "encoder": "resnet18"}},
        "train": {"folds": [0], "max_epochs": 2, "runs_dir": str(root / "runs")},
        "tracking": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"},
        "tune": {"study": "t", "storage": storage, "runs_dir": str(root / "runs/tune"), "n_trials": 3,
                 "space": SPACE, **tune},
    }
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def project(cubes_dir, folds, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tune")
    write_folds(root / "folds.json", folds, FOLDS)
    return root


def new_root(project: Path, name: str) -> Path:
    root = project / name
    root.mkdir()
    (root / "folds.json").write_bytes((project / "folds.json").read_bytes())
    return root


def cli(root: Path, *args: str) -> int:
    with cwd(root):
        return main(["-q", "--params", str(root / "params.yaml"), *args])


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


@pytest.fixture(scope="module")
def three_trials(project, cubes_dir) -> Path:
    """A 3-trial study run through the CLI, then exported."""
    root = new_root(project, "three")
    write_params(root, cubes_dir, f"sqlite:///{root / 'optuna.db'}", pruner="none")
    assert cli(root, "tune", "--export", str(root / "best.yaml")) == 0
    return root


def test_three_trial_study_completes_within_the_space(three_trials):
    params = load_params(three_trials / "params.yaml")
    study = load_study(params)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for t in trials:
        assert 1e-4 <= t.params["train.lr"] <= 1e-2
        assert t.params["train.loss"] in ("bce", "dice")
        assert t.params["patches.batch_size"] in (2, 4)
        assert 0.0 <= t.value <= 1.0
    # each trial trained on fold 0 and kept its model bundle, not its checkpoints
    for t in trials:
        run_dir = three_trials / f"runs/tune/t/trial{t.number:04d}/fold0"
        assert (run_dir / "model/model.safetensors").exists()
        assert not (run_dir / "checkpoints").exists()
        assert math.isclose(t.value, float(yaml.safe_load((run_dir / "metrics.json").read_text())["best_val_iou"]))


def test_trials_nest_under_the_study_run_in_mlflow(three_trials):
    client = MlflowClient(f"sqlite:///{three_trials / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("glaciermap").experiment_id])
    by_role = lambda role: [r for r in runs if r.data.tags.get("glaciermap.role") == role]  # noqa: E731
    (study_run,) = by_role("study")
    trial_runs = by_role("trial")
    assert len(trial_runs) == 3
    for r in trial_runs:
        assert r.data.tags["mlflow.parentRunId"] == study_run.info.run_id
        assert r.data.tags["optuna.state"] == "COMPLETE" and r.info.status == "FINISHED"
        assert set(SPACE) <= set(r.data.params)
        assert "objective_val_iou" in r.data.metrics
        history = client.get_metric_history(r.info.run_id, "intermediate_val_iou")
        assert sorted(m.step for m in history) == [0, 1]  # one value per epoch
    fold_runs = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in {t.info.run_id for t in trial_runs}]
    assert len(fold_runs) == 3 and all(r.data.tags["glaciermap.fold"] == "0" for r in fold_runs)
    best = max(t.data.metrics["objective_val_iou"] for t in trial_runs)
    assert study_run.data.metrics["best_val_iou"] == pytest.approx(best)
    artifacts = {a.path for a in client.list_artifacts(study_run.info.run_id, "study/plots")}
    assert {"study/plots/optimization_history.png", "study/plots/param_importances.png",
            "study/plots/optimization_history.html"} <= artifacts


def test_export_round_trips_into_a_training_run(three_trials, cubes_dir):
    params = load_params(three_trials / "params.yaml")
    best = load_study(params).best_trial
    exported = yaml.safe_load((three_trials / "best.yaml").read_text())
    assert exported["train"]["lr"] == best.params["train.lr"]
    assert exported["train"]["models"] == ["unet"] and exported["infer"]["sensor_set"] == "optical_dem"
    assert cli(three_trials, "config", "apply", str(three_trials / "best.yaml")) == 0
    applied = load_params(three_trials / "params.yaml")
    assert applied.train.lr == best.params["train.lr"]
    assert applied.train.loss == best.params["train.loss"]
    assert applied.patches.batch_size == best.params["patches.batch_size"]
    # the applied profile trains (1 epoch) and the run records the tuned values
    params_file = three_trials / "params.yaml"
    raw = yaml.safe_load(params_file.read_text())
    raw["train"]["max_epochs"] = 1
    params_file.write_text(yaml.safe_dump(raw))
    assert cli(three_trials, "train", "--model", "unet", "--sensors", "optical_dem", "--fold", "0") == 0
    client = MlflowClient(f"sqlite:///{three_trials / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("glaciermap").experiment_id],
                                "attributes.run_name = 'fold0 seed0 unet optical_dem' and params.`train.max_epochs` = '1'")
    assert float(run.data.params["train.lr"]) == pytest.approx(best.params["train.lr"])
    assert run.data.params["train.loss"] == best.params["train.loss"]


def test_a_much_worse_trial_is_pruned(project, cubes_dir):
    root = new_root(project, "prune")
    write_params(root, cubes_dir, f"sqlite:///{root / 'optuna.db'}", sampler="random", startup_trials=1,
                 pruner_warmup_epochs=0)
    params = load_params(root / "params.yaml")
    study = load_study(params)
    for _ in range(2):  # two earlier trials that scored 0.99 at every epoch
        study.add_trial(optuna.trial.create_trial(value=0.99, intermediate_values={0: 0.99, 1: 0.99}))
    with cwd(root):
        uri = tracking.resolve_tracking_uri(params.tracking)
        client = MlflowClient(uri)
        exp_id = tracking.experiment_id(params.tracking.experiment)
        objective = Objective(params, study_parent_run(client, exp_id, params), client, exp_id)
        study.optimize(objective, n_trials=1)
    trial = study.get_trials()[-1]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # stopped after its first epoch
    history = (root / "runs/tune/t/trial0002/fold0/history.csv").read_text().strip().splitlines()
    assert len(history) == 2  # header + one epoch: training stopped when pruned
    (run,) = client.search_runs([exp_id], "tags.`glaciermap.role` = 'trial'")
    assert run.data.tags["optuna.state"] == "PRUNED" and run.info.status == "KILLED"


def spawn(root: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([str(Path(sys.executable).parent / "glaciermap"), "-q", "--params", str(root / "params.yaml"),
                             "tune", *args], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def test_two_workers_share_one_storage_without_duplicates(project, cubes_dir):
    root = new_root(project, "workers")
    write_params(root, cubes_dir, f"sqlite:///{root / 'optuna.db'}", n_trials=4, pruner="none")
    procs = [spawn(root), spawn(root)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    study = load_study(load_params(root / "params.yaml"))
    trials = study.get_trials()
    assert len(finished(study)) == 4 and len(trials) == 4
    assert len({t.number for t in trials}) == 4
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4  # no trial sampled twice
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both processes did work


def test_killed_study_resumes_with_the_right_count(project, cubes_dir):
    root = new_root(project, "resume")
    write_params(root, cubes_dir, f"journal:{root / 'optuna.journal'}", n_trials=3, pruner="none")
    params = load_params(root / "params.yaml")
    proc = spawn(root)
    journal, deadline = root / "optuna.journal", time.monotonic() + 300
    while time.monotonic() < deadline:  # kill the worker once one trial is done and the next runs
        time.sleep(1.0)
        if journal.exists():
            states = [t.state for t in load_study(params).get_trials()]
            if states.count(TrialState.COMPLETE) == 1 and TrialState.RUNNING in states:
                break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    states = [t.state for t in load_study(params).get_trials()]
    assert states.count(TrialState.COMPLETE) == 1 and states.count(TrialState.RUNNING) == 1
    with cwd(root):
        study = run_worker(params, progress=False)
    trials = study.get_trials()
    assert len(finished(study)) == 3
    assert [t.state for t in trials].count(TrialState.FAIL) == 1  # the killed trial ...
    retried = [t for t in trials if "failed_trial" in t.system_attrs]
    assert len(retried) == 1 and retried[0].state == TrialState.COMPLETE  # ... re-run with its values
    assert retried[0].params == trials[retried[0].system_attrs["failed_trial"]].params


def test_time_budget_stops_the_sweep(project, cubes_dir):
    root = new_root(project, "timeout")
    write_params(root, cubes_dir, f"sqlite:///{root / 'optuna.db'}", n_trials=50, pruner="none")
    params = load_params(root / "params.yaml")
    with cwd(root):
        study = run_worker(params, timeout_s=1.0, progress=False)
    assert len(study.get_trials()) == 1  # one trial started, cut short when the budget ran out
    (trial,) = study.get_trials()
    assert trial.state == TrialState.PRUNED
    assert len(trial.intermediate_values) < params.train.max_epochs  # stopped inside its first fold's epochs


@pytest.mark.parametrize("tune, message", [
    ({"space": {"train.learning_rate": {"type": "float", "low": 0.1, "high": 1}}}, "train.learning_rate"),
    ({"space": {"train": {"type": "float", "low": 0.1, "high": 1}}}, "names a section"),
    ({"space": {"train.lr": {"type": "float", "low": 1, "high": 0.1}}}, "must be below"),
    ({"space": {"train.loss": {"type": "categorical"}}}, "choices"),
    ({"model": "resnet"}, "not defined under models"),
    ({"space": {"tune.sensor_set": {"type": "categorical", "choices": ["optical", "lidar"]}}}, "lidar"),
    ({"folds": [7]}, "tune.folds"),
])
def test_bad_tune_config_is_a_clear_error(tune, message):
    with pytest.raises(ConfigError, match=message):
        parse_params({"tune": tune})


def test_default_space_is_valid():
    """Every default key names a real params.yaml setting, and every sample is a valid Params in range."""
    from glaciermap.tuning.space import suggest, trial_params

    base = parse_params({})
    space = TuneConfig().space
    assert set(space) == {"train.lr", "train.weight_decay", "train.loss"}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        values = suggest(study.ask(), space)
        p = trial_params(base, values)  # validated like params.yaml: a bad key or value would raise
        for key, value in values.items():
            section, name = key.split(".")
            assert getattr(getattr(p, section), name) == value  # the key reaches the setting it names
            spec = space[key]
            if spec.type == "categorical":
                assert value in spec.choices
            else:
                assert spec.low <= value <= spec.high
    assert base.train.loss in space["train.loss"].choices  # the default is in the space
