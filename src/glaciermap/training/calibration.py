"""Temperature scaling of a trained model, and how well calibrated its probabilities are.

Temperature scaling (Guo et al. 2017, as in DL4GAM): one scalar T > 0 per trained model, fitted
with the weights fixed on the logits z_i of its fold's validation pixels (valid ones only):

    p_i = sigmoid(z_i / T),    T = argmin_T  -1/N sum_i [ y_i log p_i + (1 - y_i) log(1 - p_i) ]

T > 1 softens an over-confident model, T < 1 sharpens an under-confident one. The 0.5 contour (the
mapped outline) does not move, since z / T has the sign of z; what changes is how far from 0.5 the
probabilities lie, which the area uncertainty reads. The fit runs over log T (positive, well
scaled) with L-BFGS on at most `MAX_FIT_PIXELS` pixels (a fixed random subset: one scalar needs no
more).

Reliability, in its binary form: the glacier probabilities are split into `N_BINS` equal-width
bins [k/n, (k+1)/n) of [0, 1] (1 falls in the last). Per bin b with n_b pixels, the confidence
conf_b is their mean probability and the frequency freq_b the fraction of them that is glacier; a
calibrated model has freq_b = conf_b. The expected calibration error is

    ECE = sum_b (n_b / N) |freq_b - conf_b| = sum_b |sum_{i in b} (y_i - p_i)| / N

(bins on the glacier probability, not on the top-label confidence max(p, 1 - p)).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
import torch.nn.functional as F

from glaciermap.data.datamodule import to_model_dtypes
from glaciermap.errors import GlaciermapError

N_BINS = 15
MAX_FIT_PIXELS = 2_000_000
#: T is kept within [1/100, 100]: a fold whose validation pixels are all one class has no finite optimum
LOG_T_BOUND = math.log(100.0)


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, *, max_pixels: int = MAX_FIT_PIXELS,
                    seed: int = 0) -> float:
    """The temperature T minimising the mean BCE of sigmoid(logits / T) against targets (0/1).

    `logits`, `targets`: the valid pixels, any shape (flattened). Above `max_pixels` a fixed random
    subset (torch generator seeded with `seed`, drawn with replacement) is used.
    """
    z, y = logits.detach().flatten().double(), targets.detach().flatten().double()
    if z.numel() == 0:
        raise ValueError("no pixels to fit a temperature on")
    if z.numel() > max_pixels:
        idx = torch.randint(z.numel(), (max_pixels,), generator=torch.Generator().manual_seed(seed))
        z, y = z[idx], y[idx]
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=100, tolerance_grad=1e-9, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z * torch.exp(-log_t), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(torch.exp(log_t.detach().clamp(-LOG_T_BOUND, LOG_T_BOUND)))


def reliability_bins(probs: torch.Tensor, targets: torch.Tensor, n_bins: int = N_BINS) -> dict[str, Any]:
    """Per equal-width probability bin: pixel count, mean probability (confidence) and glacier
    fraction (frequency); JSON-ready lists, None for the confidence and frequency of empty bins."""
    p, y = probs.detach().flatten().double().cpu(), targets.detach().flatten().double().cpu()
    idx = (p * n_bins).long().clamp_(0, n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins)
    sum_p = torch.bincount(idx, weights=p, minlength=n_bins)
    sum_y = torch.bincount(idx, weights=y, minlength=n_bins)
    n = count.tolist()

    def mean(total: torch.Tensor) -> list[float | None]:
        return [a / c if c else None for a, c in zip(total.tolist(), n)]

    return {"edges": [k / n_bins for k in range(n_bins + 1)], "count": n,
            "confidence": mean(sum_p), "frequency": mean(sum_y)}


def expected_calibration_error(bins: dict[str, Any]) -> float:
    """ECE = sum_b (n_b / N) |freq_b - conf_b| over the non-empty bins of `reliability_bins`."""
    n = sum(bins["count"])
    if n == 0:
        return float("nan")
    return sum(c * abs(f - p) for c, f, p in zip(bins["count"], bins["frequency"], bins["confidence"]) if c) / n


@torch.no_grad()
def validation_logits(model: torch.nn.Module, dm, device: str | torch.device = "cpu"
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and targets (1-D, on the CPU) of the valid pixels of the datamodule's validation
    patches, predicted in float32 by `model` in eval mode on `device`."""
    if not hasattr(dm, "val_set"):  # trained in spawned ranks: this process's datamodule was never set up
        dm.setup("fit")
    model.eval().to(device)
    zs, ys = [], []
    for batch in dm.val_dataloader():
        batch = to_model_dtypes({k: v.to(device) for k, v in batch.items()})
        z = model(batch["image"], batch.get("location"), batch.get("group_present")).float()
        valid = batch["valid"].bool()
        zs.append(z[valid].cpu())
        ys.append(batch["target"][valid].float().cpu())
    return (torch.cat(zs), torch.cat(ys)) if zs else (torch.zeros(0), torch.zeros(0))


def calibrate(model: torch.nn.Module, dm, *, device: str | torch.device = "cpu", n_bins: int = N_BINS,
              max_pixels: int = MAX_FIT_PIXELS) -> dict[str, Any]:
    """Fit the model's temperature on its fold's validation pixels; reliability before and after.

    Returns what `calibration.json` holds: temperature, ece_before, ece_after, nll_before,
    nll_after (mean BCE over all the pixels), n_pixels and the bins of both reliability diagrams.
    """
    z, y = validation_logits(model, dm, device)
    if z.numel() == 0:
        raise GlaciermapError("no valid validation pixels to calibrate the model on",
                              hint="the fold's validation glaciers are missing or fully masked: check the folds")
    t = fit_temperature(z, y, max_pixels=max_pixels)
    if abs(math.log(t)) >= LOG_T_BOUND - 1e-6:
        why = ("the model's validation probabilities carry almost no information (scaled to about 0.5 "
               "everywhere): train longer or check the data" if t > 1 else
               "the validation pixels are perfectly separated (e.g. all one class), so T is not identified: "
               "use more validation glaciers")
        warnings.warn(f"calibration temperature reached its bound ({t:.3g}; allowed 0.01 to 100): {why}",
                      stacklevel=2)
    out: dict[str, Any] = {"temperature": t}
    bins = {}
    for when, scale in (("before", 1.0), ("after", t)):
        bins[when] = reliability_bins(torch.sigmoid(z / scale), y, n_bins)
        out[f"ece_{when}"] = expected_calibration_error(bins[when])
        out[f"nll_{when}"] = float(F.binary_cross_entropy_with_logits(z.double() / scale, y.double()))
    return {**out, "n_pixels": int(z.numel()), "bins": bins}
