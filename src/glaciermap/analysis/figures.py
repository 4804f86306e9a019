"""Figures people would rather look at than read (PNG, logged to MLflow)."""

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
    x = torch.stack([s["image"] for s in samples])
    prob = torch.sigmoid(model(x, torch.stack([s["location"] for s in samples]),
                               torch.stack([s["group_present"] for s in samples])))[:, 0].numpy()
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


def glacier_maps_figure(cubes_dir: Path, predictions_dir: Path, index, glacier_ids: list[str], path: Path) -> Path:
    """For a few glaciers: the recent image, the inventory outline and both years' predictions."""
    import rasterio

    from glaciermap.data.cubes import read_cube

    fig, axes = plt.subplots(1, len(glacier_ids), figsize=(4 * len(glacier_ids), 4.2), squeeze=False)
    for ax, gid in zip(axes[0], glacier_ids):
        rows = index[index.glacier_id == gid].sort_values("year")
        cube = read_cube(cubes_dir / rows.path.iloc[-1])
        rgb = np.moveaxis(cube.select(["B4", "B3", "B2"]), 0, -1)
        ax.imshow(np.clip(np.nan_to_num(rgb) / 0.6, 0, 1))
        ax.contour(cube.mask_glacier, levels=[0.5], colors="white", linewidths=1.2)
        for (_, r), colour in zip(rows.iterrows(), ("deepskyblue", "orangered")):
            with rasterio.open(predictions_dir / r.epoch / f"{gid}.tif") as src:
                prob = src.read(1)
            ax.contour(prob, levels=[0.5], colors=colour, linewidths=1.0)
            ax.plot([], [], color=colour, label=f"predicted {r.epoch}")
        ax.plot([], [], color="white", label="inventory outline")
        ax.set_title(gid, fontsize=9)
        ax.axis("off")
    axes[0][0].legend(loc="lower left", fontsize=7, facecolor="grey")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
