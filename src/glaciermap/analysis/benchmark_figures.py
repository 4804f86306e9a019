"""Benchmark figure: each method's held-out map against the inventory outlines, over the image."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from glaciermap.io import atomic_path  # noqa: E402

COLOURS = {"hit": (0.0, 0.85, 1.0), "false alarm": (1.0, 0.15, 0.1), "missed": (1.0, 0.85, 0.0)}


def _stretch(rgb: np.ndarray) -> np.ndarray:
    finite = np.isfinite(rgb).all(-1)
    lo, hi = np.percentile(rgb[finite], [1, 99]) if finite.any() else (0.0, 1.0)
    return np.clip((np.nan_to_num(rgb) - lo) / max(hi - lo, 1e-6), 0, 1)


def benchmark_figure(rgb: np.ndarray, labels: np.ndarray, probs: dict[str, np.ndarray], titles: dict[str, str],
                     path: Path, *, threshold: float = 0.5) -> Path:
    """One panel with the image and the inventory outlines, then one per method.

    rgb: (H, W, 3) any scale; labels: (H, W) > 0 inside an outline; probs: NaN where not evaluated.
    Method panels colour hits, false alarms and missed glacier on the held-out pixels; the rest
    of the image is dimmed. The panels are cropped to the image's extent.
    """
    rows_, cols_ = np.nonzero(np.isfinite(rgb).all(-1))
    if rows_.size:
        crop = (slice(rows_.min(), rows_.max() + 1), slice(cols_.min(), cols_.max() + 1))
        rgb, labels, probs = rgb[crop], labels[crop], {k: v[crop] for k, v in probs.items()}
    base = _stretch(rgb)
    n = 1 + len(probs)
    cols = 2 if n > 2 else n
    rows = int(np.ceil(n / cols))
    h, w = labels.shape
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 6.0 * rows * h / w + 0.4), squeeze=False)
    axes = axes.ravel()
    axes[0].imshow(base)
    axes[0].contour(labels > 0, levels=[0.5], colors="white", linewidths=0.6)
    axes[0].set_title("image and inventory outlines (white)", fontsize=10)
    for ax, (name, prob) in zip(axes[1:], probs.items()):
        seen = np.isfinite(prob)
        pred, truth = np.nan_to_num(prob) >= threshold, labels > 0
        img = base * np.where(seen, 0.75, 0.35)[..., None]
        for key, m in (("hit", pred & truth), ("false alarm", pred & ~truth), ("missed", ~pred & truth)):
            img[m & seen] = 0.45 * img[m & seen] + 0.55 * np.array(COLOURS[key])
        ax.imshow(img)
        ax.contour(truth, levels=[0.5], colors="white", linewidths=0.4)
        ax.set_title(titles.get(name, name), fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[n:]:
        ax.axis("off")
    fig.legend(handles=[Patch(color=c, label=k) for k, c in COLOURS.items()], loc="lower center", ncol=3,
               fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


__all__ = ["benchmark_figure"]
