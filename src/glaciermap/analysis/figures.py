"""Figures people would rather look at than read (PNG, logged to MLflow)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from glaciermap.io import atomic_path  # noqa: E402


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
