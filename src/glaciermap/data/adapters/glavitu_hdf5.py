"""Tile HDF5 files in the GlaViTU benchmark layout -> glaciermap cubes (one cube per tile).

Layout (docs/data-format.md, section 3.2): one HDF5 file per split, one group per tile; each
group holds channels-last feature arrays and a label. Both variants are read as they are:

* the published one, as the original GlaViTU code reads it: `optical`, `dem`, `co_pol_sar`,
  `cross_pol_sar`, `in_sar` (and `thermal`), a one-hot (H, W, 2) label (glacier = last
  channel), tiles zero-padded by `padding_height` / `padding_width` on every side (cropped
  here), a lon/lat box `xmin xmax ymin ymax` as georeferencing (reprojected here onto the local
  UTM zone), `region` / `subregion` attributes; files named e.g. `train_ps384_igarss23.hdf5`;
* this project's variant: `sar` (H, W, 2), `coherence`, an (H, W) label, `crs` + `transform`.

Channel names come from data.glavitu_channels; datasets it does not name (e.g. `thermal`) are
listed in one warning.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from rasterio import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.transform import from_bounds
from rasterio.warp import calculate_default_transform, reproject

from glaciermap.config import DataConfig, SensorsConfig
from glaciermap.data.adapters.common import (BandPlan, band_plan, decimal_year_of, dem_derived, finish_cube,
                                             metric_grid, safe_id, write_cube_folder)
from glaciermap.data.cubes import Cube
from glaciermap.data.ingest import utm_crs
from glaciermap.data.raw import Grid
from glaciermap.errors import InputDataError

FORMAT = "glavitu-hdf5"
LABELS = ("outlines", "groundtruth")
GEOREF = "georeferencing"
LABEL_NODATA = 255
SUFFIXES = (".h5", ".hdf5", ".he5")
SPLITS = {"train": "train", "val": "val", "validation": "val", "test": "test"}
LONLAT_BOX = ("xmin", "xmax", "ymin", "ymax")
PADDING = ("padding_height", "padding_width")
TILE_LABELS = ("region", "subregion")  # tile attributes kept as index columns
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


def split_name(stem: str) -> str:
    """The split a file holds, from its name: `train_ps384_igarss23` -> train, `val` -> val,
    `validation` -> val; a name with no such word is its own split."""
    words = [w.lower() for w in stem.replace("-", "_").replace(".", "_").split("_")]
    return next((SPLITS[w] for w in words if w in SPLITS), stem)


def offered_bands(channels: dict[str, list[str]]) -> list[str]:
    """Every band name the layout can offer: configured channel names plus hillshade (from the DEM)."""
    names = list(dict.fromkeys(b for bands in channels.values() for b in bands))
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
    """(glacier mask, label no-data mask) from `outlines` or `groundtruth`.

    (H, W) or (H, W, 1): 1 glacier, 0 not, 255 or NaN no data. (H, W, 2): one-hot as the
    published dataset has it, glacier = the last channel; a pixel with no channel set is no data.
    """
    name = next((n for n in LABELS if n in group), None)
    if name is None:
        raise InputDataError(f"{_where(tile)}no label dataset (one of {list(LABELS)}); it has {sorted(group)}",
                             path=path)
    shape = group[name].shape
    if len(shape) == 3 and shape[0] in (1, 2) and shape[2] not in (1, 2):
        raise InputDataError(f"{_where(tile)}{name!r} is channels-first {shape}; expected (H, W), (H, W, 1) "
                             f"or one-hot (H, W, 2)", path=path)
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 2))):
        raise InputDataError(f"{_where(tile)}{name!r} has shape {shape}; expected (H, W), (H, W, 1) or one-hot "
                             f"(H, W, 2)", path=path)
    lab = group[name][()].astype(np.float32)
    lab = lab.reshape((*shape[:2], 1)) if len(shape) == 2 else lab
    nodata = (~np.isfinite(lab) | (lab == LABEL_NODATA)).any(axis=-1)
    odd = np.unique(lab[~nodata[..., None] & (lab != 0) & (lab != 1)])
    if odd.size:
        raise InputDataError(f"{_where(tile)}{name!r} holds values {odd[:5].tolist()}; expected 0 / 1 "
                             f"({LABEL_NODATA} or NaN = no data)", path=path)
    if lab.shape[2] == 2:
        nodata |= lab.sum(axis=-1) == 0
    return lab[..., -1] == 1, nodata


def padding_window(group: h5py.Group, height: int, width: int, path: Path,
                   tile: str) -> tuple[slice, slice]:
    """Rows and columns of the tile without its zero padding (`padding_height` / `padding_width`
    on every side, as the original GlaViTU code crops it; `original_height` / `original_width`
    give the size when present); the whole tile when it has no padding attributes."""
    ph, pw = (int(group.attrs.get(k, 0)) for k in PADDING)
    oh = int(group.attrs.get("original_height", height - 2 * ph))
    ow = int(group.attrs.get("original_width", width - 2 * pw))
    if min(ph, pw) < 0 or oh <= 0 or ow <= 0 or ph + oh > height or pw + ow > width:
        raise InputDataError(f"{_where(tile)}padding {ph} x {pw} and original size {oh} x {ow} do not fit the "
                             f"{height} x {width} label", path=path)
    return slice(ph, ph + oh), slice(pw, pw + ow)


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


def lonlat_box(group: h5py.Group, path: Path, tile: str) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) in degrees from the `xmin xmax ymin ymax` attributes, or None."""
    present = [k for k in LONLAT_BOX if k in group.attrs]
    if not present:
        return None
    if len(present) < 4:
        raise InputDataError(f"{_where(tile)}lon/lat box incomplete: has {present}, needs {list(LONLAT_BOX)}",
                             path=path)
    x0, x1, y0, y1 = (float(group.attrs[k]) for k in LONLAT_BOX)
    if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
        raise InputDataError(f"{_where(tile)}lon/lat box xmin {x0}, xmax {x1}, ymin {y0}, ymax {y1} is not "
                             f"a box in degrees", path=path)
    return x0, y0, x1, y1


def to_utm(layers: dict[str, np.ndarray], glacier: np.ndarray, nodata: np.ndarray,
           box: tuple[float, float, float, float]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, Grid]:
    """Layers and label of a tile georeferenced by a lon/lat box, reprojected onto the UTM zone of
    the box's centre (square pixels, about as many as the tile has; bilinear for the bands,
    nearest for the label; pixels the tile does not cover are no data)."""
    h, w = glacier.shape
    src_crs = CRS.from_epsg(4326)
    src_transform = from_bounds(*box, w, h)
    dst_crs = utm_crs((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    transform, width, height = calculate_default_transform(src_crs, dst_crs, w, h, *box)

    def warp(a: np.ndarray, resampling: Resampling) -> np.ndarray:
        out = np.full((height, width), np.nan, np.float32)
        reproject(a.astype(np.float32), out, src_transform=src_transform, src_crs=src_crs, src_nodata=np.nan,
                  dst_transform=transform, dst_crs=dst_crs, dst_nodata=np.nan, resampling=resampling)
        return out

    label = warp(np.where(nodata, np.nan, glacier.astype(np.float32)), Resampling.nearest)
    warped = {b: warp(a, Resampling.bilinear) for b, a in layers.items()}
    return warped, label == 1, ~np.isfinite(label), Grid(dst_crs, transform, width, height)


@dataclass
class Tile:
    """What one tile gave: its cube (None when skipped), what it lacks and ignores."""

    cube: Cube | None
    lacking: list[str]  # datasets (first name of each band in data.glavitu_channels) the tile lacks
    needed: dict[str, set[str]]  # lacking dataset -> sensor sets that need it (non-empty: skipped)
    ignored: list[str]  # datasets of the tile data.glavitu_channels does not name
    labels: dict[str, str]  # `region` / `subregion` attributes
    normalised_dem: bool  # elevation within [0, 1]: min-max normalised, not metres


def _crop(grid: Grid, rows: slice, cols: slice) -> Grid:
    return Grid(grid.crs, grid.transform @ Affine.translation(cols.start, rows.start),
                cols.stop - cols.start, rows.stop - rows.start)


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def read_tile(group: h5py.Group, path: Path, channels: dict[str, list[str]], plan: BandPlan) -> Tile:
    """One tile as a cube: padding cropped, georeferenced by `crs` + `transform` or a lon/lat box
    (reprojected to UTM); the cube is None when a sensor set needs a dataset the tile lacks."""
    tile = group.name.strip("/")
    glacier, label_nodata = read_label(group, path, tile)
    full = glacier.shape
    rows, cols = padding_window(group, *full, path, tile)
    glacier, label_nodata = glacier[rows, cols], label_nodata[rows, cols]
    first_source = {}
    for d, bs in channels.items():
        for b in bs:
            first_source.setdefault(b, d)
    first_source.setdefault("hillshade", "dem")
    layers: dict[str, np.ndarray] = {}
    given_by: dict[str, str] = {}
    for d in (d for d in channels if d in group):
        arr = read_feature(group, d, len(channels[d]), path, tile)
        if arr.shape[1:] != full:
            raise InputDataError(f"{_where(tile)}{d!r} is {arr.shape[1]} x {arr.shape[2]} pixels but the label "
                                 f"is {full[0]} x {full[1]}", path=path)
        for b, band in zip(channels[d], arr[:, rows, cols]):
            if b in given_by:
                raise InputDataError(f"{_where(tile)}band {b!r} is given by both {given_by[b]!r} and {d!r}",
                                     path=path, hint="name it in only one dataset of data.glavitu_channels")
            layers[b], given_by[b] = band, d
    ignored = sorted(k for k in group if k not in channels and k not in LABELS and isinstance(group[k], h5py.Dataset))
    dem_band = channels.get("dem", [None])[0]
    normalised_dem = dem_band in layers and bool(np.nanmax(layers[dem_band]) <= 1.0)
    grid = tile_grid(group, *full, path, tile)
    grid = _crop(grid, rows, cols) if grid is not None else None
    box = lonlat_box(group, path, tile) if grid is None else None
    if box is not None:
        layers, glacier, label_nodata, grid = to_utm(layers, glacier, label_nodata, box)
    if dem_band in layers and grid is not None:
        layers.setdefault("hillshade", dem_derived(layers[dem_band], grid.res)["hillshade"])
    lacking = list(dict.fromkeys(first_source[b] for d in channels for b in channels[d] if b not in layers))
    needed: dict[str, set[str]] = {}
    for g, bs in plan.missing(layers).items():
        for b in bs:
            if not (b == "hillshade" and dem_band in layers):  # (no hillshade without a grid)
                needed.setdefault(first_source[b], set()).update(plan.needed_by[g])
    if grid is None:  # every cube is georeferenced
        lacking.append(GEOREF)
        needed[GEOREF] = {s for ss in plan.needed_by.values() for s in ss}
    labels = {k: _text(group.attrs[k]) for k in TILE_LABELS if k in group.attrs}
    if needed:
        return Tile(None, lacking, needed, ignored, labels, normalised_dem)
    bands = plan.bands(layers, path)
    optical = [b for b in bands if given_by.get(b) == "optical"]
    invalid = label_nodata.copy()
    if optical:
        invalid |= ~np.isfinite(np.stack([layers[b] for b in optical])).all(axis=0)
    gid = safe_id(f"{path.stem}-{tile}")
    year = decimal_year_of(group.attrs.get("year", group.attrs.get("date")))
    attrs = {"glacier_id": gid, "epoch": path.stem, "year": year, "inventory_year": year,
             "inventory_epoch": path.stem, "source": FORMAT, "source_file": path.name, "tile": tile, **labels}
    cube = finish_cube(np.stack([layers[b] for b in bands]), bands, glacier, glacier, invalid, grid, attrs)
    return Tile(cube, lacking, {}, ignored, labels, normalised_dem)


def ingest_glavitu_hdf5(src: str | Path, out_dir: str | Path, cfg: DataConfig, sensors: SensorsConfig,
                        sensor_sets: Sequence[str], *, progress: bool = True) -> pd.DataFrame:
    """Convert GlaViTU split files into a cube folder (one cube per tile); return the index.

    A tile lacking a feature that `sensor_sets` need is skipped with a warning, or is an error
    when data.glavitu_on_missing_feature is "error"; lacking an optional one leaves its bands out.
    Index extras: `split` (train / val / test, from the file name; `folds.method: published`
    uses it), `tile`, `missing_features`, and `region` / `subregion` where tiles have them.
    """
    files = split_files(src)
    plan = band_plan(sensors, sensor_sets)
    plan.check_offered(offered_bands(cfg.glavitu_channels), files[0], HINT)
    skipped: list[str] = []
    lacked: Counter[str] = Counter()
    ignored: Counter[str] = Counter()
    normalised: list[str] = []

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
                    t = read_tile(h5[tile], path, cfg.glavitu_channels, plan)
                    lacked.update(t.lacking)
                    ignored.update(t.ignored)
                    if t.normalised_dem:
                        normalised.append(f"{path.stem}/{tile}")
                    if t.cube is None:
                        sets = sorted(set().union(*t.needed.values()))
                        problem = f"tile {tile!r} lacks {sorted(t.needed)} needed by sensor set(s) {sets}"
                        if cfg.glavitu_on_missing_feature == "error":
                            raise InputDataError(problem, path=path,
                                                 hint="set data.glavitu_on_missing_feature: skip to leave such "
                                                      "tiles out")
                        warnings.warn(f"{path}: {problem}: tile skipped", stacklevel=2)
                        skipped.append(f"{path.stem}/{tile}")
                        continue
                    has_sar = "sar" in plan.groups and all(b in t.cube.bands for b in plan.groups["sar"])
                    yield t.cube, "inventory", {"has_sar": has_sar, "split": split_name(path.stem), "tile": tile,
                                                "missing_features": " ".join(t.lacking), **t.labels}

    index = write_cube_folder(out_dir, cubes(), progress=progress, source=Path(src))
    if lacked:
        warnings.warn(f"{src}: features missing from tiles: "
                      + ", ".join(f"{f} ({n} tile(s))" for f, n in sorted(lacked.items()))
                      + (f"; {len(skipped)} tile(s) skipped" if skipped else "")
                      + " (index.csv column missing_features lists them per tile)", stacklevel=2)
    if ignored:
        warnings.warn(f"{src}: dataset(s) not named in data.glavitu_channels ignored: "
                      + ", ".join(f"{d} ({n} tile(s))" for d, n in sorted(ignored.items()))
                      + " (name them there, and in a sensor group, to use them)", stacklevel=2)
    if normalised:
        warnings.warn(f"{src}: elevation lies within [0, 1] on {len(normalised)} tile(s) (e.g. {normalised[0]}): "
                      "it looks min-max normalised, so slope and hillshade derived from it are not in degrees "
                      "(docs/data-format.md, section 3.2)", stacklevel=2)
    return index


__all__ = ["FORMAT", "ingest_glavitu_hdf5", "read_tile", "split_files", "split_name", "offered_bands"]
