"""benchmarks/demo_stages.py: per-stage wall time from the outputs' timestamps."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import load_benchmark


@pytest.fixture(scope="module")
def demo_stages():
    return load_benchmark("demo_stages.py", "demo_stages")


def _touch(root: Path, rel: str, t: float) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    os.utime(path, (t, t))


def test_stages_timed_in_the_order_they_finished(demo_stages, tmp_path):
    """DVC ran register (end 1150) before evaluate (end 1200): neither gets a negative time."""
    start = 1000.0
    _touch(tmp_path, "data/region.yaml", 900)  # simulated before the demo: reused
    _touch(tmp_path, "products/cubes/index.csv", 1020)
    _touch(tmp_path, "metrics/train/a_fold0_seed0.json", 1080)
    _touch(tmp_path, "metrics/train/a_fold1_seed0.json", 1100)
    _touch(tmp_path, "products/registry.json", 1150)
    _touch(tmp_path, "metrics/evaluate/a.json", 1200)
    _touch(tmp_path, "products/predictions/areas.csv", 1230)
    _touch(tmp_path, "metrics/area_change.json", 1240)
    rows = {r["stage"]: r for r in demo_stages.stage_times(tmp_path, start)}
    assert list(rows) == ["simulate", "ingest", "train", "evaluate", "register", "infer", "area_change"]
    assert rows["simulate"]["reused"] and rows["simulate"]["seconds"] is None
    assert {k: r["seconds"] for k, r in rows.items() if k != "simulate"} == {
        "ingest": 20.0, "train": 80.0, "register": 50.0, "evaluate": 50.0, "infer": 30.0, "area_change": 10.0}
    assert rows["train"]["outputs"] == 2
