"""Sliding-window prediction over a whole cube: overlapping windows blended smoothly."""

from __future__ import annotations

import numpy as np
import torch

from glaciermap.data.datamodule import PreparedCube, crop, grid_offsets, prepare_cube


def blend_window(size: int) -> np.ndarray:
    """2-D weights that fall smoothly to (almost) zero at the window edge (squared sine)."""
    w1 = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2
    return np.maximum(np.outer(w1, w1), 1e-4).astype(np.float32)


def _tta_forward(model: torch.nn.Module, x: torch.Tensor, loc, present, tta: bool) -> torch.Tensor:
    p = torch.sigmoid(model(x, loc, present))
    if not tta:
        return p
    for dims in ((-1,), (-2,), (-2, -1)):
        p = p + torch.flip(torch.sigmoid(model(torch.flip(x, dims), loc, present)), dims)
    return p / 4


@torch.inference_mode()
def predict_cube(model: torch.nn.Module, cube: PreparedCube, groups: dict[str, list[str]], *,
                 size: int = 256, stride: int = 192, batch_size: int = 8, tta: bool = False,
                 device: str | torch.device = "cpu", channels_last: bool | None = None) -> np.ndarray:
    """Glacier probability (H, W) in [0, 1] for one cube; windows are batched.

    `channels_last` (None: the model's `prefers_channels_last`) converts the model's weights in
    place and feeds it channels_last batches: same values, faster convolutions on CPU and GPU.
    """
    h, w = cube.target.shape
    acc = np.zeros((h + size, w + size), np.float32)
    wsum = np.zeros_like(acc)
    win = blend_window(size)
    starts = [(y, x) for y in grid_offsets(h, size, stride) for x in grid_offsets(w, size, stride)]
    model.eval()
    if channels_last is None:
        channels_last = getattr(model, "prefers_channels_last", False)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    for i in range(0, len(starts), batch_size):
        chunk = starts[i:i + batch_size]
        samples = [crop(cube, groups, y, x, size) for y, x in chunk]
        x = torch.stack([s["image"] for s in samples]).to(device).contiguous(memory_format=memory_format)
        loc = torch.stack([s["location"] for s in samples]).to(device)
        present = torch.stack([s["group_present"] for s in samples]).to(device)
        prob = _tta_forward(model, x, loc, present, tta)[:, 0].float().cpu().numpy()
        for (y, x0), p in zip(chunk, prob):
            acc[y:y + size, x0:x0 + size] += p * win
            wsum[y:y + size, x0:x0 + size] += win
    out = acc[:h, :w] / np.maximum(wsum[:h, :w], 1e-8)
    if not np.isfinite(out).all() or out.min() < 0 or out.max() > 1 + 1e-5:
        raise ValueError("prediction outside [0, 1] or not finite: the model is broken")
    return np.clip(out, 0.0, 1.0)


def predict_cube_file(model: torch.nn.Module, bundle, path, *, stride: int, batch_size: int,
                      tta: bool = False) -> tuple[np.ndarray, PreparedCube]:
    """Probability map of a cube file with a trained model bundle (inputs normalised with the
    bundle's fold statistics, windows of its patch size), and the prepared cube."""
    cube = prepare_cube(path, bundle.groups, bundle.stats)
    prob = predict_cube(model, cube, bundle.groups, size=bundle.patch_size, stride=stride,
                        batch_size=batch_size, tta=tta)
    return prob, cube
