"""Shared fixtures of the data-layer tests: one tiny simulated region, its cubes and its folds.

Everything is session-scoped and built once (about 3 s): a 4 x 3 km region with a handful of
glaciers (some below 0.1 km2), ingested with a small buffer so the cubes stay small. Tests that
change input files work on a copy (`raw_copy`), never on the shared region.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from glaciermap.config import DataConfig, FoldsConfig, SensorsConfig
from glaciermap.data.cubes import read_index
from glaciermap.data.folds import make_folds
from glaciermap.data.ingest import ingest_region
from glaciermap.data.simulate import SimulateConfig, simulate_region

#: The tiny region: 8 glaciers from 0.01 to 1.9 km2, clouds on part of them, SAR on every epoch.
SIM = SimulateConfig(seed=5, width_km=4.0, height_km=3.0, n_glaciers=10)
#: Small buffer: cubes of ~80-300 px instead of ~330-550 px with the default 1280 m.
DATA = DataConfig(resolution_m=10.0, buffer_m=320.0)
#: min_train_area_km2 = 0.1 leaves the smallest glaciers out of training.
FOLDS = FoldsConfig(k=3, min_train_area_km2=0.1, val_fraction=0.2)


@pytest.fixture(scope="session")
def raw_region(tmp_path_factory) -> Path:
    """The raw simulated region (read-only for tests: use `raw_copy` to modify files)."""
    return simulate_region(SIM, tmp_path_factory.mktemp("region") / "raw", progress=False)


@pytest.fixture(scope="session")
def cubes_dir(raw_region, tmp_path_factory) -> Path:
    """Cubes of `raw_region` (all default sensor groups)."""
    out = tmp_path_factory.mktemp("products") / "cubes"
    ingest_region(raw_region, out, DATA, SensorsConfig(), progress=False)
    return out


@pytest.fixture(scope="session")
def cube_index(cubes_dir):
    """index.csv of `cubes_dir`, as the pipeline reads it."""
    return read_index(cubes_dir)


@pytest.fixture(scope="session")
def folds(cube_index, cubes_dir):
    """Folds of the tiny region (k = 3)."""
    return make_folds(cube_index, cubes_dir, FOLDS, progress=False)


def load_benchmark(script: str, name: str):
    """A script of benchmarks/ as a module, registered under `name` (dataclasses look their module
    up in sys.modules while the class is built)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "benchmarks" / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def without_truth(*patterns: str):
    """A `shutil.copytree` ignore: truth/ except the surface classes (region.yaml names them as the
    debris source, which ingest reads into mask_debris), plus `patterns` anywhere."""
    extra = shutil.ignore_patterns(*patterns)

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = set(extra(folder, names))
        if Path(folder).name == "truth":
            skip |= {n for n in names if not n.startswith("surface_")}
        return skip

    return ignore


@pytest.fixture
def raw_copy(raw_region, tmp_path) -> Path:
    """A private, writable copy of the raw region (truth/ reduced to what ingest reads: the surface
    classes that region.yaml names as the debris source)."""
    dst = tmp_path / "raw"
    shutil.copytree(raw_region, dst, ignore=without_truth())
    return dst


@pytest.fixture(autouse=True)
def _no_inherited_tracking_uri():
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: no test may inherit another's (a user's
    own setting would win over the test's params, and runs would land in another test's database)."""
    keys = ("MLFLOW_TRACKING_URI", "GLACIERMAP_TRACKING_URI_FROM_PARAMS",  # and what the CLI sets for MLflow:
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    for k in keys:
        os.environ.pop(k, None)
    yield
    for k in keys:
        os.environ.pop(k, None)


def _tracking_store_entries() -> set[str]:
    """The project's own MLflow store (mlruns/<experiment>/<run or models>/ and mlflow.db's mtime)."""
    root = Path(__file__).resolve().parents[1]
    entries = {str(p.relative_to(root)) for p in (root / "mlruns").glob("*/*")}
    db = root / "mlflow.db"
    return entries | ({f"mlflow.db@{db.stat().st_mtime_ns}"} if db.exists() else set())


@pytest.fixture(scope="session", autouse=True)
def _user_tracking_store_untouched():
    """No test may write into the user's tracking store (the project's mlruns/ and mlflow.db): each
    test's runs and models belong in its own temporary folder (issue #17: one test used to leave
    ~55 MB of orphan artifacts in mlruns/ per run)."""
    before = _tracking_store_entries()
    yield
    added = sorted(_tracking_store_entries() - before)
    assert not added, f"tests wrote into the project's MLflow store: {added[:5]}"
