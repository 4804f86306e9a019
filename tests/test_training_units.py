"""Losses, metrics, sliding-window blending and the NaN guard, on hand-made tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from glaciermap.data.windows import PreparedCube, blend_window, crop, predict_cube, window_starts
from glaciermap.metrics import confusion, scores
from glaciermap.training.losses import LOSSES
from glaciermap.training.task import NonFiniteLossError, SegmentationTask


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_ignore_invalid_pixels(name):
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 16, 16), (torch.rand(2, 1, 16, 16) > 0.5).float()
    valid = torch.ones_like(target, dtype=torch.bool)
    valid[..., :8] = False
    changed = logits.clone()
    changed[..., :8] = 50.0  # wildly wrong, but only where pixels are invalid
    fn = LOSSES[name]
    assert torch.isclose(fn(logits, target, valid), fn(changed, target, valid))
    valid_all = torch.ones_like(valid)
    assert not torch.isclose(fn(logits, target, valid_all), fn(changed, target, valid_all))


def test_scores_are_not_fooled_by_trivial_predictions():
    rng = np.random.default_rng(0)
    target = np.zeros((100, 100), np.uint8)
    target[20:50, 10:80] = 1  # 21 % glacier
    valid = np.ones_like(target, bool)
    noisy = np.clip(target + rng.normal(0, 0.2, target.shape), 0, 1)
    good = scores(confusion(noisy, target, valid))["iou"]
    all_glacier = scores(confusion(np.ones(target.shape), target, valid))
    all_background = scores(confusion(np.zeros(target.shape), target, valid))
    assert good > 0.9
    assert all_glacier["iou"] == pytest.approx(target.mean(), abs=1e-9)
    assert all_glacier["iou"] < good - 0.5
    assert all_background["iou"] == 0.0
    assert np.isnan(all_background["precision"])  # no positive prediction: undefined, not 1


def test_confusion_ignores_invalid_pixels():
    target = np.ones((10, 10), np.uint8)
    prob = np.ones((10, 10))
    prob[:, :5] = 0  # wrong on the left half ...
    valid = np.ones((10, 10), bool)
    valid[:, :5] = False  # ... which is all cloud
    assert scores(confusion(prob, target, valid))["iou"] == 1.0


class ConstantModel(torch.nn.Module):
    def __init__(self, logit: float):
        super().__init__()
        self.logit = logit

    def forward(self, x, location=None, group_present=None):
        return torch.full((x.shape[0], 1, *x.shape[-2:]), self.logit)


def _cube(h: int, w: int) -> PreparedCube:
    return PreparedCube(image=np.zeros((2, h, w), np.float32), target=np.zeros((h, w), np.uint8),
                        glacier=np.zeros((h, w), np.uint8), valid=np.ones((h, w), bool),
                        location=np.zeros(2, np.float32), glacier_pixels=np.zeros((0, 2), int))


@pytest.mark.parametrize("shape", [(70, 90), (32, 32), (129, 64)])
def test_sliding_window_blends_to_the_model_output_everywhere(shape):
    prob = predict_cube(ConstantModel(0.7), _cube(*shape), {"optical": ["a", "b"]}, size=32, stride=20,
                        batch_size=3, tta=True)
    assert prob.shape == shape
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-0.7)), rtol=1e-5)


@pytest.mark.parametrize("tta", [False, True])
@pytest.mark.parametrize("temperature", [2.5, 0.6])
def test_temperature_divides_the_logits_before_the_sigmoid(temperature, tta):
    prob = predict_cube(ConstantModel(1.2), _cube(40, 50), {"optical": ["a", "b"]}, size=32, stride=20,
                        tta=tta, temperature=temperature)
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-1.2 / temperature)), rtol=1e-5)


def test_channels_last_inference_gives_the_same_probabilities():
    """U-Net runs channels_last by default (faster on CPU): the map must not change."""
    from glaciermap.models import build_model
    from glaciermap.config.models import ModelConfig

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="unet", encoder="resnet18"), {"optical": 2})
    assert model.prefers_channels_last
    cube = _cube(70, 90)
    cube.image[:] = np.random.default_rng(0).normal(size=cube.image.shape)
    kw = dict(size=64, stride=40, batch_size=3)
    fast = predict_cube(model, cube, {"optical": ["a", "b"]}, **kw)
    assert model.net.encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    plain = predict_cube(model, cube, {"optical": ["a", "b"]}, channels_last=False, **kw)
    assert model.net.encoder.conv1.weight.is_contiguous()
    np.testing.assert_allclose(fast, plain, atol=1e-5)
    assert fast.std() > 0  # a real map, not a constant


class PresenceModel(torch.nn.Module):
    """A small conv net whose output also depends on which sensor groups a window has."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 1, 5, padding=2)

    def forward(self, x, location=None, group_present=None):
        return self.conv(x) + group_present.float()[:, :, None, None].sum(1, keepdim=True)


def _reference(model, cube, groups, size, stride):
    """Whole-cube prediction the plain way: numpy crops one window at a time, blended on the host."""
    h, w = cube.target.shape
    acc, wsum, win = np.zeros((h + size, w + size)), np.zeros((h + size, w + size)), blend_window(size)
    for y in window_starts(h, size, stride):
        for x in window_starts(w, size, stride):
            s = crop(cube, groups, y, x, size)
            with torch.no_grad():
                p = torch.sigmoid(model(s["image"][None], s["location"][None], s["group_present"][None]))[0, 0]
            acc[y:y + size, x:x + size] += p.numpy() * win
            wsum[y:y + size, x:x + size] += win
    return (acc / wsum)[:h, :w]


@pytest.mark.parametrize("shape", [(150, 230), (20, 45)])
def test_device_windowing_matches_window_by_window_prediction(shape):
    """Gathered windows, on-device blending, strips and NaN-marked absent groups give the map that
    cropping and blending window by window gives, whatever the strip size."""
    groups = {"optical": ["a", "b"], "sar": ["c"]}
    cube = _cube(*shape)
    cube.image = np.random.default_rng(1).normal(size=(3, *shape)).astype(np.float32)
    cube.image[2, : shape[0] // 2, : shape[1] // 3] = np.nan  # SAR missing in one corner: absent there
    cube.image[0, 5, 7] = np.nan  # an optical void: zeroed, the group stays present
    model = PresenceModel()
    ref = _reference(model, cube, groups, size=32, stride=24)
    for strip_bytes in (1, 40 * 3 * 256 * 4, 1 << 30):  # one window row per strip, a few, all at once
        got = predict_cube(model, cube, groups, size=32, stride=24, batch_size=5, max_strip_bytes=strip_bytes)
        np.testing.assert_allclose(got, ref, atol=1e-5)
    assert ref.std() > 0


def test_blend_window_is_smooth_and_positive():
    w = blend_window(64)
    assert w.min() > 0 and w[32, 32] == pytest.approx(w.max(), rel=1e-3)
    assert w[0, 32] < 0.01 * w[32, 32]


def test_nan_loss_stops_training_naming_the_batch():
    task = SegmentationTask(model={"name": "unet", "encoder": "resnet18"}, groups={"optical": 2})
    batch = {"image": torch.full((2, 2, 32, 32), float("nan")), "target": torch.zeros(2, 1, 32, 32),
             "valid": torch.ones(2, 1, 32, 32, dtype=torch.bool)}
    with pytest.raises(NonFiniteLossError, match="batch 7"):
        task.training_step(batch, 7)



def test_training_runs_channels_last_with_the_same_loss_and_gradients():
    """The CNNs train channels_last (faster convolutions): weights converted when fitting starts,
    batches on the way in, and the loss and gradients those of the contiguous layout."""
    torch.manual_seed(0)
    task = SegmentationTask(model={"name": "unet", "encoder": "resnet18"}, groups={"optical": 3})
    assert task.channels_last
    gen = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(2, 3, 64, 64, generator=gen), "valid": torch.ones(2, 1, 64, 64, dtype=torch.bool),
             "target": (torch.rand(2, 1, 64, 64, generator=gen) > 0.5).float()}

    def loss_and_grad():
        task.zero_grad()
        loss, _ = task._loss(batch)
        loss.backward()
        return loss.item(), task.model.net.encoder.conv1.weight.grad.clone()

    task.train()
    conv1 = task.model.net.encoder.conv1.weight
    assert not conv1.is_contiguous(memory_format=torch.channels_last)
    before = loss_and_grad()
    task.on_fit_start()
    assert conv1.is_contiguous(memory_format=torch.channels_last)
    after = loss_and_grad()
    assert after[0] == pytest.approx(before[0], rel=1e-5)
    torch.testing.assert_close(after[1], before[1], rtol=1e-4, atol=1e-6)


def test_history_survives_dvc_deleting_the_plot_file(tmp_path):
    """DVC removes a stage's outputs before re-running it; a resumed run whose last epoch had
    ended does not validate again, so the plot file must come back from the run folder's copy."""
    from glaciermap.training.run import HistoryCSV

    plot, copy = tmp_path / "metrics" / "h.csv", tmp_path / "run" / "history.csv"
    first = HistoryCSV(plot, copy)
    first.rows = [{"epoch": 0, "val_iou": 0.5}, {"epoch": 1, "val_iou": 0.7}]
    first.flush()
    plot.unlink()  # what `dvc repro` does before re-running the stage
    resumed = HistoryCSV(plot, copy)
    assert [r["val_iou"] for r in resumed.rows] == ["0.5", "0.7"]
    resumed.flush()
    assert plot.read_text() == copy.read_text()


def test_only_an_interrupted_run_with_the_same_inputs_resumes(tmp_path):
    """A checkpoint of other inputs (new data or params) or of a finished run never resumes:
    `dvc repro` after a data change must train afresh, not load the old model."""
    from glaciermap.tracking.runs import FINISHED_FILE, RUN_ID_FILE
    from glaciermap.training.run import prepare_run_dir

    run_dir, plot = tmp_path / "run", tmp_path / "metrics" / "h.csv"

    def interrupted_run() -> None:  # what a killed run leaves behind
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": {"w": torch.zeros(1)}, "epoch": 0}, run_dir / "checkpoints" / "last.ckpt")
        (run_dir / RUN_ID_FILE).write_text("abc")
        plot.parent.mkdir(exist_ok=True)
        plot.write_text("epoch\n0\n")

    assert prepare_run_dir(run_dir, "key-a", extra=(plot,)) is False  # nothing to resume
    interrupted_run()
    assert prepare_run_dir(run_dir, "key-a", extra=(plot,)) is True  # same inputs: resume, keep all
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and plot.exists()
    assert prepare_run_dir(run_dir, "key-b", extra=(plot,)) is False  # inputs changed: fresh
    assert not (run_dir / "checkpoints").exists() and not (run_dir / RUN_ID_FILE).exists()
    assert not plot.exists()
    interrupted_run()
    (run_dir / FINISHED_FILE).touch()
    assert prepare_run_dir(run_dir, "key-b", extra=(plot,)) is False  # finished: trains again
    assert not (run_dir / "checkpoints").exists() and not (run_dir / FINISHED_FILE).exists()
    assert prepare_run_dir(run_dir, "key-b") is False  # a stamp alone (no checkpoint) resumes nothing
