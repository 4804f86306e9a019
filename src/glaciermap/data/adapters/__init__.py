"""Ingest adapters: published datasets -> glaciermap per-glacier cubes (docs/data-format.md, section 3).

Each adapter writes the same cube folder as `glaciermap ingest` does for a raw region
(`<epoch>/<glacier_id>.nc` plus index.csv), so folds, training and inference run on it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from glaciermap.config import DataConfig, SensorsConfig
from glaciermap.data.adapters.dandb_netcdf import ingest_dandb_netcdf
from glaciermap.data.adapters.glavitu_hdf5 import ingest_glavitu_hdf5
from glaciermap.errors import ConfigError

Adapter = Callable[..., pd.DataFrame]

#: Adapter of each `glaciermap ingest --format` value (besides `region`, the raw region format).
ADAPTERS: dict[str, Adapter] = {
    "dandb-netcdf": ingest_dandb_netcdf,
    "glavitu-hdf5": ingest_glavitu_hdf5,
}


def ingest_dataset(fmt: str, src: str | Path, out_dir: str | Path, cfg: DataConfig, sensors: SensorsConfig,
                   sensor_sets: Sequence[str], *, progress: bool = True) -> pd.DataFrame:
    """Convert the dataset at `src` (layout `fmt`) into cubes serving `sensor_sets`; return the index."""
    if fmt not in ADAPTERS:
        raise ConfigError(f"unknown dataset format {fmt!r}", hint=f"formats: {sorted(ADAPTERS)}")
    return ADAPTERS[fmt](src, out_dir, cfg, sensors, sensor_sets, progress=progress)


__all__ = ["ADAPTERS", "ingest_dataset", "ingest_dandb_netcdf", "ingest_glavitu_hdf5"]
