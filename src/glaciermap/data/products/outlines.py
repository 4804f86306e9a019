"""Inventory outlines as RGI ships them (RGI 7.0 `rgi_id` / `src_date`, RGI 6.0 `RGIId` /
`BgnDate`, or any file with a `glacier_id` / `date`), with the id and date columns found by name.
"""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd

from glaciermap.data.dates import inventory_year
from glaciermap.data.raw import read_vector
from glaciermap.errors import InputDataError

#: candidate column names, in order of preference (exact name first, then ignoring case)
ID_COLUMNS = ("rgi_id", "RGIId", "glacier_id", "glac_id", "glims_id", "GLIMSId", "id")
DATE_COLUMNS = ("src_date", "BgnDate", "date", "src_time", "year")


def find_column(columns: list[str], candidates: tuple[str, ...], given: str | None, what: str,
                path: Path) -> str:
    """`given` if set (it must exist), else the first candidate present (case-insensitive)."""
    if given is not None:
        if given not in columns:
            raise InputDataError(f"{what} column {given!r} missing (columns: {columns})", path=path)
        return given
    lower = {c.lower(): c for c in columns}
    for c in candidates:
        if c in columns:
            return c
        if c.lower() in lower:
            return lower[c.lower()]
    raise InputDataError(f"no {what} column (looked for {list(candidates)}; columns: {columns})", path=path,
                         hint=f"name it with region_build.{what}_column")


def read_outlines(path: Path, id_column: str | None, date_column: str | None
                  ) -> tuple[gpd.GeoDataFrame, str, str]:
    """The outlines (all columns, own CRS) and their id and date column names."""
    path = Path(path)
    if not path.exists():
        raise InputDataError("outlines file not found", path=path)
    gdf = read_vector(path)
    cols = [c for c in gdf.columns if c != gdf.geometry.name]
    idc = find_column(cols, ID_COLUMNS, id_column, "id", path)
    datec = find_column(cols, DATE_COLUMNS, date_column, "date", path)
    years = gdf[datec].apply(inventory_year)
    bad = gdf.loc[years.isna(), idc].astype(str).tolist()
    if bad:
        raise InputDataError(f"unparseable date in column {datec!r} for glacier(s) {bad[:5]}", path=path,
                             hint="dates must be ISO dates, years or RGI 6 YYYYMMDD")
    return gdf, idc, datec


def outline_years(gdf: gpd.GeoDataFrame, date_column: str) -> list[float]:
    """Decimal years of the outlines' dates (as ingest reads them)."""
    return gdf[date_column].apply(inventory_year).astype(float).tolist()
