"""Which terrain a simulated region's maps get wrong: errors per true surface class.

For every mapped cube of finished validity work folders (benchmarks/validity.py --work), the
predicted glacier mask (probability >= 0.5 on valid pixels) is compared with the simulator's surface
classes of that epoch (truth/surface_<epoch>.tif):

- off the ice (outside every inventory outline): pixels mapped as glacier, per class (forest,
  rock, forefield, ...), and the class's valid pixels, per fold of the inventory epoch;
- inside the cube's own outline, per role (inventory / recent): validity.py's `pixel_budget`
  (true, predicted, missed and false glacier, missed debris, false forefield), the pixels that move
  an area change.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validity import BUDGET_KEYS, pixel_budget, surface_on_grid  # noqa: E402 (puts src/ on the path)

from glaciermap.data.cubes import read_cube, read_index  # noqa: E402
from glaciermap.data.simulate.surface import CLASS_NAMES  # noqa: E402
from glaciermap.io import write_json  # noqa: E402


def off_ice_errors(pred: np.ndarray, cls: np.ndarray, mask_all: np.ndarray, valid: np.ndarray) -> dict[str, list[int]]:
    """{class name: [pixels mapped as glacier, valid pixels]} over the valid pixels off every outline."""
    off = (mask_all == 0) & valid
    return {name: [int((off & (cls == k) & pred).sum()), int((off & (cls == k)).sum())]
            for k, name in CLASS_NAMES.items() if (off & (cls == k)).any()}


def work_errors(work: Path) -> dict:
    """Both tables for one finished work folder."""
    folds = {g: f["index"] for f in json.loads((work / "products" / "folds.json").read_text())["folds"]
             for g in f["test"]}
    index = read_index(work / "products" / "cubes")
    off: dict[str, dict[str, list[int]]] = {}
    inside = {role: dict.fromkeys(BUDGET_KEYS, 0) for role in ("inventory", "recent")}
    for r in index[index.glacier_id.isin(folds)].itertuples():
        cube = read_cube(work / "products" / "cubes" / r.path)
        with rasterio.open(work / "products" / "predictions" / r.epoch / f"{r.glacier_id}.tif") as src:
            prob = src.read(1)
        cls = surface_on_grid(work / "data" / "truth" / f"surface_{r.epoch}.tif", cube.grid)
        valid = cube.mask_invalid == 0
        if r.role == "inventory":
            fold = off.setdefault(f"fold{folds[r.glacier_id]}", {})
            for name, (n_false, n) in off_ice_errors(prob >= 0.5, cls, cube.mask_all, valid).items():
                fold[name] = [a + b for a, b in zip(fold.get(name, [0, 0]), (n_false, n))]
        for key, n in pixel_budget(cls, prob, (cube.mask_glacier == 1) & valid).items():
            inside[r.role][key] += n
    return {"off_ice_mapped_as_glacier_px": off, "inside_outline_px": inside}


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
