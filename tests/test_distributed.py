"""Scale-out on Lightning's DDP (#19), on 2 CPU processes (gloo): the results of one process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from glaciermap.config import load_params, updated
from glaciermap.data.cubes import read_cube
from glaciermap.data.folds import write_folds
from glaciermap.inference.distributed import map_cubes

from conftest import FOLDS

pytestmark = pytest.mark.slow


def _record(item: dict, device: torch.device) -> None:
    """Write which rank handled the item (module-level: spawned ranks import it)."""
    Path(item["out"], f"{item['i']}.rank{os.environ.get('LOCAL_RANK', '0')}").touch()


def test_map_cubes_deals_each_item_to_exactly_one_rank(tmp_path):
    items = [{"i": i, "out": str(tmp_path)} for i in range(7)]
    assert map_cubes(_record, items, accelerator="cpu", devices=2, strategy="ddp_spawn")  # this process is rank 0
    done = sorted(p.name for p in tmp_path.iterdir())
    assert sorted(int(n.split(".")[0]) for n in done) == list(range(7))  # each once, none twice
    assert {n.split(".")[1] for n in done} == {"rank0", "rank1"}  # both ranks worked


def _bundles(cubes_dir: Path, folds) -> dict:
    """One member per fold: a small random-weight U-Net with the fold's statistics and a temperature
    (what the registry returns for a calibrated model and train.seeds [0])."""
    from glaciermap.config import ModelConfig, SensorsConfig
    from glaciermap.models import build_model
    from glaciermap.models.serialize import ModelBundle

    groups = SensorsConfig().resolve("optical")
    out = {}
    for f in folds:
        torch.manual_seed(f.index)
        cfg = ModelConfig(name="unet", encoder="resnet18")
        model = build_model(cfg, {g: len(b) for g, b in groups.items()}).eval()
        out[f.index] = [(model, ModelBundle(model=cfg.model_dump(mode="json"), groups=groups, stats=f.stats,
                                            patch_size=64, sensor_set="optical", fold=f.index, temperature=1.5))]
    return out


def test_infer_on_two_ranks_writes_what_one_process_writes(tmp_path, cubes_dir, folds, cube_index, monkeypatch):
    import glaciermap.inference.run as run

    folds_path = write_folds(tmp_path / "folds.json", folds, FOLDS)
    sections = {"data": {"cubes_dir": str(cubes_dir)}, "folds": {"path": str(folds_path), "k": FOLDS.k},
                "train": {"folds": list(range(FOLDS.k)), "sensor_sets": ["optical"]},
                "infer": {"sensor_set": "optical", "device": "cpu"}, "patches": {"eval_stride": 48}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(sections))
    params = load_params(tmp_path / "params.yaml")
    bundles = _bundles(cubes_dir, folds)
    monkeypatch.setattr(run, "fold_models", lambda *a, **k: bundles)
    one = run.infer(params, "unet", "optical", tmp_path / "one", progress=False)

    import glaciermap.data.windows as windows

    calls = []
    real = windows.predict_cube_file
    monkeypatch.setattr(windows, "predict_cube_file", lambda *a, **k: calls.append(a) or real(*a, **k))
    ddp = updated(params, infer=updated(params.infer, devices=2))
    two = run.infer(ddp, "unet", "optical", tmp_path / "two", progress=False)
    assert calls == []  # every raster came from the two ranks; this process only made the tables
    rasters = sorted((tmp_path / "one").glob("*/*.tif"))
    assert len(rasters) == len(cube_index)
    for a in rasters:
        cube = read_cube(cubes_dir / a.parent.name / f"{a.stem}.nc")
        seen = cube.mask_invalid == 0
        pa = run.read_probability(a, cube.grid, valid=seen)
        pb = run.read_probability(tmp_path / "two" / a.parent.name / a.name, cube.grid, valid=seen)
        np.testing.assert_allclose(pb[0], pa[0], atol=1e-5)  # NaN (unseen) on the same pixels
    assert two.equals(one) or np.allclose(two.select_dtypes("number"), one.select_dtypes("number"), atol=1e-6)


def test_a_fold_trains_on_two_ranks_like_on_one(tmp_path, cubes_dir, folds, monkeypatch):
    """DDP training of one fold (2 gloo ranks, half the batch each): the run finishes, its bundle maps
    like a one-process run's does, and the validation counts cover the same pixels (synced ranks)."""
    import mlflow

    from glaciermap.models.serialize import load_bundle
    from glaciermap.tracking.runs import RunSpec
    from glaciermap.training.run import train_run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    folds_path = write_folds(tmp_path / "folds.json", folds, FOLDS)
    sections = {"data": {"cubes_dir": str(cubes_dir)}, "folds": {"path": str(folds_path), "k": FOLDS.k},
                "patches": {"size": 64, "eval_stride": 64, "samples_per_epoch": 8, "batch_size": 4},
                "models": {"unet": {"name": "unet", "encoder": "resnet18"}},
                "train": {"folds": [0], "max_epochs": 1, "sensor_sets": ["optical"], "accelerator": "cpu"},
                "infer": {"sensor_set": "optical"},
                "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(sections))
    one = load_params(tmp_path / "params.yaml")
    two = updated(one, train=updated(one.train, devices=2, strategy="ddp_spawn"),
                  patches=updated(one.patches, batch_size=2))
    spec = RunSpec("unet", "optical", 0)
    results = {n: train_run(p, spec, progress=False, run_dir=tmp_path / n, metrics_dir=None)
               for n, p in (("one", one), ("two", two))}
    client = mlflow.tracking.MlflowClient(one.tracking.tracking_uri)
    for name, r in results.items():
        assert np.isfinite(r["best_val_iou"]), name
        assert client.get_run(r["run_id"]).info.status == "FINISHED"
        model, bundle = load_bundle(tmp_path / name / "model")
        assert bundle.fold == 0 and sum(bundle.channels.values()) == 6
        assert bundle.temperature == r["temperature"] > 0  # calibrated in this process after the ranks' fit
    val = {n: client.get_metric_history(r["run_id"], "val_pixels") for n, r in results.items()}
    assert val["one"] and val["one"][-1].value == val["two"][-1].value  # every val pixel counted once
