"""The fold's model has one source: the run folder this configuration trained (no search over history)."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from glaciermap.config import parse_params
from glaciermap.errors import GlaciermapError
from glaciermap.tracking.registry import pipeline_run_id
from glaciermap.tracking.runs import DATA_TAG, FINISHED_FILE, RUN_ID_FILE, RunSpec, data_key


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "cubes").mkdir()
    (tmp_path / "cubes" / "index.csv").write_text("glacier_id,path\nG1,x.nc\n")
    (tmp_path / "folds.json").write_text("{}")
    params = parse_params({"data": {"cubes_dir": str(tmp_path / "cubes")}, "folds": {"path": str(tmp_path / "folds.json")},
                           "train": {"runs_dir": str(tmp_path / "runs"), "folds": [0]},
                           "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}})
    client = MlflowClient(params.tracking.tracking_uri)
    exp = client.create_experiment("glaciermap")
    spec = RunSpec("unet", "optical_dem", 0)
    run_dir = spec.run_dir(params)
    run_dir.mkdir(parents=True)

    def make_run(data: str, status: str = "FINISHED", finished: bool = True) -> str:
        run_id = client.create_run(exp, tags={DATA_TAG: data, **spec.tags}).info.run_id
        client.set_terminated(run_id, status)
        (run_dir / RUN_ID_FILE).write_text(run_id)
        (run_dir / FINISHED_FILE).unlink(missing_ok=True)
        if finished:
            (run_dir / FINISHED_FILE).touch()
        return run_id

    return params, client, spec, make_run


def test_the_run_folders_run_is_the_folds_model(setup):
    params, client, spec, make_run = setup
    older = make_run(data_key(params))
    client.log_metric(older, "best_val_iou", 0.99)  # scored higher: irrelevant, it is not this folder's run
    current = make_run(data_key(params))
    assert pipeline_run_id(params, spec, client) == current


@pytest.mark.parametrize("case, message", [
    ("unfinished", "no finished training run for unet/optical_dem fold 0"),
    ("other_data", "trained on other cubes or folds than the current ones"),
    ("failed", "is FAILED, not FINISHED"),
    ("unknown_run", "is not in the tracking store"),
])
def test_a_run_folder_that_is_not_this_datas_finished_run_is_an_error(setup, case, message):
    params, client, spec, make_run = setup
    if case == "unfinished":
        make_run(data_key(params), finished=False)
    elif case == "other_data":
        make_run("older cubes")
    elif case == "failed":
        make_run(data_key(params), status="FAILED")
    else:
        make_run(data_key(params))
        (spec.run_dir(params) / RUN_ID_FILE).write_text("0" * 32)
    with pytest.raises(GlaciermapError, match=message) as err:
        pipeline_run_id(params, spec, client)
    assert "fold0" in err.value.message  # names the run folder (or its id file)
