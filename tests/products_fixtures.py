"""Tiny standard products in their published layout and naming, for tests of `region build`.

* Sentinel-2 L2A `.SAFE` trees (and their `.zip`) with `MTD_MSIL2A.xml` (offsets of baseline
  04.00+ or none before), lossless JPEG 2000 bands at 10 / 20 / 60 m and the 20 m SCL; an L1C tree;
  a folder of per-band COGs with a STAC item JSON (earth-search style asset keys).
* Sentinel-1 HyP3 RTC VV / VH (power or amplitude) and InSAR coherence GeoTIFFs.
* Copernicus GLO-30-named DEM tiles (EPSG:4326).
* RGI 7.0-like and RGI 6.0-like outline shapefiles.

Every builder returns the arrays it wrote, so tests compare outputs with values computed by hand.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import box
from shapely.ops import transform as shp_transform

CRS = "EPSG:32632"
X0, Y0 = 600_000.0, 5_190_000.0  # upper-left corner of the tiny tile (UTM 32N, ~11.3 E 46.8 N)
N10 = 60  # pixels at 10 m (600 m x 600 m)
OPTICAL_10 = ("B02", "B03", "B04", "B08")
OPTICAL_20 = ("B11", "B12")
ALL_20 = ("B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12")
ALL_60 = ("B01", "B02", "B09", "B11", "B12")


@dataclass
class Safe:
    """A written SAFE product and its digital numbers (band id -> array at its native resolution)."""

    path: Path
    dn: dict[str, np.ndarray]
    scl: np.ndarray  # 20 m
    offset: float  # BOA_ADD_OFFSET of every band
    date: str  # YYYY-MM-DD


def write_jp2(path: Path, arr: np.ndarray, res: float, crs: str = CRS, origin=(X0, Y0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=arr.shape[1], height=arr.shape[0], count=1,
                       dtype=arr.dtype, crs=crs, transform=from_origin(*origin, res, res),
                       QUALITY=100, REVERSIBLE="YES") as ds:
        ds.write(arr, 1)


def write_tif(path: Path, arrays: list[np.ndarray], res: float | tuple[float, float], crs=CRS, origin=(X0, Y0),
              nodata=None, descriptions=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rx, ry = (res, res) if np.isscalar(res) else res
    with rasterio.open(path, "w", driver="GTiff", width=arrays[0].shape[1], height=arrays[0].shape[0],
                       count=len(arrays), dtype=arrays[0].dtype, crs=crs,
                       transform=from_origin(origin[0], origin[1], rx, ry), nodata=nodata) as ds:
        for i, a in enumerate(arrays, start=1):
            ds.write(a, i)
        if descriptions:
            ds.descriptions = tuple(descriptions)


def mtd_xml(level: str, baseline: str, start: str, offset: int | None) -> str:
    """A Level-2A (or 1C) user-product metadata file with the elements the reader uses."""
    ns = f"https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-{level[1:]}.xsd"
    quant = "BOA_QUANTIFICATION_VALUE" if level == "L2A" else "QUANTIFICATION_VALUE"
    off_tag, off_list = (("BOA_ADD_OFFSET", "BOA_ADD_OFFSET_VALUES_LIST") if level == "L2A"
                         else ("RADIO_ADD_OFFSET", "Radiometric_Offset_List"))
    offsets = "" if offset is None else (
        f"<{off_list}>" + "".join(f'<{off_tag} band_id="{i}">{offset}</{off_tag}>' for i in range(13))
        + f"</{off_list}>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<n1:Level-{level[1:]}_User_Product xmlns:n1="{ns}">'
            f"<n1:General_Info><Product_Info><PRODUCT_START_TIME>{start}</PRODUCT_START_TIME>"
            f"<PRODUCT_TYPE>S2MSI{level[1:]}</PRODUCT_TYPE><PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>"
            f"</Product_Info><Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST>"
            f'<{quant} unit="none">10000</{quant}><AOT_QUANTIFICATION_VALUE unit="none">1000.0'
            f"</AOT_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>{offsets}"
            f"</Product_Image_Characteristics></n1:General_Info></n1:Level-{level[1:]}_User_Product>\n")


def _dn(rng: np.random.Generator, n: int, nodata_corner: bool) -> np.ndarray:
    a = rng.integers(1, 12000, size=(n, n), dtype=np.uint16)
    if nodata_corner:  # a swath-edge wedge of no data (DN 0) in the north-west
        r, c = np.mgrid[:n, :n]
        a[r + c < n // 4] = 0
    return a


def make_safe(root: Path, *, date: str = "20230825", baseline: str = "0509", seed: int = 0,
              crs: str = CRS, origin=(X0, Y0), level: str = "L2A", zip_it: bool = False,
              cloud_fraction: float | None = None) -> Safe:
    """A SAFE product named like ESA's, with offsets -1000 from baseline 04.00 (none before).

    `cloud_fraction` sets that share of SCL pixels to class 9 (high-probability cloud), the rest
    class 5; by default SCL holds every class 0..11."""
    rng = np.random.default_rng(seed)
    t = "102021"
    name = f"S2A_MSI{level}_{date}T{t}_N{baseline}_R065_T32TPS_{date}T151231.SAFE"
    safe = root / name
    offset = -1000 if (level == "L2A" and int(baseline) >= 400) else (None if level == "L2A" else -1000)
    start = f"{date[:4]}-{date[4:6]}-{date[6:]}T10:20:21.024Z"
    safe.mkdir(parents=True)
    (safe / f"MTD_MSI{level}.xml").write_text(mtd_xml(level, f"{baseline[:2]}.{baseline[2:]}", start, offset))
    granule = safe / "GRANULE" / f"{level}_T32TPS_A042000_{date}T{t}" / "IMG_DATA"
    dn: dict[str, np.ndarray] = {}
    stem = f"T32TPS_{date}T{t}"
    if level == "L1C":  # L1C: band files directly in IMG_DATA, no resolution folders
        for b in OPTICAL_10:
            write_jp2(granule / f"{stem}_{b}.jp2", _dn(rng, N10, False), 10, crs, origin)
        return Safe(safe, dn, np.zeros((1, 1), np.uint8), -1000, date)
    for b in OPTICAL_10:
        dn[b] = _dn(rng, N10, True)
        write_jp2(granule / "R10m" / f"{stem}_{b}_10m.jp2", dn[b], 10, crs, origin)
    for b in ALL_20:
        a = _dn(rng, N10 // 2, True)
        if b in OPTICAL_20:
            dn[b] = a
        write_jp2(granule / "R20m" / f"{stem}_{b}_20m.jp2", a, 20, crs, origin)
    for b in ALL_60:  # different values: the 60 m files must not be the ones read
        write_jp2(granule / "R60m" / f"{stem}_{b}_60m.jp2", _dn(rng, N10 // 6, False), 60, crs, origin)
    if cloud_fraction is None:
        scl = rng.integers(0, 12, size=(N10 // 2, N10 // 2)).astype(np.uint8)
    else:
        scl = np.where(rng.random((N10 // 2, N10 // 2)) < cloud_fraction, 9, 5).astype(np.uint8)
    write_jp2(granule / "R20m" / f"{stem}_SCL_20m.jp2", scl, 20, crs, origin)
    write_jp2(granule / "R60m" / f"{stem}_SCL_60m.jp2", scl[::3, ::3].copy(), 60, crs, origin)
    for aux in granule.rglob("*.aux.xml"):
        aux.unlink()
    if zip_it:
        archive = safe.with_suffix(".zip")
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for f in sorted(safe.rglob("*")):
                zf.write(f, f.relative_to(root).as_posix())
        shutil.rmtree(safe)
        safe = archive
    return Safe(safe, dn, scl, float(offset or 0), f"{date[:4]}-{date[4:6]}-{date[6:]}")


def make_stac(root: Path, *, date: str = "2023-08-30", seed: int = 3, offset_applied: bool | None = True,
              raster_offset: float | None = -0.1) -> Safe:
    """A folder of per-band COGs with an earth-search-style STAC item (common-name asset keys)."""
    rng = np.random.default_rng(seed)
    folder = root / f"S2B_32TPS_{date.replace('-', '')}_0_L2A"
    keys = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16", "B12": "swir22",
            "B8A": "nir08"}
    dn, assets = {}, {}
    for band, key in keys.items():
        res = 10 if band in OPTICAL_10 else 20
        a = _dn(rng, N10 if res == 10 else N10 // 2, True)
        dn[band] = a
        write_tif(folder / f"{band}.tif", [a], res, nodata=0)
        rb = {"nodata": 0, "data_type": "uint16", "spatial_resolution": res, "scale": 0.0001}
        if raster_offset is not None:
            rb["offset"] = raster_offset
        assets[key] = {"href": f"https://sentinel-cogs.s3.us-west-2.amazonaws.com/x/{band}.tif",
                       "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                       "eo:bands": [{"name": band, "common_name": key}], "raster:bands": [rb]}
    scl = rng.integers(0, 12, size=(N10 // 2, N10 // 2)).astype(np.uint8)
    write_tif(folder / "SCL.tif", [scl], 20, nodata=0)
    assets["scl"] = {"href": "./SCL.tif", "raster:bands": [{"nodata": 0, "data_type": "uint8"}]}
    props = {"datetime": f"{date}T10:20:21.024000Z", "s2:processing_baseline": "05.09",
             "s2:product_type": "S2MSI2A", "proj:epsg": 32632}
    if offset_applied is not None:
        props["earthsearch:boa_offset_applied"] = offset_applied
    item = {"type": "Feature", "stac_version": "1.0.0", "id": folder.name, "collection": "sentinel-2-l2a",
            "properties": props, "assets": assets, "geometry": None, "links": []}
    (folder / f"{folder.name}.json").write_text(json.dumps(item, indent=1))
    off = 0.0 if offset_applied else (raster_offset * 10000 if raster_offset is not None else -1000.0)
    return Safe(folder, {b: dn[b] for b in (*OPTICAL_10, *OPTICAL_20)}, scl, off, date)


def make_rtc(folder: Path, date: str, *, scale: str = "p", res: float = 20.0, seed: int = 1,
             n: int = N10 // 2) -> dict[str, np.ndarray]:
    """HyP3 RTC VV and VH GeoTIFFs (gamma0 power or amplitude, nodata 0) on a 20 m grid."""
    rng = np.random.default_rng(seed)
    out = {}
    for pol in ("VV", "VH"):
        a = rng.uniform(0.005, 0.5, size=(n, n)).astype(np.float32)
        a[0, :3] = 0  # no data
        out[pol] = a
        name = f"S1A_IW_{date}T053212_DVP_RTC30_G_g{scale}uned_1A2B_{pol}.tif"
        write_tif(folder / name, [a], res, nodata=0)
    return out


def make_coherence(folder: Path, d0: str, d1: str, *, res: float = 20.0, seed: int = 2,
                   n: int = N10 // 2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.05, 0.95, size=(n, n)).astype(np.float32)
    name = f"S1AA_{d0}T053212_{d1}T053212_VVP012_INT80_G_ueF_1A2B_corr.tif"
    write_tif(folder / name, [a], res, nodata=0)
    return a


def dem_plane(lon, lat):
    """The DEM tiles' elevation: a plane in lon / lat (bilinear resampling reproduces it exactly)."""
    return 2800.0 + 4000.0 * (np.asarray(lon) - 10.3) + 9000.0 * (np.asarray(lat) - 46.85)


#: a point (UTM) inside the east DEM tile's void
VOID_XY = (X0 + 450.0, Y0 - 100.0)  # off both glaciers (ingest rejects voids on ice)


def make_dem_tiles(folder: Path, *, void: bool = True) -> list[Path]:
    """Two adjacent Copernicus-named tiles (west and east halves), 1/3600 degree pixels, covering the
    tiny tile with a margin; the east tile has a void (nodata -32767) of 5 x 5 pixels around VOID_XY."""
    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    lon0, lat0 = to_ll.transform(X0 - 300, Y0 + 300)
    lon1, lat1 = to_ll.transform(X0 + 10 * N10 + 300, Y0 - 10 * N10 - 300)
    lon0, lat1 = min(lon0, to_ll.transform(X0 - 300, Y0 - 10 * N10 - 300)[0]), min(lat1, lat0 - 0.02)
    res = 1 / 3600
    west, north = np.floor(lon0 / res) * res, np.ceil(lat0 / res) * res
    width, height = int(np.ceil((lon1 - west) / res)) + 2, int(np.ceil((north - lat1) / res)) + 2
    half = width // 2
    paths = []
    for k, (c0, c1) in enumerate([(0, half), (half, width)]):
        lons = west + (np.arange(c0, c1) + 0.5) * res
        lats = north - (np.arange(height) + 0.5) * res
        z = dem_plane(lons[None, :], lats[:, None]).astype(np.float32)
        if void and k == 1:
            vlon, vlat = to_ll.transform(*VOID_XY)
            r, c = int((north - vlat) / res), int((vlon - west) / res) - c0
            z[r - 2: r + 3, c - 2: c + 3] = -32767
        p = folder / f"Copernicus_DSM_COG_10_N46_00_E01{k}_00_DEM.tif"
        write_tif(p, [z], res, crs="EPSG:4326", origin=(west + c0 * res, north), nodata=-32767)
        paths.append(p)
    return paths


def make_outlines(path: Path, *, kind: str = "rgi7", dates: tuple[str, ...] = ("2016-08-01", "2016-08-01"),
                  offset=(0.0, 0.0)) -> gpd.GeoDataFrame:
    """Two glaciers inside the tiny tile, EPSG:4326, with RGI 7.0 (rgi_id, src_date) or RGI 6.0
    (RGIId, BgnDate YYYYMMDD) columns."""
    dx, dy = offset
    polys = [box(X0 + 100 + dx, Y0 - 300 + dy, X0 + 300 + dx, Y0 - 100 + dy),
             box(X0 + 320 + dx, Y0 - 520 + dy, X0 + 520 + dx, Y0 - 280 + dy)]
    to_ll = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform
    geoms = [shp_transform(to_ll, p) for p in polys]
    if kind == "rgi7":
        cols = {"rgi_id": [f"RGI2000-v7.0-G-11-0{i}" for i in (3113, 3114)],
                "glims_id": ["G011300E46800N", "G011302E46799N"],
                "src_date": [f"{d}T00:00:00" for d in dates], "area_km2": [0.04, 0.048]}
    else:
        cols = {"RGIId": ["RGI60-11.00897", "RGI60-11.00898"],
                "BgnDate": [d.replace("-", "")[:6] + "99" for d in dates], "Area": [0.04, 0.048]}
    gdf = gpd.GeoDataFrame(cols, geometry=geoms, crs="EPSG:4326")
    path.parent.mkdir(parents=True, exist_ok=True)
    gdf.to_file(path)
    return gdf
