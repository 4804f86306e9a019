"""Sentinel-1 products of ASF HyP3: radiometrically terrain-corrected backscatter (RTC) and
InSAR coherence, matched to the optical acquisitions by date and written as `sar.tif`.

RTC files are named `S1A_IW_20230825T053212_DVP_RTC30_G_gpuned_1A2B_VV.tif` (and `_VH.tif`): in
the `gpuned` field the 2nd letter is the scale, p = power, a = amplitude, d = decibels. Backscatter
is resampled (bilinear) in the file's own scale, then converted to dB:

    power:      dB = 10 * log10(gamma0)
    amplitude:  dB = 20 * log10(amplitude)          (power = amplitude ** 2)

values <= 0 and the file's nodata are NaN. InSAR coherence (`S1AA_20230813T053212_20230825T053212_
VVP012_INT80_G_ueF_1A2B_corr.tif`, 0..1) is resampled bilinearly and clipped to 0..1; a pair's date
is the middle of its two acquisitions. An optical acquisition gets the RTC and the coherence pair
nearest its date within +- `sar_window_days`.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.enums import Resampling
from shapely.geometry import box

from glaciermap.data.grid import Grid
from glaciermap.errors import InputDataError

from .rasters import footprint, open_input, open_output, read_window, row_windows, warped

SAR_BANDS = ["VV", "VH", "coh"]
RTC_NAME = re.compile(r"^S1[A-D]_(?:IW|EW|SM)_(\d{8})T\d{6}_[DS][VH][PRO]_RTC\d+_\w_[gs]([pad])\w{4}_"
                      r"[0-9A-Fa-f]{4}_(VV|VH)\.tif$")
COH_NAME = re.compile(r"^S1[A-D]{1,2}_(\d{8})T\d{6}_(\d{8})T\d{6}_.*_corr\.tif$")


@dataclass(frozen=True)
class Rtc:
    """One RTC acquisition: its VV and/or VH file and their scale (p, a or d)."""

    date: dt.date
    files: dict[str, Path]  # "VV" / "VH" -> file
    scale: str


@dataclass(frozen=True)
class Coherence:
    """One InSAR coherence file; `date` is the middle of the pair."""

    date: dt.date
    path: Path


def _day(text: str) -> dt.date:
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))


def find_s1(paths: list[Path]) -> tuple[list[Rtc], list[Coherence]]:
    """Sort files (or every matching file in folders) into RTC acquisitions and coherence pairs.

    In a folder, files not named like HyP3 RTC VV/VH or coherence are skipped (HyP3 zips also hold
    DEM, area and layover maps); a file given by name must be one of those.
    """
    rtc: dict[str, dict] = {}
    coh: list[Coherence] = []
    for given in paths:
        given = Path(given)
        if not given.exists():
            raise InputDataError("Sentinel-1 file or folder not found", path=given)
        files = sorted(given.rglob("*.tif")) if given.is_dir() else [given]
        for f in files:
            m, c = RTC_NAME.match(f.name), COH_NAME.match(f.name)
            if m:
                key = f.name[: -len("_VV.tif")]
                entry = rtc.setdefault(key, {"date": _day(m.group(1)), "scale": m.group(2), "files": {}})
                entry["files"][m.group(3)] = f
            elif c:
                d0, d1 = _day(c.group(1)), _day(c.group(2))
                coh.append(Coherence(d0 + (d1 - d0) / 2, f))
            elif not given.is_dir():
                raise InputDataError("not a HyP3 RTC (..._RTC30_G_gpuned_XXXX_VV.tif / _VH.tif) or InSAR "
                                     "coherence (..._corr.tif) file name", path=f,
                                     hint="keep the names HyP3 gives its files")
    return [Rtc(e["date"], e["files"], e["scale"]) for e in rtc.values()], coh


def check_s1(rtc: list[Rtc], coh: list[Coherence], grid: Grid) -> None:
    """Every file opens, has a CRS (any: reprojected on the fly) and overlaps the region."""
    area = box(*grid.bounds)
    for f in [p for r in rtc for p in r.files.values()] + [c.path for c in coh]:
        with open_input(f) as ds:
            if not footprint(ds, grid.crs).intersects(area):
                raise InputDataError("Sentinel-1 file does not overlap the region (the outlines' area)",
                                     path=f, hint="leave it out or check the outlines")


def nearest(items: list, date: dt.date, window_days: float):
    """The item nearest `date` within +- window_days, or None."""
    best = min(items, key=lambda it: (abs((it.date - date).days), it.date), default=None)
    return best if best is not None and abs((best.date - date).days) <= window_days else None


def to_db(values: np.ndarray, scale: str) -> np.ndarray:
    """Backscatter in dB from power (10 log10), amplitude (20 log10) or dB; <= 0 and NaN -> NaN."""
    v = values.astype(np.float32)
    if scale == "d":
        return v
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.float32(10.0 if scale == "p" else 20.0) * np.log10(v)
    out[~(v > 0)] = np.nan
    return out


def write_sar(rtc: Rtc | None, coh: Coherence | None, grid: Grid, path: Path, block_rows: int) -> None:
    """sar.tif (VV, VH in dB, coh 0..1; float32, NaN no data) on `grid`, row block by row block.

    A band without a matching file is NaN throughout (with a warning)."""
    sources = {b: (rtc.files.get(b) if rtc else None) for b in ("VV", "VH")}
    sources["coh"] = coh.path if coh else None
    absent = [b for b, p in sources.items() if p is None]
    if absent:
        warnings.warn(f"{path.parent.name}: no Sentinel-1 file for {absent} within the date window: "
                      "those sar.tif bands are NaN", stacklevel=2)
    opened = {b: open_input(p) for b, p in sources.items() if p is not None}
    try:
        vrts = {b: warped(ds, grid, Resampling.bilinear, nodata=np.nan, dtype="float32",
                          src_nodata=ds.nodata) for b, ds in opened.items()}
        with open_output(path, grid, SAR_BANDS, "float32", float("nan")) as out:
            for win in row_windows(grid, block_rows):
                shape = (int(win.height), int(win.width))
                for i, band in enumerate(SAR_BANDS, start=1):
                    if band not in vrts:
                        out.write(np.full(shape, np.nan, np.float32), i, window=win)
                        continue
                    v = read_window(vrts[band], win, sources[band])
                    v = to_db(v, rtc.scale) if band != "coh" else np.clip(v, 0.0, 1.0)
                    out.write(v.astype(np.float32), i, window=win)
        for v in vrts.values():
            v.close()
    finally:
        for ds in opened.values():
            ds.close()
