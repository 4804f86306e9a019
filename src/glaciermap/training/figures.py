"""The training run's figures (logged to MLflow): predictions vs truth on a few validation patches, and
the reliability diagram of its calibration."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from glaciermap.io import atomic_path  # noqa: E402


def _rgb(image: np.ndarray) -> np.ndarray:
    """A viewable false-colour composite from the first three (normalised) channels."""
    rgb = image[[2, 1, 0]] if image.shape[0] >= 3 else np.repeat(image[:1], 3, 0)
    rgb = np.moveaxis(rgb, 0, -1)
    lo, hi = np.percentile(rgb, [2, 98])
    return np.clip((rgb - lo) / max(hi - lo, 1e-6), 0, 1)


@torch.inference_mode()
def sample_predictions_figure(model: torch.nn.Module, dm, path: Path, n: int = 4) -> Path:
    """Image, truth and prediction for a few validation patches."""
    ds = dm.val_set if hasattr(dm, "val_set") else None
    if ds is None or len(ds) == 0:
        return path
    idx = np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int)
    samples = [ds[int(i)] for i in idx]
    model.eval()
    dev = next(model.parameters()).device
    stack = lambda key: torch.stack([s[key] for s in samples]).to(dev)  # noqa: E731
    prob = torch.sigmoid(model(stack("image"), stack("location"), stack("group_present")))[:, 0].float().cpu().numpy()
    fig, axes = plt.subplots(len(samples), 3, figsize=(7.5, 2.5 * len(samples)), squeeze=False)
    for row, s, p in zip(axes, samples, prob):
        row[0].imshow(_rgb(s["image"].numpy()))
        truth = np.where(s["valid"][0].numpy(), s["target"][0].numpy(), np.nan)
        row[1].imshow(truth, vmin=0, vmax=1, cmap="Blues")
        row[2].imshow(p, vmin=0, vmax=1, cmap="Blues")
        for a, t in zip(row, ("image", "truth (masked: white)", "prediction")):
            a.set_title(t, fontsize=8)
            a.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path


def reliability_figure(calibration: dict, path: Path) -> Path:
    """Reliability diagram of a calibration result (`training.calibration.calibrate`): glacier
    frequency against mean probability per bin, before and after temperature scaling (ECE in the
    legend), over the pixel count per bin."""
    bins = calibration["bins"]
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated")
    edges = np.asarray(bins["before"]["edges"])
    for when, label, colour in (("before", "raw logits", "tab:red"),
                                ("after", f"T = {calibration['temperature']:.3g}", "tab:blue")):
        b = bins[when]
        conf = np.array([np.nan if v is None else v for v in b["confidence"]])
        freq = np.array([np.nan if v is None else v for v in b["frequency"]])
        ax.plot(conf, freq, "o-", ms=3, color=colour,
                label=f"{label} (ECE {calibration[f'ece_{when}']:.3f})")
        hist.stairs(b["count"], edges, color=colour)
    ax.set(xlim=(0, 1), ylim=(0, 1), ylabel="glacier fraction", aspect="equal",
           title=f"validation pixels: {calibration['n_pixels']:,}")
    ax.legend(fontsize=8, loc="upper left")
    hist.set(yscale="log", xlabel="predicted glacier probability", ylabel="pixels")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
