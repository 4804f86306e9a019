"""End to end: `dvc repro` on the tiny profile in a temporary copy of the project."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from glaciermap.config.trace import TRACE_VAR

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
    shutil.copytree(ROOT / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__"))
    (work / "experiments").mkdir()  # only the profile: experiments/everest is a pipeline of its own
    shutil.copy(ROOT / "experiments/tiny.yaml", work / "experiments/tiny.yaml")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(work / "src")}
    env.pop("MLFLOW_TRACKING_URI", None)
    run(["dvc", "init", "--no-scm", "-q"], work, env)
    run(["glaciermap", "config", "apply", "experiments/tiny.yaml"], work, env)
    run(["glaciermap", "-q", "simulate"], work, env)
    run(["dvc", "add", "-q", "data"], work, env)
    # record the params each command reads (glaciermap.config.trace), for the params test below
    run(["dvc", "repro"], work, {**env, TRACE_VAR: str(work / "params_trace.jsonl")})
    return work, env


def test_stage_outputs_exist(repro):
    work, _ = repro
    assert (work / "products/cubes/index.csv").exists()
    folds = json.loads((work / "products/folds.json").read_text())["folds"]
    assert len(folds) == 2
    for f in (0, 1):
        run_dir = work / f"runs/unet/optical_dem/fold{f}-seed0"
        assert (run_dir / "model/model.safetensors").exists() and (run_dir / "finished").exists()
        assert not (run_dir / "checkpoints").exists()  # a finished run keeps its bundle, not its checkpoints
        history = (work / f"metrics/train/unet_optical_dem_fold{f}_seed0_history.csv").read_text().splitlines()
        assert len(history) == 2 and history[1].split(",")[1]  # epoch 0, with its own train_loss
        calib = json.loads((run_dir / "model/calibration.json").read_text())  # in the bundle: it travels with it
        train = json.loads((work / f"metrics/train/unet_optical_dem_fold{f}_seed0.json").read_text())
        assert calib["temperature"] > 0 and calib["n_pixels"] > 0 and (run_dir / "reliability.png").exists()
        assert {k: train[k] for k in ("temperature", "ece_before", "ece_after")} == \
            {k: calib[k] for k in ("temperature", "ece_before", "ece_after")}
    ev = json.loads((work / "metrics/evaluate/unet_optical_dem.json").read_text())
    assert set(ev["folds"]) == {"fold0", "fold1"}
    test_glaciers = {f"fold{k}": len(fold["test"]) for k, fold in enumerate(folds)}
    for name, r in ev["folds"].items():
        assert r["n_glaciers"] == test_glaciers[name] and r["n_patches"] > 0 and r["n_members"] == 1
        p_, r_ = r["precision"], r["recall"]  # IoU = TP/(TP+FP+FN) = p*r / (p + r - p*r)
        expected = 0.0 if p_ != p_ or r_ == 0 else p_ * r_ / (p_ + r_ - p_ * r_)  # no positive: precision NaN
        assert r["iou"] == pytest.approx(expected, rel=1e-9, abs=1e-12), (name, r)
    assert ev["mean"]["iou_mean"] == pytest.approx(sum(r["iou"] for r in ev["folds"].values()) / 2)
    # debris-covered and clean ice scored apart (the simulated cubes carry the truth debris mask)
    assert all(r["n_glaciers_debris_mask"] == r["n_glaciers"] for r in ev["folds"].values())
    assert {"debris_iou_mean", "debris_recall_mean", "clean_iou_mean", "clean_recall_mean"} <= set(ev["mean"])


def test_mlflow_holds_parent_and_fold_runs(repro):
    work, _ = repro
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    exp = client.get_experiment_by_name("glaciermap")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("glaciermap.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"  # not left RUNNING forever
    assert sorted(r.data.tags["glaciermap.fold"] for r in children) == ["0", "1"]
    for r in children:
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert r.info.status == "FINISHED"
        assert "best_val_iou" in r.data.metrics and "val_iou" in r.data.metrics
        assert {"temperature", "ece_before", "ece_after"} <= set(r.data.metrics)
        assert "reliability.png" in {a.path for a in client.list_artifacts(r.info.run_id)}
        assert r.data.tags["glaciermap.model"] == "unet" and r.data.tags["glaciermap.seed"] == "0"
        assert r.data.tags["glaciermap.sensor_set"] == "optical_dem"
        assert "dvc_data_md5" in r.data.tags and "git_commit" in r.data.tags
        assert r.data.params["train.max_epochs"] == "1"
    assert "test_iou_mean" in parents[0].data.metrics
    assert "area_change_rate_pct_per_yr" in parents[0].data.metrics  # area change logs to the same parent
    assert parents[0].data.metrics["area_change_abs_rate_error_pct_per_yr"] == pytest.approx(
        abs(parents[0].data.metrics["area_change_rate_error_pct_per_yr"]))
    # columns that tell parents apart in the UI's table
    assert parents[0].data.params == {"model": "unet", "sensor_set": "optical_dem", "groups": "optical+dem",
                                      "bands": "B2,B3,B4,B8,B11,B12,dem,slope,hillshade"}
    # what a newcomer sees in the MLflow UI (issue #17 item 5)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on training runs, not traces
    assert Path(exp.artifact_location.removeprefix("file://")) == work / "mlruns"  # beside mlflow.db
    parent = parents[0]
    assert parent.data.tags["mlflow.note.content"].startswith("All folds of unet on the optical_dem")
    latest_child_end = max(r.info.end_time for r in children)
    assert parent.info.end_time >= latest_child_end  # spans its stages, not "Finished, 8 ms"
    for r in children:
        fold = r.data.tags["glaciermap.fold"]
        assert r.info.run_name == f"fold{fold} seed0 unet optical_dem"  # the fold first: names differ at a glance
        assert r.data.tags["mlflow.source.name"] == f"glaciermap train --model unet --sensors optical_dem --fold {fold} --seed 0"
        assert f"fold {fold} of 2" in r.data.tags["mlflow.note.content"]
        assert r.data.metrics["test_iou"] >= 0  # evaluate's score of the fold, sortable in the runs table
        keys = set(r.data.params)
        assert r.data.params["sensor_set"] == "optical_dem" and r.data.params["model.encoder"] == "resnet18"  # tiny.yaml
        assert not any(k.startswith("model.glavitu") for k in keys)  # a U-Net run lists U-Net settings only
        assert "lr" not in keys and "train.lr" in keys and len(keys) < 30  # each setting once
        models = client.search_logged_models([exp.experiment_id],
                                             filter_string=f"source_run_id = '{r.info.run_id}'")
        assert [m.name for m in models] == [f"unet-optical_dem-fold{fold}-seed0"]
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"rate_by_size_class.png", "area_change_summary.json", "evaluation.json"} <= artifacts


def test_dvc_metrics_show_prints_evaluation(repro):
    work, env = repro
    out = run(["dvc", "metrics", "show", "--json"], work, env).stdout
    assert "iou_mean" in out and "best_val_iou" in out


def test_repro_is_up_to_date_afterwards(repro):
    work, env = repro
    out = run(["dvc", "status"], work, env).stdout
    assert "changed" not in out


#: settings a stage may read without listing them in its `params:` (dvc.yaml): locations (the files
#: and folders they name are the stage's deps and outs), where runs are logged, and how fast or where
#: a stage computes, which does not change what it writes
UNLISTED_PARAMS = {"data.raw_dir", "data.cubes_dir", "folds.path", "train.runs_dir", "tracking.*",
                   "data.workers", "patches.num_workers", "infer.device", "infer.devices", "infer.compile",
                   "infer.batch_size"}
#: per command: prediction batches default to the training batch size; ingest reads the sensor sets
#: only to refuse a dhdt set a region cannot give (it writes every sensor group the region has)
UNLISTED_BY_COMMAND = {"evaluate": {"patches.batch_size"}, "infer": {"patches.batch_size"},
                       "benchmark": {"patches.batch_size"}, "ingest": {"train.sensor_sets", "infer.sensor_set"}}


#: options that only name files: they change where a command reads and writes, not which settings
PATH_FLAGS = {"--out", "--table", "--figure", "--evaluate", "--area-change", "--areas", "--metrics", "--details"}


def command_and_flags(argv: list[str]) -> tuple[str, frozenset[str]]:
    """`glaciermap` argv (after the program name) -> (command, its --options but PATH_FLAGS)."""
    args = [a for a in argv if a not in ("-q", "-v", "--quiet", "--verbose")]
    while args and args[0].startswith("-"):  # global options with a value (--params p.yaml)
        args = args[2:]
    return args[0], frozenset(a for a in args[1:] if a.startswith("--") and a not in PATH_FLAGS)


def listed(key: str, patterns: list[str]) -> bool:
    """Whether a stage's params entry covers `key` (an entry covers its sub-keys; `${...}` and `*`
    match one part)."""
    for pattern in patterns:
        parts = [r"[^.]+" if p == "*" else re.escape(p) for p in re.sub(r"\$\{[^}]*\}", "*", pattern).split(".")]
        if re.fullmatch(r"\.".join(parts) + r"(\..+)?", key):
            return True
    return False


def test_each_stage_lists_the_params_its_command_reads(repro, tmp_path):
    """dvc.yaml `params:` are what `dvc repro` watches: a stage that reads a setting it does not list
    keeps outputs of the old value after it changes, and `dvc status` says all is up to date. Every
    setting each command read in the demo's `dvc repro` (and, for the stages of experiments/compare
    and the Everest report, in the same commands run with those pipelines' options) must be listed
    by each stage of the three pipelines that runs the command with those options, or be one of
    UNLISTED_PARAMS."""
    work, env = repro
    trace = tmp_path / "trace.jsonl"
    shutil.copy(work / "params_trace.jsonl", trace)
    traced = {**env, TRACE_VAR: str(trace)}
    model, sensors, out = "unet", "optical_dem", tmp_path / "compare_layout"
    run(["glaciermap", "-q", "register", "--model", model, "--sensors", sensors,
         "--out", str(out / "registry.json")], work, traced)
    run(["glaciermap", "-q", "infer", "--model", model, "--sensors", sensors, "--out", str(out / "predictions")],
        work, traced)
    run(["glaciermap", "-q", "area-change", "--areas", str(out / "predictions/areas.csv"), "--out",
         str(out / "area_change"), "--metrics", str(out / f"metrics/{model}_{sensors}.json")], work, traced)
    run(["glaciermap", "-q", "compare", "--area-change", str(out / "metrics"), "--out", str(out / "results.json"),
         "--table", str(out / "results.md"), "--figure", str(out / "compare.png")], work, traced)
    run(["glaciermap", "-q", "benchmark", "--sensors", sensors, "--baseline-band", "B8", "--rgb", "B4,B3,B2",  # Everest's report
         "--out", str(out / "benchmark.json"), "--figure", str(out / "benchmark.png"), "--details", str(out / "bm")],
        work, traced)
    reads: dict[tuple[str, frozenset[str]], set[str]] = {}  # (command, options) -> settings read
    for line in trace.read_text().splitlines():
        entry = json.loads(line)
        reads.setdefault(command_and_flags(entry["argv"]), set()).update(entry["read"])
    assert {c for c, _ in reads} >= {"ingest", "folds", "train", "evaluate", "register", "infer", "area-change",
                                      "compare", "benchmark"}
    problems, checked = [], set()
    for pipeline in (ROOT / "dvc.yaml", ROOT / "experiments/compare/dvc.yaml", ROOT / "experiments/everest/dvc.yaml"):
        for name, stage in yaml.safe_load(pipeline.read_text())["stages"].items():
            cmd = " ".join(str(stage["cmd"]).split())
            if not cmd.startswith("glaciermap "):
                continue
            command, flags = command_and_flags(cmd.split()[1:])
            if (command, flags) not in reads:
                continue  # not run here (prepare-everest needs the real scene)
            checked.add(f"{'main' if pipeline.parent == ROOT else pipeline.parent.name}:{name}")
            patterns = [str(p) for p in stage.get("params") or [] if isinstance(p, str)]
            allowed = UNLISTED_PARAMS | UNLISTED_BY_COMMAND.get(command, set())
            missing = sorted(k for k in reads[command, flags]
                             if not listed(k, patterns) and not listed(k, sorted(allowed)))
            if missing:
                problems.append(f"{pipeline.relative_to(ROOT)} stage {name} (`glaciermap {command}`) reads "
                                f"{missing} without listing them in params:")
    assert {"main:train", "main:infer", "compare:infer", "compare:register", "compare:area_change",
            "compare:compare", "everest:train", "everest:report"} <= checked
    assert not problems, "\n".join(problems)


def test_registry_holds_each_fold_and_a_champion(repro):
    work, _ = repro
    reg = json.loads((work / "products/registry.json").read_text())
    assert set(reg["aliases"]) == {"fold-0", "fold-1"}
    assert reg["champion"] in {v["version"] for v in reg["aliases"].values()}


def test_inference_covers_every_glacier_and_outlines_match_rasters(repro):
    work, _ = repro
    import geopandas as gpd
    import numpy as np
    import pandas as pd
    import rasterio

    index = pd.read_csv(work / "products/cubes/index.csv", dtype={"glacier_id": str, "epoch": str})
    areas = pd.read_csv(work / "products/predictions/areas.csv", dtype={"glacier_id": str})
    assert set(areas.glacier_id) == set(index.glacier_id)
    for ep in ("inv", "recent"):  # the 1-sigma bounds bracket the estimate
        assert (areas[f"area_lo_{ep}_km2"] <= areas[f"pred_area_{ep}_km2"]).all()
        assert (areas[f"pred_area_{ep}_km2"] <= areas[f"area_hi_{ep}_km2"]).all()
    assert "debris_recall" in areas.columns  # NaN for glaciers without debris, as DL4GAM reports it
    long = pd.read_csv(work / "products/predictions/areas_long.csv", dtype={"glacier_id": str, "epoch": str})
    outlines = gpd.read_file(work / "products/predictions/outlines.gpkg")
    from glaciermap.data.cubes import read_cube

    checked = 0
    for _, row in outlines.iterrows():
        cube = read_cube(work / "products/cubes" / row.epoch / f"{row.glacier_id}.nc")
        with rasterio.open(work / "products/predictions" / row.epoch / f"{row.glacier_id}.tif") as src:
            prob = src.read(1)
            assert src.descriptions == ("probability", "ensemble_std", "uncertainty")
        seen = cube.mask_invalid == 0
        assert 0 <= prob[seen].min() and prob[seen].max() <= 1
        assert np.isnan(prob[~seen]).all()  # no statement where the cube is invalid (nodata)
        raster_km2 = ((prob >= 0.5) & (cube.mask_glacier == 1)).sum() * cube.grid.res ** 2 / 1e6
        assert row.geometry.area / 1e6 == pytest.approx(raster_km2, rel=1e-6)
        counted = long[(long.glacier_id == row.glacier_id) & (long.epoch == row.epoch)].pred_area_km2.item()
        assert raster_km2 == pytest.approx(counted, rel=1e-6)  # the outline is the table's area
        checked += 1
    assert checked > 0 and len(long) == len(index)


def test_registry_alias_gives_the_in_memory_model_probabilities(repro):
    work, env = repro
    import mlflow
    import numpy as np

    from glaciermap.data.windows import prepare_cube
    from glaciermap.errors import GlaciermapError
    from glaciermap.data.windows import predict_cube
    from glaciermap.tracking.registry import load_registered
    from glaciermap.models.serialize import load_bundle

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    reg_model, bundle = load_registered("glaciermap-unet-optical_dem", "fold-1")
    local_model, local = load_bundle(work / "runs/unet/optical_dem/fold1-seed0/model")
    assert bundle.temperature == local.temperature is not None  # calibration.json travelled with the model
    assert bundle.source == "models:/glaciermap-unet-optical_dem@fold-1"  # what an error would name
    folds = json.loads((work / "products/folds.json").read_text())["folds"]
    cube = prepare_cube(work / "products/cubes" / _inventory_path(work, folds[1]["test"][0]),
                        bundle.groups, bundle.stats)
    a = predict_cube(reg_model, cube, bundle.groups, size=64, stride=48)
    b = predict_cube(local_model, cube, bundle.groups, size=64, stride=48)
    np.testing.assert_allclose(a, b, atol=1e-6)
    # the pyfunc flavour loads too, and accepts another batch size and patch size
    pyfunc = mlflow.pyfunc.load_model("models:/glaciermap-unet-optical_dem@champion")
    out = pyfunc.predict(np.zeros((3, 9, 96, 96), np.float32))
    assert out.shape == (3, 1, 96, 96)
    with pytest.raises(GlaciermapError, match="no alias 'fold-9'"):
        load_registered("glaciermap-unet-optical_dem", "fold-9")


def test_register_ignores_runs_trained_on_other_data(repro):
    """A finished run of older cubes that scored higher must not become a fold's model."""
    from mlflow.tracking import MlflowClient

    work, env = repro
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    before = json.loads((work / "products/registry.json").read_text())["aliases"]["fold-0"]["run_id"]
    real = client.get_run(before)
    assert real.data.tags["glaciermap.data"]  # every training run records its data
    stale = client.create_run(real.info.experiment_id, tags={
        **{k: v for k, v in real.data.tags.items() if k.startswith("glaciermap.")}, "glaciermap.data": "older"})
    client.log_metric(stale.info.run_id, "best_val_iou", 1.0)
    client.set_terminated(stale.info.run_id, "FINISHED")
    run(["glaciermap", "-q", "register"], work, env)
    reg = json.loads((work / "products/registry.json").read_text())
    assert reg["aliases"]["fold-0"]["run_id"] == before


#: |estimated - true| regional rate (%/yr) the tiny profile stays within (a 1-epoch model; loose on purpose)
RATE_TOLERANCE = 3.0


def pd_read_index(work: Path):
    import pandas as pd

    return pd.read_csv(work / "products/cubes/index.csv", dtype={"glacier_id": str, "epoch": str})


def _inventory_path(work: Path, glacier_id: str) -> str:
    import pandas as pd

    index = pd.read_csv(work / "products/cubes/index.csv", dtype={"glacier_id": str, "epoch": str})
    return index[(index.glacier_id == glacier_id) & (index.role == "inventory")].path.iloc[0]


def test_area_change_reports_rates_checked_against_truth(repro):
    work, _ = repro
    summary = json.loads((work / "metrics/area_change.json").read_text())
    index = pd_read_index(work)
    assert summary["n_total"] == index.glacier_id.nunique() and 0 < summary["n_kept"] <= summary["n_total"]
    truth = summary["truth"]
    assert truth["true_regional_rate_pct_per_yr"] == json.loads((work / "data/truth/regional.json").read_text())[
        "rate_pct_per_yr"]
    assert truth["regional_rate_error_pct_per_yr"] == pytest.approx(
        summary["rate_pct_per_yr"] - truth["true_regional_rate_pct_per_yr"])
    assert summary["rate_pct_per_yr"] < 0  # the simulated glaciers shrink; a 1-epoch model sees it
    assert abs(truth["regional_rate_error_pct_per_yr"]) < RATE_TOLERANCE
    # uncertainty (#16): infer's area bounds reach the summary, region-wide rate against the all-glacier truth
    assert summary["rate_sigma_pct_per_yr"] is not None and 0 <= summary["rate_sigma_pct_per_yr"] <= (
        summary["rate_sigma_correlated_pct_per_yr"])
    assert truth["regionwide_rate_error_pct_per_yr"] == pytest.approx(
        summary["regionwide_rate_pct_per_yr"] - truth["true_regional_rate_pct_per_yr"])
    assert summary["n_extrapolated"] == summary["n_total"] - summary["n_kept"]
    assert 0 <= truth["glacier_cover_1sigma"] <= truth["glacier_cover_2sigma"] <= 1
    for png in ("rate_by_size_class", "area_scatter", "glacier_maps"):
        assert (work / f"products/area_change/{png}.png").stat().st_size > 1000
    # the predictions say what made them, and the rate says which configuration it belongs to
    made_by = json.loads((work / "products/predictions/provenance.json").read_text())
    assert (made_by["model"], made_by["sensor_set"]) == (summary["model"], summary["sensor_set"]) == (
        "unet", "optical_dem")
    assert sorted(made_by["members"]) == ["fold0", "fold1"] and all(made_by["members"].values())


def test_compare_reads_the_pipeline_outputs(repro, tmp_path):
    """`glaciermap compare` on what the stages really wrote (experiments/compare's layout)."""
    work, env = repro
    changes = tmp_path / "area_change"
    changes.mkdir()
    shutil.copy(work / "metrics/area_change.json", changes / "unet_optical_dem.json")
    out = tmp_path / "results.json"
    res = run(["glaciermap", "-q", "compare", "--area-change", str(changes), "--out", str(out),
               "--table", str(tmp_path / "results.md"), "--figure", str(tmp_path / "compare.png")], work, env)
    # the link opens the runs in MLflow's model-training mode (a fresh browser starts in GenAI mode)
    assert ("/runs?workflowType=machine_learning&orderByKey=metrics.%60area_change_abs_rate_error_pct_per_yr%60"
            "&orderByAsc=true") in res.stdout  # a simulated region: the rate error ranks configurations
    (row,) = json.loads(out.read_text())["rows"]
    evaluation = json.loads((work / "metrics/evaluate/unet_optical_dem.json").read_text())
    assert row["iou_mean"] == pytest.approx(evaluation["mean"]["iou_mean"])
    assert row["iou_min_fold"] == pytest.approx(min(f["iou"] for f in evaluation["folds"].values()))
    change = json.loads((work / "metrics/area_change.json").read_text())
    assert row["rate_error_pct_per_yr"] == pytest.approx(change["truth"]["regional_rate_error_pct_per_yr"])


def test_new_training_params_map_with_the_runs_they_trained(repro):
    """What `dvc exp run -S train.lr=...` does in the workspace: the train stages re-run, and
    register, infer and area change must use those new runs, not the older ones that scored higher
    on the same data (the registry used to re-register them, and the old rate came back)."""
    work, env = repro
    before = {a: v["run_id"] for a, v in json.loads((work / "products/registry.json").read_text())["aliases"].items()}
    rasters = sorted((work / "products/predictions").glob("*/*.tif"))
    old_raster = rasters[0].read_bytes()
    (work / "lr.yaml").write_text("train: {lr: 0.003}\n")
    run(["glaciermap", "config", "apply", "lr.yaml"], work, env)
    run(["dvc", "repro"], work, env)
    after = {a: v["run_id"] for a, v in json.loads((work / "products/registry.json").read_text())["aliases"].items()}
    assert set(after) == set(before) and not set(after.values()) & set(before.values())
    for alias, run_id in after.items():  # exactly the runs in the run folders of this configuration
        assert (work / f"runs/unet/optical_dem/fold{alias.split('-')[1]}-seed0/mlflow_run_id").read_text() == run_id
    assert rasters[0].read_bytes() != old_raster  # infer mapped with the new models


def test_killed_training_resumes_from_last_checkpoint_in_the_same_mlflow_run(repro):
    """SIGKILL a run as epoch 1 starts (its test hang point: epoch 0 is checkpointed); the re-run continues it."""
    import signal
    import time

    work, env = repro
    (work / "resume.yaml").write_text("train: {max_epochs: 3, runs_dir: runs_resume}\n")
    run(["glaciermap", "config", "apply", "resume.yaml"], work, env)
    cmd = ["glaciermap", "-q", "train", "--model", "unet", "--sensors", "optical_dem", "--fold", "0"]
    run_dir, ready = work / "runs_resume/unet/optical_dem/fold0-seed0", work / "ready"
    proc = subprocess.Popen(cmd, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**env, "GLACIERMAP_TEST_HANG_AT": "epoch1", "GLACIERMAP_TEST_READY": str(ready)})
    while not ready.exists():  # the trainer writes it as epoch 1 starts, then sleeps
        assert proc.poll() is None, "training ended before its hang point"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (run_dir / "checkpoints/last.ckpt").exists(), "no checkpoint before the kill"
    from mlflow.tracking import MlflowClient

    killed = (run_dir / "mlflow_run_id").read_text()
    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    assert client.get_run(killed).info.status == "RUNNING"  # the killed trainer could not close it
    run_id = (run_dir / "mlflow_run_id").read_text()
    history = work / "metrics/train/unet_optical_dem_fold0_seed0_history.csv"
    first = history.read_text().splitlines()
    run(cmd, work, env)
    rows = history.read_text().splitlines()
    assert rows[1] == first[1]  # epoch 0 kept, not retrained
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2"]
    assert (run_dir / "mlflow_run_id").read_text() == run_id
    from mlflow.tracking import MlflowClient

    assert MlflowClient(f"sqlite:///{work / 'mlflow.db'}").get_run(run_id).info.status == "FINISHED"
    # new inputs (here the learning rate): the finished run is not resumed but trained afresh
    (work / "resume.yaml").write_text("train: {max_epochs: 3, runs_dir: runs_resume, lr: 0.002}\n")
    run(["glaciermap", "config", "apply", "resume.yaml"], work, env)
    run(cmd, work, env)
    assert (run_dir / "mlflow_run_id").read_text() != run_id
    assert [r.split(",")[0] for r in history.read_text().splitlines()[1:]] == ["0", "1", "2"]
    assert history.read_text().splitlines()[1] != first[1]  # epoch 0 trained again
