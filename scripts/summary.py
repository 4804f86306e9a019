"""The demo's last word: test IoU per fold, the regional rate against the truth, where to look next.

Reads metrics/evaluate/*.json and metrics/area_change.json (what `dvc repro` wrote); prints a
dozen lines instead of `dvc metrics show`'s full table. Run from the project root.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def summary(root: Path) -> str:
    """The summary text of the metrics under `root`."""
    lines = []
    for path in sorted((root / "metrics/evaluate").glob("*.json")):
        ev = json.loads(path.read_text())
        folds = "  ".join(f"{name} {r['iou']:.3f}" for name, r in sorted(ev["folds"].items()))
        lines.append(f"test IoU {ev['model']}/{ev['sensor_set']}: {folds}  (mean {ev['mean']['iou_mean']:.3f})")
    area = root / "metrics/area_change.json"
    if area.exists():
        s = json.loads(area.read_text())
        rate = "n/a" if s["rate_pct_per_yr"] is None else f"{s['rate_pct_per_yr']:+.2f} %/yr"
        line = f"regional area change: {rate} from {s['n_kept']} of {s['n_total']} glaciers"
        if "truth" in s:
            t = s["truth"]
            line += (f"; truth {t['true_regional_rate_pct_per_yr']:+.2f} %/yr "
                     f"(error {t['regional_rate_error_pct_per_yr']:+.2f})")
        lines.append(line)
    lines += ["figures: products/area_change/*.png, per-glacier table products/area_change/area_change.csv",
              "runs: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db  (http://127.0.0.1:5000)",
              "every metric: dvc metrics show"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")))
