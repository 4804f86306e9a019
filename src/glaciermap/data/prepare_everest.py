"""Real Landsat scene + RGI outlines -> a raw region (docs/data-format.md, section 1).

The GeoUtils "Everest" test data (a Landsat 7 ETM+ NIR band, a true-colour RGB file and RGI 6.0
outlines, see shared/data/real-everest/README.md) becomes a region folder that the normal ingest
reads: one epoch, `optical.tif` holding bands `NIR R G B` (band descriptions set), outlines with an
ISO `date` column derived from RGI `BgnDate`, no DEM and no cloud mask (region.yaml says so).
The pixels are written once into the (ignored) region folder, unchanged (uint8, same grid).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import yaml
from rasterio.enums import ColorInterp

from glaciermap.data.dates import parse_date
from glaciermap.data.raw import open_raster
from glaciermap.errors import InputDataError
from glaciermap.io import atomic_path, write_text

NIR_FILE = "LE71400412000304SGS00_B4.tif"
RGB_FILE = "LE71400412000304SGS00_RGB.tif"
OUTLINES_FILE = "15_rgi60_glacier_outlines.gpkg"
#: Band names written into optical.tif (the sensor group of params lists the same names).
BANDS = ("NIR", "R", "G", "B")


def landsat_scene_date(scene_id: str) -> dt.date:
    """Acquisition date of a Landsat scene id: LE7 PPPRRR YYYY DDD ... -> date (year + day of year)."""
    m = re.match(r"^L[CETMO]\d{7}(\d{4})(\d{3})", scene_id)
    if not m:
        raise InputDataError(f"not a Landsat scene id: {scene_id!r}",
                             hint="expected e.g. LE71400412000304SGS00 (sensor, path/row, year, day of year)")
    year, doy = int(m.group(1)), int(m.group(2))
    return dt.date(year, 1, 1) + dt.timedelta(days=doy - 1)


def rgi_date(value) -> str | None:
    """RGI 6 BgnDate/EndDate (YYYYMMDD, 99 = unknown month/day, -9999999 = missing) -> ISO date
    (unknown parts placed as `glaciermap.data.dates` says: day -> 15th, month -> 1 July)."""
    d = parse_date(value)
    return None if d is None else d.isoformat()


def inventory_dates(outlines: pd.DataFrame, path: Path) -> pd.Series:
    """ISO date of each outline: BgnDate, else EndDate; an error if neither is known."""
    dates = outlines["BgnDate"].map(rgi_date)
    if "EndDate" in outlines.columns:
        dates = dates.fillna(outlines["EndDate"].map(rgi_date))
    missing = outlines.loc[dates.isna(), "RGIId"].tolist()
    if missing:
        raise InputDataError(f"no BgnDate/EndDate for outline(s) {missing[:10]}", path=path,
                             hint="RGI writes -9999999 for an unknown date; set a date for these")
    return dates


def write_optical(nir_path: Path, rgb_path: Path, out: Path) -> Path:
    """Stack NIR + RGB (same grid required) into one GeoTIFF with band descriptions NIR R G B."""
    with open_raster(nir_path) as nir, open_raster(rgb_path) as rgb:
        if rgb.count != 3:
            raise InputDataError(f"expected 3 bands (R, G, B), found {rgb.count}", path=rgb_path)
        if (nir.crs, nir.transform, nir.shape) != (rgb.crs, rgb.transform, rgb.shape):
            raise InputDataError(f"grid differs from {nir_path.name}", path=rgb_path,
                                 hint="the NIR and RGB files must share CRS, transform and size")
        data = np.concatenate([nir.read(1)[None], rgb.read()])
        profile = dict(driver="GTiff", width=nir.width, height=nir.height, count=len(BANDS),
                       dtype=data.dtype.name, crs=nir.crs, transform=nir.transform, nodata=nir.nodata,
                       compress="deflate", tiled=True, blockxsize=256, blockysize=256,
                       photometric="MINISBLACK")  # GDAL would make 4 uint8 bands RGB + alpha
    with atomic_path(out) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = BANDS
            dst.colorinterp = [ColorInterp.gray] + [ColorInterp.undefined] * (len(BANDS) - 1)
            dst.update_tags(AREA_OR_POINT="Area", SOURCE=f"{nir_path.name} + {rgb_path.name}")
    return out


def prepare_everest_region(source: str | Path, out: str | Path, *, name: str = "everest") -> Path:
    """Build the raw region folder `out` from the shared Everest files in `source`."""
    source, out = Path(source), Path(out)
    files = {k: source / f for k, f in (("nir", NIR_FILE), ("rgb", RGB_FILE), ("outlines", OUTLINES_FILE))}
    for p in files.values():
        if not p.exists():
            raise InputDataError("file missing", path=p,
                                 hint="expected the GeoUtils Everest test data (see its README.md)")
    date = landsat_scene_date(NIR_FILE)
    epoch = str(date.year)
    try:
        outlines = gpd.read_file(files["outlines"])
    except Exception as err:  # pyogrio raises several types for unreadable files
        raise InputDataError(f"cannot read outlines: {err}", path=files["outlines"]) from None
    missing = [c for c in ("RGIId", "BgnDate", "Area") if c not in outlines.columns]
    if missing:
        raise InputDataError(f"not an RGI 6 file: column(s) {missing} missing", path=files["outlines"])
    outlines["date"] = inventory_dates(outlines, files["outlines"])
    keep = [c for c in ("RGIId", "Name", "Area", "BgnDate", "EndDate", "date") if c in outlines.columns]
    with atomic_path(out) as tmp:
        (tmp / "scenes" / epoch).mkdir(parents=True)
        write_optical(files["nir"], files["rgb"], tmp / "scenes" / epoch / "optical.tif")
        outlines[[*keep, "geometry"]].to_file(tmp / "outlines.gpkg", driver="GPKG", layer="outlines")
        manifest = {"name": name, "id_column": "RGIId", "date_column": "date",
                    "inventory_epochs": [epoch], "epochs": {epoch: {"date": date.isoformat()}},
                    "outlines": "outlines.gpkg", "dem": None, "cloud_masks": False}
        write_text(tmp / "region.yaml", "# written by glaciermap prepare-everest from "
                   f"{source.name}/ (Landsat 7 ETM+ {NIR_FILE[:21]}, RGI 6.0)\n"
                   + yaml.safe_dump(manifest, sort_keys=False))
    return out


__all__ = ["prepare_everest_region", "landsat_scene_date", "rgi_date", "inventory_dates", "write_optical",
           "BANDS"]
