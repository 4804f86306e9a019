"""Cubes as the model sees them, and windows over them: the one home of windowing (no Lightning).

Training, evaluation, inference, the served model and the benchmarks all go through here:

    prepare_cube(path, groups, stats)    cube file -> PreparedCube: the sensor set's bands, normalised
                                         (x - mean) / std with the fold's statistics, NaN kept
    window_starts(length, size, stride)  window offsets along one axis: every `stride`, last one flush
    crop(cube, groups, y0, x0, size)     one window as tensors (padded as no data outside the cube;
                                         `affine` rescales its bands, e.g. a photometric augmentation)
    blend_window(size)                   weights sin^2 falling to ~0 at the window edge
    predict_cube(model, cube, ...)       the whole cube's glacier probability (predict_cube_file: of a
                                         cube file; predict_members: of a fold's ensemble members):

        P(p) = sum_w  b(p - o_w) * sigmoid(f(x_w) / T)(p - o_w)  /  sum_w b(p - o_w)

    over windows w at offsets o_w, with the model's calibration temperature T (1: raw logits;
    `predict_cube_file` takes it from the bundle and refuses an uncalibrated one). The cube moves
    to the device once per strip of window rows (on a GPU the next strip is copied while the
    current one is predicted); a batch of windows is cut with one gather, the forward pass runs
    under bf16 autocast where supported, and blending is one `index_add_` per batch on the device:
    one host transfer per strip each way. Strips bound the
    device memory for cubes larger than the GPU (`max_strip_bytes`); rows no later strip touches
    are final.

A window's `group_present` says which sensor groups have any finite value in it (a model zeroes the
absent ones); NaN inputs are set to 0 after normalisation (the mean).
"""

from __future__ import annotations

from contextlib import nullcontext as _nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from glaciermap.data.cubes import GROUP_VOIDS, read_cube
from glaciermap.device import autocast, autocast_dtype, resolve_device
from glaciermap.errors import ConfigError

if TYPE_CHECKING:
    from glaciermap.config import Params


@dataclass
class PreparedCube:
    """A cube reduced to what the model eats: normalised bands, masks, location."""

    image: np.ndarray  # (C, H, W) float32, normalised, NaN kept (zeroed per window); a torch tensor
    # already on the device is also accepted by predict_cube (no host transfer)
    target: np.ndarray  # (H, W) uint8, all-glacier mask
    glacier: np.ndarray  # (H, W) uint8, this glacier
    valid: np.ndarray  # (H, W) bool
    location: np.ndarray  # (2,) lon, lat
    glacier_pixels: np.ndarray  # (N, 2) row/col of this glacier's pixels
    debris: np.ndarray | None = None  # (H, W) uint8 cube layer mask_debris (None: no debris truth)
    other_date: np.ndarray | None = None  # (H, W) uint8 cube layer mask_other_date (None: not marked)


def band_stats(bands: list[str], stats: dict[str, dict[str, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std), each (C,) float32: the fold's training statistics of these bands."""
    missing = [b for b in bands if b not in stats]
    if missing:
        raise ConfigError(f"no normalisation statistics for band(s) {missing}",
                          hint="the sensor set asks for bands the training cubes lack")
    return (np.array([stats[b]["mean"] for b in bands], np.float32),
            np.array([stats[b]["std"] for b in bands], np.float32))


def normalise(image: np.ndarray, bands: list[str], stats: dict[str, dict[str, float]]) -> np.ndarray:
    """(x - mean) / std per band, with the fold's training statistics."""
    mean, std = band_stats(bands, stats)
    return (image - mean[:, None, None]) / std[:, None, None]


def prepare_cube(path: Path, groups: dict[str, list[str]], stats: dict[str, dict[str, float]]) -> PreparedCube:
    """Load a cube, select the sensor set's bands in order and normalise them.

    valid = not mask_invalid, and not the void mask of each group the set uses that has one
    (`mask_dem_void` for dem, `mask_dhdt_void` for dhdt).
    """
    cube = read_cube(path)
    bands = [b for bs in groups.values() for b in bs]
    valid = cube.mask_invalid == 0
    for group, mask in GROUP_VOIDS.items():
        if group in groups and getattr(cube, mask) is not None:
            valid &= getattr(cube, mask) == 0
    return PreparedCube(
        image=normalise(cube.select(bands), bands, stats), target=cube.mask_all, glacier=cube.mask_glacier,
        valid=valid,
        location=np.array([cube.attrs.get("lon", 0.0), cube.attrs.get("lat", 0.0)], np.float32),
        glacier_pixels=np.argwhere(cube.mask_glacier == 1), debris=cube.mask_debris,
        other_date=cube.mask_other_date,
    )


def window_starts(length: int, size: int, stride: int) -> list[int]:
    """Window starts covering [0, length) with windows of `size` every `stride` (last one flush)."""
    if length <= size:
        return [0]
    stride = min(stride, size)  # a stride above the window size would leave pixels uncovered
    return list(range(0, length - size, stride)) + [length - size]


def n_windows(height: int, width: int, size: int, stride: int) -> int:
    """How many windows tile an H x W cube."""
    return len(window_starts(height, size, stride)) * len(window_starts(width, size, stride))


def _group_slices(groups: dict[str, list[str]]) -> list[slice]:
    out, start = [], 0
    for bands in groups.values():
        out.append(slice(start, start + len(bands)))
        start += len(bands)
    return out


def crop(cube: PreparedCube, groups: dict[str, list[str]], y0: int, x0: int, size: int,
         affine: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """A size x size window at (y0, x0), padded as no data where it leaves the cube. With `affine`
    = (scale, shift), each (C, 1, 1), the window's bands become scale * x + shift before NaN (no
    data) is zeroed, so no-data pixels stay at the mean whatever the affine."""
    c, h, w = cube.image.shape
    img = np.full((c, size, size), np.nan, np.float32)
    tgt = np.zeros((size, size), np.float32)
    gla = np.zeros((size, size), np.float32)
    val = np.zeros((size, size), bool)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, h), min(x0 + size, w)
    if ye > ys and xe > xs:
        dst = (slice(ys - y0, ye - y0), slice(xs - x0, xe - x0))
        img[(slice(None), *dst)] = cube.image[:, ys:ye, xs:xe]
        tgt[dst] = cube.target[ys:ye, xs:xe]
        gla[dst] = cube.glacier[ys:ye, xs:xe]
        val[dst] = cube.valid[ys:ye, xs:xe]
    if affine is not None:
        img = img * affine[0] + affine[1]
    present = [bool(np.isfinite(img[s]).any()) for s in _group_slices(groups)]
    return {
        "image": torch.from_numpy(np.nan_to_num(img, nan=0.0)),
        "target": torch.from_numpy(tgt)[None],
        "glacier": torch.from_numpy(gla)[None],
        "valid": torch.from_numpy(val)[None],
        "group_present": torch.tensor(present),
        "location": torch.from_numpy(cube.location),
    }


def blend_window(size: int) -> np.ndarray:
    """2-D weights that fall smoothly to (almost) zero at the window edge (squared sine)."""
    w1 = np.sin(np.pi * (np.arange(size) + 0.5) / size) ** 2
    return np.maximum(np.outer(w1, w1), 1e-4).astype(np.float32)


def _forward(model: torch.nn.Module, x: torch.Tensor, loc, present, tta: bool, temperature: float) -> torch.Tensor:
    """sigmoid(logits / T); with `tta` the mean of that over the identity and three flips."""
    p = torch.sigmoid(model(x, loc, present).float() / temperature)
    if not tta:
        return p
    for dims in ((-1,), (-2,), (-2, -1)):
        p = p + torch.flip(torch.sigmoid(model(torch.flip(x, dims), loc, present).float() / temperature), dims)
    return p / 4


def _strip_rows(ys: list[int], size: int, row_bytes: int, max_strip_bytes: int) -> list[list[int]]:
    """Window rows grouped into strips whose pixel rows fit `max_strip_bytes` (at least one window row)."""
    strips, cur = [], []
    for y in ys:
        if cur and (y + size - cur[0]) * row_bytes > max_strip_bytes:
            strips.append(cur)
            cur = []
        cur.append(y)
    return strips + [cur]


class _StripLoader:
    """Strips of a cube's image on the device. On a GPU the next strip is copied on a side stream
    by a background thread while the current one is predicted (host-to-device copies and model
    compute overlap); elsewhere strips are plain views/copies made on demand."""

    def __init__(self, image: np.ndarray | torch.Tensor, strips: list[list[int]], size: int, wp: int,
                 dev: torch.device):
        self.image, self.strips, self.size, self.wp, self.dev = image, strips, size, wp, dev
        self.pool = self.stream = None
        self.pending: dict[int, object] = {}
        if dev.type == "cuda" and not (torch.is_tensor(image) and image.is_cuda) and len(strips) > 1:
            from concurrent.futures import ThreadPoolExecutor

            self.pool, self.stream = ThreadPoolExecutor(1), torch.cuda.Stream(dev)
            self.pending[0] = self.pool.submit(self._load, 0)

    def _load(self, k: int) -> tuple[torch.Tensor, object]:
        c, h, w = self.image.shape
        r0 = self.strips[k][0]
        r1 = self.strips[k][-1] + self.size
        src = self.image[:, r0:min(r1, h)]
        src = src if torch.is_tensor(src) else torch.from_numpy(np.ascontiguousarray(src))
        with torch.inference_mode(), torch.cuda.stream(self.stream) if self.stream else _nullcontext():
            out = torch.full((c, r1 - r0, self.wp), float("nan"), device=self.dev)
            out[:, : src.shape[1], :w] = src.to(self.dev, non_blocking=self.stream is not None)
            event = torch.cuda.Event() if self.stream else None
            if event is not None:
                event.record(self.stream)
        return out, event

    def get(self, k: int) -> torch.Tensor:
        if self.pool is None:
            return self._load(k)[0]
        out, event = self.pending.pop(k).result()
        if k + 1 < len(self.strips):
            self.pending[k + 1] = self.pool.submit(self._load, k + 1)
        else:
            self.pool.shutdown(wait=False)
        torch.cuda.current_stream(self.dev).wait_event(event)
        out.record_stream(torch.cuda.current_stream(self.dev))
        return out


@torch.inference_mode()
def predict_cube(model: torch.nn.Module, cube: PreparedCube, groups: dict[str, list[str]], *,
                 size: int = 256, stride: int = 192, batch_size: int = 8, tta: bool = False,
                 temperature: float = 1.0, device: str | torch.device = "cpu", precision: str = "auto",
                 channels_last: bool | None = None, max_strip_bytes: int = 2 << 30) -> np.ndarray:
    """Glacier probability (H, W) in [0, 1] for one cube (see the module docstring for the blending).

    `temperature` T divides the logits before the sigmoid (calibration; 1 leaves them as they are).
    `device` is a torch device or "auto"; `precision` "auto" runs bf16 autocast where supported.
    `channels_last` (None: the model's `prefers_channels_last`) converts the model's weights in
    place and feeds it channels_last batches: same values, faster convolutions on CPU and GPU.
    """
    dev = resolve_device(device) if isinstance(device, str) else torch.device(device)
    dtype = autocast_dtype(dev, precision)
    c, h, w = cube.image.shape
    ys, xs = window_starts(h, size, stride), window_starts(w, size, stride)
    wp = max(w, xs[-1] + size)  # padded width (cubes narrower than a window)
    if channels_last is None:
        channels_last = getattr(model, "prefers_channels_last", False)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.eval().to(dev, memory_format=fmt)
    win = torch.from_numpy(blend_window(size)).to(dev)
    ar = torch.arange(size, device=dev)
    local = (ar[:, None] * wp + ar[None, :]).flatten()  # a window's pixels, as offsets into a strip row-major
    loc = torch.from_numpy(cube.location).to(dev)[None]
    slices = _group_slices(groups)
    out = np.empty((h, w), np.float32)
    carry: tuple[torch.Tensor, torch.Tensor] | None = None  # accumulators of rows the next strip shares
    strips = _strip_rows(ys, size, c * wp * 4, max_strip_bytes)
    loader = _StripLoader(cube.image, strips, size, wp, dev)
    for k, strip in enumerate(strips):
        r0, r1 = strip[0], strip[-1] + size
        img = loader.get(k)  # (C, r1 - r0, wp) on the device, NaN where no data or outside the cube
        finite = torch.stack([torch.isfinite(img[s]).any(0) for s in slices])  # (G, rows, wp)
        img = torch.nan_to_num_(img, nan=0.0)
        acc = torch.zeros((r1 - r0, wp), device=dev)
        wsum = torch.zeros_like(acc)
        if carry is not None:
            acc[: carry[0].shape[0]] += carry[0]
            wsum[: carry[1].shape[0]] += carry[1]
        flat_img, flat_finite = img.view(c, -1), finite.view(len(slices), -1)
        bases = torch.tensor([(y - r0) * wp + x for y in strip for x in xs], device=dev)
        for i in range(0, len(bases), batch_size):
            idx = bases[i:i + batch_size, None] + local[None]  # (B, size*size) flat pixel indices
            n = idx.shape[0]
            x = flat_img[:, idx].transpose(0, 1).reshape(n, c, size, size).contiguous(memory_format=fmt)
            present = flat_finite[:, idx].any(-1).T  # (B, G): groups with any data in the window
            with autocast(dev, dtype):
                prob = _forward(model, x, loc.expand(n, 2), present, tta, temperature)[:, 0]
            acc.view(-1).index_add_(0, idx.flatten(), (prob * win).flatten())
            wsum.view(-1).index_add_(0, idx.flatten(), win.flatten().repeat(n))
        final = (strips[k + 1][0] if k + 1 < len(strips) else r1) - r0  # rows no later strip touches
        done = (acc[:final] / wsum[:final].clamp_min(1e-8))[: max(0, min(h - r0, final)), :w]
        out[r0:r0 + done.shape[0]] = done.cpu().numpy()
        carry = (acc[final:], wsum[final:]) if k + 1 < len(strips) else None
    if not np.isfinite(out).all() or out.min() < 0 or out.max() > 1 + 1e-5:
        raise ValueError("prediction outside [0, 1] or not finite: the model is broken")
    return np.clip(out, 0.0, 1.0)


def predict_cube_file(model: torch.nn.Module, bundle, path, *, stride: int, batch_size: int,
                      tta: bool = False, device: str | torch.device = "cpu", precision: str = "auto"
                      ) -> tuple[np.ndarray, PreparedCube]:
    """Calibrated probability map of a cube file with a trained model bundle (inputs normalised with
    the bundle's fold statistics, windows of its patch size, logits divided by its temperature),
    and the prepared cube. An uncalibrated bundle is an error naming its calibration.json or alias."""
    temperature = bundle.calibrated_temperature()
    cube = prepare_cube(path, bundle.groups, bundle.stats)
    prob = predict_cube(model, cube, bundle.groups, size=bundle.patch_size, stride=stride,
                        batch_size=batch_size, tta=tta, temperature=temperature, device=device,
                        precision=precision)
    return prob, cube


def ensemble_settings(params: Params, **overrides) -> dict:
    """`predict_members`' settings from params: the evaluation stride, and infer's batch size, flips
    (`tta`), device and precision. infer, evaluate and the benchmark all predict with them, so a
    test score is of the maps infer makes."""
    infer = params.infer
    return {"stride": params.patches.eval_stride, "batch_size": infer.batch_size or params.patches.batch_size,
            "tta": infer.tta, "device": infer.device, "precision": infer.precision, **overrides}


def predict_members(members: list, path, **settings) -> tuple[np.ndarray, PreparedCube]:
    """A fold's ensemble members [(model, bundle), ...] on one cube file: their probabilities stacked
    (members, H, W), each from `predict_cube_file(model, bundle, path, **settings)`, and the prepared
    cube. The fold's probability is their mean (infer, evaluate and the benchmark use this)."""
    out = [predict_cube_file(model, bundle, path, **settings) for model, bundle in members]
    return np.stack([prob for prob, _ in out]), out[0][1]
