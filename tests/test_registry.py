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


# ------------------------------------------------------------------ ensemble members (train.seeds)
def test_members_have_distinct_run_folders_names_tags_aliases_and_seeds(tmp_path):
    from glaciermap.tracking.registry import member_alias

    params = parse_params({"train": {"runs_dir": str(tmp_path / "runs"), "seeds": [0, 1, 2]}})
    specs = [RunSpec("unet", "optical_dem", f, s) for f in (0, 1) for s in params.train.seeds]
    assert specs[1].run_dir(params) == tmp_path / "runs/unet/optical_dem/fold0-seed1"
    assert specs[1].name == "unet_optical_dem_fold0_seed1"
    assert specs[1].tags["glaciermap.seed"] == "1" and specs[1].tags["glaciermap.fold"] == "0"
    assert [s.rng_seed for s in specs] == [0, 1000, 2000, 1, 1001, 2001]  # seed 0: fold, as before members
    assert [member_alias(s.fold, s.seed) for s in specs] == ["fold-0", "fold-0-seed-1", "fold-0-seed-2",
                                                              "fold-1", "fold-1-seed-1", "fold-1-seed-2"]
    for attr in ("run_dir", "name", "alias"):
        values = [member_alias(s.fold, s.seed) if attr == "alias" else
                  s.run_dir(params) if attr == "run_dir" else s.name for s in specs]
        assert len(set(values)) == len(specs), attr


@pytest.fixture
def members(tmp_path, monkeypatch):
    """Finished runs of folds 0, 1 x seeds 0, 1 in their run folders (best_val_iou 0.5, 0.7, 0.9, 0.6);
    mlflow.register_model registers the run without a logged model (none is needed to test aliases)."""
    import mlflow

    from glaciermap.tracking import registry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "cubes").mkdir()
    (tmp_path / "cubes" / "index.csv").write_text("glacier_id,path\nG1,x.nc\n")
    (tmp_path / "folds.json").write_text("{}")
    raw = {"data": {"cubes_dir": str(tmp_path / "cubes")}, "folds": {"path": str(tmp_path / "folds.json")},
           "train": {"runs_dir": str(tmp_path / "runs"), "folds": [0, 1], "seeds": [0, 1]},
           "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}
    params = parse_params(raw)
    client = MlflowClient(params.tracking.tracking_uri)
    exp = client.create_experiment("glaciermap")
    for (fold, seed), iou in zip([(0, 0), (0, 1), (1, 0), (1, 1)], [0.5, 0.7, 0.9, 0.6]):
        spec = RunSpec("unet", "optical_dem", fold, seed)
        run_id = client.create_run(exp, tags={DATA_TAG: data_key(params), **spec.tags}).info.run_id
        client.log_metric(run_id, "best_val_iou", iou)
        client.set_terminated(run_id, "FINISHED")
        spec.run_dir(params).mkdir(parents=True)
        (spec.run_dir(params) / RUN_ID_FILE).write_text(run_id)
        (spec.run_dir(params) / FINISHED_FILE).touch()
        spec.model_dir(params).mkdir()

    def register_model(uri, name, tags):
        if not client.search_registered_models(f"name = '{name}'"):
            client.create_registered_model(name)
        return client.create_model_version(name, uri, run_id=uri.split("/")[1], tags=tags)

    monkeypatch.setattr(mlflow, "register_model", register_model)
    monkeypatch.setattr(registry, "load_model_uri", lambda uri: ("model", uri))  # no bundle to rebuild
    monkeypatch.setattr(registry, "load_bundle", lambda folder: ("model", folder))
    return raw, params, client


def test_register_registers_every_member_and_names_the_champion_among_them(members):
    from glaciermap.tracking.registry import fold_models, register_runs

    _, params, client = members
    result = register_runs(params, "unet", "optical_dem")
    assert set(result["aliases"]) == {"fold-0", "fold-0-seed-1", "fold-1", "fold-1-seed-1"}
    for alias, v in result["aliases"].items():  # each alias is the run of its member's run folder
        spec = RunSpec("unet", "optical_dem", v["fold"], v["seed"])
        assert v["run_id"] == (spec.run_dir(params) / RUN_ID_FILE).read_text()
        assert client.get_model_version_by_alias(result["name"], alias).run_id == v["run_id"]
    assert result["champion"] == result["aliases"]["fold-1"]["version"]  # IoU 0.9
    assert result["champion_reason"].startswith("highest validation IoU (0.9000, fold-1) among the 4 members "
                                                "(2 folds x 2 seeds)")
    got = fold_models(params, "unet", "optical_dem", registry=True)
    name = "models:/glaciermap-unet-optical_dem@"
    assert got == {0: [("model", name + "fold-0"), ("model", name + "fold-0-seed-1")],
                   1: [("model", name + "fold-1"), ("model", name + "fold-1-seed-1")]}  # train.seeds order
    local = fold_models(params, "unet", "optical_dem")  # evaluate's view: the run folders
    assert local[1] == [("model", RunSpec("unet", "optical_dem", 1, s).model_dir(params)) for s in (0, 1)]


def test_a_missing_member_is_one_error_naming_its_alias_or_run_folder(members):
    from glaciermap.tracking.registry import fold_models, register_runs

    raw, params, _ = members
    register_runs(params, "unet", "optical_dem")
    three = parse_params({**raw, "train": {**raw["train"], "seeds": [0, 1, 2]}})
    with pytest.raises(GlaciermapError, match="has no alias 'fold-0-seed-2'") as err:
        fold_models(three, "unet", "optical_dem", registry=True)
    assert "\n" not in str(err.value)
    with pytest.raises(GlaciermapError, match="no trained model for unet/optical_dem fold 0 seed 2") as err:
        fold_models(three, "unet", "optical_dem")
    assert err.value.path == str(RunSpec("unet", "optical_dem", 0, 2).run_dir(three))
    with pytest.raises(GlaciermapError, match="no finished training run for unet/optical_dem fold 0 seed 2"):
        register_runs(three, "unet", "optical_dem")
