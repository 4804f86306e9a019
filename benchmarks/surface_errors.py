"""Which terrain a simulated region's maps get wrong: errors per true surface class.

For every mapped cube of finished validity work folders (benchmarks/validity.py --work), the
predicted glacier mask (probability >= 0.5 on valid pixels) is compared with the simulator's surface
classes of that epoch (truth/surface_<epoch>.tif):

- off the ice (outside every inventory outline): pixels mapped as glacier, per class (forest,
  rock, forefield, ...), and the class's valid pixels, per fold of the inventory epoch;
- inside the cube's own outline, per role (inventory / recent): validity.py's `pixel_budget`
  (true, predicted, missed and false glacier, missed debris, false forefield), the pixels that move
  an area change;
- the halo at the ice edge (`edge_halo`): in the inventory year, the ice mapped within 3 pixels
  outside the own outline (off every outline) per pixel of outline edge; in the recent year, the
  false ice inside the own outline per pixel of the mapped ice's edge inside it. The young forefield
  (forefield inside the own outline in the recent year), kept as ice or not: its pixels, their median
  distance to the true ice and mean InSAR coherence; and the forefield off every outline mapped as
  ice in the recent year;
- the training labels against the truth of the image's date (`label_dates`, inventory cubes): a
  cube's image and own outline share a date, but its neighbours' outlines (the rest of the target
  `mask_all`) may be of another inventory year. Neighbour-labelled pixels that are not ice at the
  image's date (and of them forefield: ice lost since an earlier outline), and ice no outline labels.

    .venv/bin/python benchmarks/surface_errors.py /tmp/gm-val/demo /tmp/gm-ctx/demo --out x.json

Simulated regions only (they carry the truth); one JSON with a block per work folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validity import BUDGET_KEYS, pixel_budget, surface_on_grid  # noqa: E402 (puts src/ on the path)

from glaciermap.data.cubes import read_cube, read_index  # noqa: E402
from glaciermap.data.simulate.surface import CLASS_NAMES, FOREFIELD, GLACIER_CLASSES  # noqa: E402
from glaciermap.io import write_json  # noqa: E402


def off_ice_errors(pred: np.ndarray, cls: np.ndarray, mask_all: np.ndarray, valid: np.ndarray) -> dict[str, list[int]]:
    """{class name: [pixels mapped as glacier, valid pixels]} over the valid pixels off every outline."""
    off = (mask_all == 0) & valid
    return {name: [int((off & (cls == k) & pred).sum()), int((off & (cls == k)).sum())]
            for k, name in CLASS_NAMES.items() if (off & (cls == k)).any()}


#: the ring outside the outline (pixels) whose mapped ice counts as the inventory year's halo
HALO_RING_PX = 3


def edge_halo(role: str, pred: np.ndarray, cls: np.ndarray, own: np.ndarray, mask_all: np.ndarray,
              valid: np.ndarray) -> dict[str, int]:
    """Pixel counts for `edge_halo_widths`: inventory {halo, edge}: ice mapped within HALO_RING_PX
    outside the own outline and off every outline, and the outline's outer edge there; recent {halo,
    edge}: false ice inside the own outline, and the pixels beside the mapped ice inside it."""
    if role == "inventory":
        ground = ~mask_all.astype(bool) & valid
        ring = ndimage.binary_dilation(own, iterations=HALO_RING_PX) & ground
        return {"halo": int((pred & ring).sum()), "edge": int((ndimage.binary_dilation(own) & ground).sum())}
    mapped = pred & own & valid
    edge = ndimage.binary_dilation(mapped) & ~mapped & own & valid
    return {"halo": int((mapped & ~np.isin(cls, GLACIER_CLASSES)).sum()), "edge": int(edge.sum())}


def young_forefield(pred: np.ndarray, cls: np.ndarray, own: np.ndarray, valid: np.ndarray,
                    coherence: np.ndarray | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{kept_as_ice, mapped_off}: (distance to the true ice in pixels, coherence) of each recent-year
    forefield pixel inside the own outline."""
    ff = (cls == FOREFIELD) & own & valid
    dist = ndimage.distance_transform_edt(~np.isin(cls, GLACIER_CLASSES))
    coh = coherence if coherence is not None else np.full(cls.shape, np.nan, np.float32)
    return {k: (dist[m], coh[m]) for k, m in (("kept_as_ice", ff & pred), ("mapped_off", ff & ~pred))}


def label_dates(cls: np.ndarray, own: np.ndarray, mask_all: np.ndarray, valid: np.ndarray) -> dict[str, int]:
    """Training labels of one inventory cube against the surface of its image's date."""
    ice, neighbours = np.isin(cls, GLACIER_CLASSES), (mask_all == 1) & ~own & valid
    return {"neighbour_label_px": int(neighbours.sum()), "neighbour_label_not_ice_px": int((neighbours & ~ice).sum()),
            "neighbour_label_forefield_px": int((neighbours & (cls == FOREFIELD)).sum()),
            "own_label_not_ice_px": int((own & valid & ~ice).sum()),
            "ice_off_every_label_px": int(((mask_all == 0) & valid & ice).sum())}


def _summary(parts: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    dist = np.concatenate([d for d, _ in parts]) if parts else np.array([])
    coh = np.concatenate([c for _, c in parts]) if parts else np.array([])
    return {"px": int(len(dist)), "median_dist_to_ice_px": float(np.median(dist)) if len(dist) else None,
            "mean_coherence": float(np.nanmean(coh)) if np.isfinite(coh).any() else None}


def work_errors(work: Path) -> dict:
    """Both tables for one finished work folder."""
    folds = {g: f["index"] for f in json.loads((work / "products" / "folds.json").read_text())["folds"]
             for g in f["test"]}
    index = read_index(work / "products" / "cubes")
    off: dict[str, dict[str, list[int]]] = {}
    inside = {role: dict.fromkeys(BUDGET_KEYS, 0) for role in ("inventory", "recent")}
    halo = {role: {"halo": 0, "edge": 0} for role in ("inventory", "recent")}
    young: dict[str, list] = {"kept_as_ice": [], "mapped_off": []}
    lia_as_ice = 0
    labels: dict[str, int] = {}
    for r in index[index.glacier_id.isin(folds)].itertuples():
        cube = read_cube(work / "products" / "cubes" / r.path)
        with rasterio.open(work / "products" / "predictions" / r.epoch / f"{r.glacier_id}.tif") as src:
            prob = src.read(1)
        cls = surface_on_grid(work / "data" / "truth" / f"surface_{r.epoch}.tif", cube.grid)
        valid, own, pred = cube.mask_invalid == 0, cube.mask_glacier == 1, prob >= 0.5
        for key, n in edge_halo(r.role, pred, cls, own, cube.mask_all, valid).items():
            halo[r.role][key] += n
        if r.role == "recent":
            coherence = cube.select(["coh"])[0] if "coh" in cube.bands else None
            for key, part in young_forefield(pred, cls, own, valid, coherence).items():
                young[key].append(part)
            lia_as_ice += int((pred & (cls == FOREFIELD) & (cube.mask_all == 0) & valid).sum())
        if r.role == "inventory":
            for key, n in label_dates(cls, own, cube.mask_all, valid).items():
                labels[key] = labels.get(key, 0) + n
            fold = off.setdefault(f"fold{folds[r.glacier_id]}", {})
            for name, (n_false, n) in off_ice_errors(pred, cls, cube.mask_all, valid).items():
                fold[name] = [a + b for a, b in zip(fold.get(name, [0, 0]), (n_false, n))]
        for key, n in pixel_budget(cls, prob, own & valid).items():
            inside[r.role][key] += n
    widths = {role: h["halo"] / h["edge"] if h["edge"] else None for role, h in halo.items()}
    return {"off_ice_mapped_as_glacier_px": off, "inside_outline_px": inside,
            "edge_halo": {"inventory_px_per_outline_edge_px": widths["inventory"],
                          "recent_false_px_per_ice_edge_px": widths["recent"], "counts": halo,
                          "young_forefield": {k: _summary(v) for k, v in young.items()},
                          "recent_forefield_off_outlines_mapped_as_ice_px": lia_as_ice},
            "label_dates": labels}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("work", type=Path, nargs="+", help="finished region work folders (validity --work <dir>/<region>)")
    ap.add_argument("--out", type=Path, required=True, help="JSON to write")
    args = ap.parse_args(argv)
    for w in args.work:
        if not (w / "products" / "predictions").is_dir() or not (w / "data" / "truth").is_dir():
            print(f"error: {w}: not a finished simulated-region work folder (run benchmarks/validity.py)", file=sys.stderr)
            return 2
    write_json(args.out, {"benchmark": "surface_errors", "method": __doc__.split("\n\n")[1],
                          "runs": {str(w): work_errors(w) for w in args.work}})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
