"""The training run's figure: predictions vs truth on a few validation patches (logged to MLflow)."""

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
