"""Temperature scaling and calibration error (issue #16, item 2), and the refusal of uncalibrated models."""

from __future__ import annotations

import json
import warnings
from types import SimpleNamespace

import pytest
import torch
import yaml

from glaciermap import cli
from glaciermap.data.folds import write_folds
from glaciermap.errors import GlaciermapError, InputDataError
from glaciermap.training.calibration import (calibrate, expected_calibration_error, fit_temperature,
                                             reliability_bins)

from conftest import FOLDS


@pytest.mark.parametrize("t_true", [2.5, 0.6])
def test_fit_temperature_recovers_a_known_temperature(t_true):
    g = torch.Generator().manual_seed(1)
    z = 3.0 * torch.randn(200_000, generator=g)  # logits ~ N(0, 3)
    y = torch.bernoulli(torch.sigmoid(z / t_true), generator=g)  # labels of a model whose calibrated logits are z / T
    assert fit_temperature(z, y) == pytest.approx(t_true, rel=0.05)
    assert fit_temperature(z, y, max_pixels=50_000) == pytest.approx(t_true, rel=0.05)  # fixed subset


def test_ece_of_calibrated_probabilities_is_about_zero():
    g = torch.Generator().manual_seed(2)
    p = torch.rand(200_000, generator=g)
    y = torch.bernoulli(p, generator=g)
    assert expected_calibration_error(reliability_bins(p, y)) < 0.01


def test_ece_of_an_over_confident_model_on_two_bins_by_hand():
    # bin [0, 0.5): two pixels at 0.2, none glacier -> |0 - 0.2| = 0.2
    # bin [0.5, 1]: four pixels at 0.9 (one at exactly 1.0 -> last bin), half glacier:
    #   conf = (0.9 * 3 + 1.0) / 4 = 0.925, freq = 0.5 -> 0.425
    # ECE = 2/6 * 0.2 + 4/6 * 0.425 = 0.35
    p = torch.tensor([0.2, 0.2, 0.9, 0.9, 0.9, 1.0])
    y = torch.tensor([0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    bins = reliability_bins(p, y, n_bins=2)
    assert bins["edges"] == [0.0, 0.5, 1.0] and bins["count"] == [2, 4]
    assert bins["confidence"] == pytest.approx([0.2, 0.925]) and bins["frequency"] == pytest.approx([0.0, 0.5])
    assert expected_calibration_error(bins) == pytest.approx(0.35)
    empty = reliability_bins(torch.tensor([0.7]), torch.tensor([1.0]), n_bins=4)
    assert empty["count"] == [0, 0, 1, 0] and empty["confidence"][0] is None  # empty bins: no value
    assert expected_calibration_error(empty) == pytest.approx(0.3)


class ScaledInput(torch.nn.Module):
    """Logit = 3 * the first input channel: over-confident by T = 3 on labels drawn from sigmoid(x)."""

    def forward(self, x, location=None, group_present=None):
        return 3.0 * x[:, :1]


def test_calibrate_uses_valid_validation_pixels_only(tmp_path):
    from glaciermap.training.figures import reliability_figure

    g = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(6):
        x = 2.0 * torch.randn(8, 2, 32, 32, generator=g)
        target = torch.bernoulli(torch.sigmoid(x[:, :1]), generator=g)
        valid = torch.ones_like(target, dtype=torch.bool)
        valid[..., :8] = False  # a quarter of each patch is cloud: wildly wrong labels there
        x[:, :1, :, :8], target[..., :8] = 5.0, 0.0
        batches.append({"image": x, "target": target, "valid": valid, "location": torch.zeros(8, 2),
                        "group_present": torch.ones(8, 1, dtype=torch.bool)})
    dm = SimpleNamespace(val_set=batches, val_dataloader=lambda: batches)
    result = calibrate(ScaledInput(), dm)
    assert result["n_pixels"] == 6 * 8 * 32 * 24
    assert result["temperature"] == pytest.approx(3.0, rel=0.1)
    assert result["ece_after"] < 0.02 < result["ece_before"]
    assert result["nll_after"] < result["nll_before"]
    assert sum(result["bins"]["after"]["count"]) == result["n_pixels"]
    json.dumps(result)  # what calibration.json holds: plain JSON
    png = reliability_figure(result, tmp_path / "reliability.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_fold_without_valid_validation_pixels_is_a_clear_error():
    batch = {"image": torch.zeros(2, 2, 8, 8), "target": torch.ones(2, 1, 8, 8),
             "valid": torch.zeros(2, 1, 8, 8, dtype=torch.bool)}  # all cloud
    dm = SimpleNamespace(val_set=[batch], val_dataloader=lambda: [batch])
    with pytest.raises(GlaciermapError, match="no valid validation pixels to calibrate"):
        calibrate(ScaledInput(), dm)


def test_an_uninformative_model_reaches_the_temperature_bound_with_a_warning():
    g = torch.Generator().manual_seed(4)
    x = 2.0 * torch.randn(4, 1, 32, 32, generator=g)
    batch = {"image": x, "target": torch.bernoulli(torch.full_like(x, 0.5), generator=g),  # labels ignore x
             "valid": torch.ones_like(x, dtype=torch.bool)}
    dm = SimpleNamespace(val_set=[batch], val_dataloader=lambda: [batch])
    with pytest.warns(UserWarning, match="temperature reached its bound .*carry almost no information"):
        result = calibrate(ScaledInput(), dm)
    assert result["temperature"] == pytest.approx(100.0)


# --------------------------------------------------------------------- uncalibrated bundles
def _bundle(folder, fold):
    """A random-weight U-Net bundle, as training writes it before calibrating."""
    from glaciermap.config import ModelConfig, SensorsConfig
    from glaciermap.models import build_model
    from glaciermap.models.serialize import ModelBundle, save_bundle

    groups = SensorsConfig().resolve("optical")
    cfg = ModelConfig(name="unet", encoder="resnet18")
    model = build_model(cfg, {g: len(b) for g, b in groups.items()}, load_encoder_weights=False)
    return save_bundle(folder, model, ModelBundle(model=cfg.model_dump(mode="json"), groups=groups,
                                                  stats=fold.stats, patch_size=64, sensor_set="optical",
                                                  fold=fold.index))


def test_logged_model_says_nothing_about_signatures_and_loads_back(tmp_path, folds, monkeypatch):
    """log_model gives its signature explicitly: MLflow's advice on type hints and input examples
    is not repeated on every training run, and the logged model rebuilds the same weights."""
    import warnings

    import mlflow
    import torch

    from glaciermap.models.serialize import load_bundle
    from glaciermap.tracking.registry import load_model_uri, log_model

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        folder = _bundle(tmp_path / "model", folds[0])
        (folder / "calibration.json").write_text(json.dumps({"temperature": 1.3}))
        exp = mlflow.create_experiment("t", artifact_location=(tmp_path / "artifacts").as_uri())  # not ./mlruns
        run_id = mlflow.MlflowClient().create_run(exp).info.run_id
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            log_model(run_id, folder, "unet-fold0")
        said = [str(w.message) for w in caught]
        assert not [m for m in said if "type hints" in m or "input example" in m], said
        model, bundle = load_model_uri(f"runs:/{run_id}/unet-fold0")
        ref, _ = load_bundle(folder)
        assert bundle.temperature == 1.3
        for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True):
            assert torch.equal(a, b)
    finally:
        mlflow.set_tracking_uri(None)


def test_bundle_temperature_comes_from_calibration_json_only(tmp_path, folds):
    from glaciermap.models.serialize import load_bundle, require_calibrated

    folder = _bundle(tmp_path / "model", folds[0])
    _, bundle = load_bundle(folder)
    assert bundle.temperature is None and bundle.source == str(folder / "calibration.json")
    with pytest.raises(GlaciermapError) as err:
        require_calibrated(bundle)
    assert err.value.message.startswith(f"{folder / 'calibration.json'}: model bundle has no calibration")
    bundle.source = "models:/glaciermap-unet-optical@fold-0"  # a registry model names its alias
    with pytest.raises(GlaciermapError, match="^models:/glaciermap-unet-optical@fold-0: "):
        require_calibrated(bundle)

    (folder / "calibration.json").write_text(json.dumps({"temperature": 1.7, "ece_before": 0.1}))
    _, bundle = load_bundle(folder)
    assert require_calibrated(bundle) == 1.7
    assert "temperature" not in json.loads((folder / "model.json").read_text())  # one home: calibration.json
    for bad in ('{"temperature": -1}', '{"ece": 0.1}', '{"temperature": 1.7'):
        (folder / "calibration.json").write_text(bad)
        with pytest.raises(InputDataError, match="calibration") as err:
            load_bundle(folder)
        assert err.value.path == str(folder / "calibration.json")


def test_evaluate_refuses_an_uncalibrated_model_naming_its_file(tmp_path, cubes_dir, folds, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    folds_path = write_folds(tmp_path / "folds.json", folds, FOLDS)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "data": {"cubes_dir": str(cubes_dir)}, "folds": {"path": str(folds_path), "k": FOLDS.k},
        "train": {"folds": [0], "sensor_sets": ["optical"], "runs_dir": "runs"}, "infer": {"sensor_set": "optical"},
        "tracking": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}}))
    _bundle(tmp_path / "runs/unet/optical/fold0-seed0/model", folds[0])
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # main() replaces it
    code = cli.main(["--params", "params.yaml", "-q", "evaluate", "--model", "unet", "--sensors", "optical"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: runs/unet/optical/fold0-seed0/model/calibration.json: model bundle has no "
                             "calibration")
    assert not (tmp_path / "metrics").exists()


def test_infer_compile_wraps_every_member_with_torch_compile(tmp_path, folds):
    """infer.compile (issue #19): the fold models come back torch.compile'd, sharing the weights."""
    from glaciermap.config import parse_params
    from glaciermap.models.serialize import load_bundle
    from glaciermap.tracking.registry import fold_models
    from glaciermap.tracking.runs import RunSpec

    for compile_ in (False, True):
        params = parse_params({"train": {"runs_dir": str(tmp_path / "runs"), "folds": [0], "sensor_sets": ["optical"],
                                         "seeds": [0]},
                               "infer": {"sensor_set": "optical", "compile": compile_}})
        folder = RunSpec("unet", "optical", 0).model_dir(params)
        if not folder.exists():
            _bundle(folder, folds[0])
        (model, bundle), = fold_models(params, "unet", "optical")[0]
        assert isinstance(model, torch._dynamo.eval_frame.OptimizedModule) == compile_
        weights = model._orig_mod if compile_ else model
        saved, _ = load_bundle(folder)
        assert all(torch.equal(a, b) for a, b in zip(weights.state_dict().values(), saved.state_dict().values()))
