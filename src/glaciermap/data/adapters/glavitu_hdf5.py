"""Tile HDF5 files in the GlaViTU benchmark layout -> glaciermap cubes (one cube per tile).

Layout (docs/data-format.md, section 3.2): one HDF5 file per split, one group per tile; each
group holds channels-last feature arrays (`optical` (H, W, 6), `dem` (H, W, 2), optionally
`sar` (H, W, 2) and `coherence` (H, W, 1)), the label `outlines` (or `groundtruth`), and
georeferencing attributes `crs` and `transform`. Channel names come from data.glavitu_channels.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from rasterio import Affine

from glaciermap.config import DataConfig, SensorsConfig
from glaciermap.data.adapters.common import (BandPlan, band_plan, decimal_year_of, dem_derived, finish_cube,
                                             metric_grid, safe_id, write_cube_folder)
from glaciermap.data.cubes import Cube
from glaciermap.data.raw import Grid
from glaciermap.errors import InputDataError

FORMAT = "glavitu-hdf5"
LABELS = ("outlines", "groundtruth")
GEOREF = "georeferencing"
LABEL_NODATA = 255
SUFFIXES = (".h5", ".hdf5", ".he5")
HINT = "channel names come from data.glavitu_channels; see sensors.groups in params.yaml"


def split_files(src: str | Path) -> list[Path]:
    """The HDF5 files of the dataset: `src` itself, or every .h5 / .hdf5 file in the folder `src`."""
    src = Path(src)
    if src.is_file():
        return [src]
    files = sorted(f for f in src.iterdir() if f.suffix.lower() in SUFFIXES) if src.is_dir() else []
    if not files:
        raise InputDataError("no HDF5 file found" if src.is_dir() else "dataset not found", path=src,
                             hint="pass an HDF5 file or a folder of them (one per split)")
    return files


def offered_bands(channels: dict[str, list[str]]) -> list[str]:
    """Every band name the layout can offer: configured channel names plus hillshade (from the DEM)."""
    names = [b for bands in channels.values() for b in bands]
    if "dem" in channels and "hillshade" not in names:
        names.append("hillshade")
    return names


def _where(tile: str) -> str:
    return f"tile {tile!r}: "


def read_feature(group: h5py.Group, name: str, n: int, path: Path, tile: str) -> np.ndarray:
    """A channels-last (H, W, n) feature array as float32 (n, H, W); layout errors name the problem."""
    arr = group[name]
    if not isinstance(arr, h5py.Dataset):
        raise InputDataError(f"{_where(tile)}{name!r} is not a dataset", path=path)
    shape = arr.shape
    if len(shape) == 2 and n == 1:
        return arr[()].astype(np.float32)[None]
    if len(shape) == 3 and shape[2] == n:
        return np.moveaxis(arr[()].astype(np.float32), -1, 0)
    if len(shape) == 3 and shape[0] == n:
        raise InputDataError(f"{_where(tile)}{name!r} is channels-first {shape}; expected channels-last "
                             f"(H, W, {n})", path=path, hint="transpose it to (H, W, C)")
    raise InputDataError(f"{_where(tile)}{name!r} has shape {shape}; expected channels-last (H, W, {n})",
                         path=path, hint=f"data.glavitu_channels names {n} channel(s) for {name!r}")


def read_label(group: h5py.Group, path: Path, tile: str) -> tuple[np.ndarray, np.ndarray]:
    """(glacier mask, label no-data mask) from `outlines` or `groundtruth` ((H, W) or (H, W, 1))."""
    name = next((n for n in LABELS if n in group), None)
    if name is None:
        raise InputDataError(f"{_where(tile)}no label dataset (one of {list(LABELS)}); it has {sorted(group)}",
                             path=path)
    shape = group[name].shape
    if len(shape) == 3 and shape[0] == 1 and shape[2] != 1:
        raise InputDataError(f"{_where(tile)}{name!r} is channels-first {shape}; expected (H, W) or (H, W, 1)",
                             path=path)
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 1)):
        raise InputDataError(f"{_where(tile)}{name!r} has shape {shape}; expected (H, W) or (H, W, 1)", path=path)
    lab = group[name][()].reshape(shape[:2]).astype(np.float32)
    nodata = ~np.isfinite(lab) | (lab == LABEL_NODATA)
    odd = np.unique(lab[~nodata & (lab != 0) & (lab != 1)])
    if odd.size:
        raise InputDataError(f"{_where(tile)}{name!r} holds values {odd[:5].tolist()}; expected 0 / 1 "
                             f"({LABEL_NODATA} or NaN = no data)", path=path)
    return lab == 1, nodata


def tile_grid(group: h5py.Group, height: int, width: int, path: Path, tile: str) -> Grid | None:
    """The tile's Grid from its `crs` and `transform` attributes; None when it has neither."""
    crs, transform = group.attrs.get("crs"), group.attrs.get("transform")
    if crs is None and transform is None:
        return None
    if crs is None or transform is None:
        raise InputDataError(f"{_where(tile)}has {'transform' if crs is None else 'crs'} but no "
                             f"{'crs' if crs is None else 'transform'} attribute", path=path,
                             hint="georeferencing needs both `crs` (WKT or EPSG string) and `transform`")
    if isinstance(crs, bytes):
        crs = crs.decode()
    t = np.asarray(transform, dtype=np.float64).ravel()
    if t.size not in (6, 9):
        raise InputDataError(f"{_where(tile)}transform has {t.size} numbers; expected 6 (a, b, c, d, e, f)",
                             path=path)
    return metric_grid(str(crs), Affine(*t[:6]), width, height, path, _where(tile))


def read_tile(group: h5py.Group, path: Path, split: str, channels: dict[str, list[str]],
              plan: BandPlan) -> tuple[Cube | None, list[str], dict[str, set[str]]]:
    """(cube or None, features the tile lacks, {lacking feature: sensor sets that need it}).

    The cube is None when a sensor set needs a feature the tile lacks.
    """
    tile = group.name.strip("/")
    glacier, label_nodata = read_label(group, path, tile)
    h, w = glacier.shape
    present = [d for d in channels if d in group]
    lacking = [d for d in channels if d not in group]
    layers: dict[str, np.ndarray] = {}
    for d in present:
        arr = read_feature(group, d, len(channels[d]), path, tile)
        if arr.shape[1:] != (h, w):
            raise InputDataError(f"{_where(tile)}{d!r} is {arr.shape[1]} x {arr.shape[2]} pixels but the label "
                                 f"is {h} x {w}", path=path)
        layers.update(zip(channels[d], arr))
    grid = tile_grid(group, h, w, path, tile)
    if grid is None:
        lacking.append(GEOREF)
    if "dem" in present and grid is not None:
        layers.setdefault("hillshade", dem_derived(layers[channels["dem"][0]], grid.res)["hillshade"])
    source_of = {b: d for d, bs in channels.items() for b in bs} | {"hillshade": "dem"}
    needed: dict[str, set[str]] = {}
    for g, bs in plan.missing(layers).items():
        for b in bs:
            if not (b == "hillshade" and "dem" in present):  # (no hillshade without a grid)
                needed.setdefault(source_of[b], set()).update(plan.needed_by[g])
    if grid is None:  # every cube is georeferenced
        needed[GEOREF] = {s for ss in plan.needed_by.values() for s in ss}
    if needed:
        return None, lacking, needed
    bands = plan.bands(layers, path)
    optical = [b for b in bands if source_of.get(b) == "optical"]
    invalid = label_nodata.copy()
    if optical:
        invalid |= ~np.isfinite(np.stack([layers[b] for b in optical])).all(axis=0)
    gid = safe_id(f"{split}-{tile}")
    year = decimal_year_of(group.attrs.get("year", group.attrs.get("date")))
    attrs = {"glacier_id": gid, "epoch": split, "year": year, "inventory_year": year, "inventory_epoch": split,
             "source": FORMAT, "source_file": path.name, "tile": tile}
    cube = finish_cube(np.stack([layers[b] for b in bands]), bands, glacier, glacier, invalid, grid, attrs)
    return cube, lacking, {}


def ingest_glavitu_hdf5(src: str | Path, out_dir: str | Path, cfg: DataConfig, sensors: SensorsConfig,
                        sensor_sets: Sequence[str], *, progress: bool = True) -> pd.DataFrame:
    """Convert GlaViTU-style split files into a cube folder (one cube per tile); return the index.

    A tile lacking a feature that `sensor_sets` need is skipped with a warning, or is an error
    when data.glavitu_on_missing_feature is "error"; lacking an optional one leaves its bands out.
    """
    files = split_files(src)
    plan = band_plan(sensors, sensor_sets)
    plan.check_offered(offered_bands(cfg.glavitu_channels), files[0], HINT)
    skipped: list[str] = []
    lacked: Counter[str] = Counter()

    def cubes() -> Iterator[tuple[Cube, str, dict]]:
        for path in files:
            try:
                h5 = h5py.File(path, "r")
            except OSError as err:
                raise InputDataError(f"cannot read HDF5: {err}", path=path) from None
            with h5:
                tiles = [k for k in sorted(h5) if isinstance(h5[k], h5py.Group)]
                if not tiles:
                    raise InputDataError("no tile groups in the file", path=path,
                                         hint="expected one group per tile (docs/data-format.md, section 3.2)")
                for tile in tiles:
                    cube, lacking, needed = read_tile(h5[tile], path, path.stem, cfg.glavitu_channels, plan)
                    lacked.update(lacking)
                    if cube is None:
                        sets = sorted(set().union(*needed.values()))
                        problem = f"tile {tile!r} lacks {sorted(needed)} needed by sensor set(s) {sets}"
                        if cfg.glavitu_on_missing_feature == "error":
                            raise InputDataError(problem, path=path,
                                                 hint="set data.glavitu_on_missing_feature: skip to leave such "
                                                      "tiles out")
                        warnings.warn(f"{path}: {problem}: tile skipped", stacklevel=2)
                        skipped.append(f"{path.stem}/{tile}")
                        continue
                    has_sar = "sar" in plan.groups and all(b in cube.bands for b in plan.groups["sar"])
                    yield cube, "inventory", {"has_sar": has_sar, "split": path.stem, "tile": tile,
                                              "missing_features": " ".join(lacking)}

    index = write_cube_folder(out_dir, cubes(), progress=progress, source=Path(src))
    if lacked:
        warnings.warn(f"{src}: features missing from tiles: "
                      + ", ".join(f"{f} ({n} tile(s))" for f, n in sorted(lacked.items()))
                      + (f"; {len(skipped)} tile(s) skipped" if skipped else "")
                      + " (index.csv column missing_features lists them per tile)", stacklevel=2)
    return index


__all__ = ["FORMAT", "ingest_glavitu_hdf5", "read_tile", "split_files", "offered_bands"]
