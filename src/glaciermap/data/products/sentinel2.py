"""Sentinel-2 Level-2A products: a `.SAFE` folder, its `.zip`, or a folder of per-band COGs with a
STAC item JSON (the layout cloud archives serve).

Surface reflectance from the digital numbers (DN) of the product (Sentinel-2 L2A product
specification; offsets since processing baseline 04.00, 25 January 2022):

    reflectance = (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE      (DN = 0: no data -> NaN)

with BOA_ADD_OFFSET (per band, -1000 from baseline 04.00, 0 before) and BOA_QUANTIFICATION_VALUE
(10000) read from `MTD_MSIL2A.xml`. For a STAC item: if `earthsearch:boa_offset_applied` (or
`sentinel:boa_offset_applied`) is true the archive already shifted the DN (offset 0); otherwise
the asset's `raster:bands` scale and offset (reflectance = DN * scale + offset), else the offset
that the processing baseline (`s2:processing_baseline`) implies.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.crs import CRS
from rasterio.enums import Resampling
from shapely.geometry import Polygon, box

from glaciermap.data.grid import Grid
from glaciermap.errors import InputDataError

from .rasters import open_input, open_output, read_window, row_windows, warped

#: optical.tif band name -> Sentinel-2 band id in file names
OPTICAL = {"B2": "B02", "B3": "B03", "B4": "B04", "B8": "B08", "B11": "B11", "B12": "B12"}
#: `band_id` attribute of MTD_MSIL2A.xml (0 = B01 ... 8 = B8A ... 12 = B12)
MTD_BAND_ID = {"B02": 1, "B03": 2, "B04": 3, "B08": 7, "B11": 11, "B12": 12}
#: STAC asset keys / common names of the bands read (earth-search uses common names)
STAC_NAMES = {"B02": {"b02", "blue"}, "B03": {"b03", "green"}, "B04": {"b04", "red"},
              "B08": {"b08", "nir"}, "B11": {"b11", "swir16"}, "B12": {"b12", "swir22"},
              "SCL": {"scl"}}
NEEDED = [*OPTICAL.values(), "SCL"]
_JP2 = re.compile(r"IMG_DATA/R(10|20|60)m/[^/]*_(B\d\d|B8A|SCL)_(10|20|60)m\.jp2$")
_BASELINE_WITH_OFFSET = (4, 0)


@dataclass(frozen=True)
class S2Product:
    """One Sentinel-2 L2A acquisition, checked and ready to read."""

    path: Path  # as the user gave it
    date: dt.date
    sources: dict[str, str]  # band id (B02 ... SCL) -> GDAL path of its finest-resolution file
    offset: dict[str, float]  # band id -> BOA_ADD_OFFSET (DN)
    quantification: float  # BOA_QUANTIFICATION_VALUE (DN per unit reflectance)
    crs: CRS = field(compare=False)
    bounds: tuple[float, float, float, float] = field(compare=False)  # of B02, in `crs`
    origin: tuple[float, float] = field(compare=False)  # upper-left corner of the 10 m grid
    res: float = 10.0

    def footprint(self) -> Polygon:
        """The product's extent (its 10 m B02 band) in its own CRS."""
        return box(*self.bounds)

    def reflectance(self, band: str, dn: np.ndarray) -> np.ndarray:
        """(DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE as float32, NaN where DN = 0."""
        out = (dn.astype(np.float32) + np.float32(self.offset[band])) / np.float32(self.quantification)
        out[dn == 0] = np.nan
        return out


# ------------------------------------------------------------------------------------- opening
def open_s2(path: str | Path) -> S2Product:
    """Identify and check one product (level, metadata, every band file opens, one CRS)."""
    path = Path(path)
    if not path.exists():
        raise InputDataError("Sentinel-2 product not found", path=path)
    if path.suffix.lower() == ".json" or (path.is_dir() and not path.name.upper().endswith(".SAFE")
                                          and not any(path.glob("MTD_MSIL*.xml"))
                                          and any(path.glob("*.json"))):
        product = _open_stac(path)
    else:
        product = _open_safe(path)
    return product


def _check_level(name: str, path: Path) -> None:
    if re.search(r"MSIL1C|L1C", name):
        raise InputDataError("Sentinel-2 Level-1C product (top-of-atmosphere), not Level-2A", path=path,
                             hint="download the L2A (MSIL2A, surface reflectance) product of the same date")


def _open_safe(path: Path) -> S2Product:
    files, gdal_path, read_text = _listing(path)
    for f in files:
        if f.endswith("MTD_MSIL1C.xml"):
            _check_level("MSIL1C", path)
    _check_level(path.name, path)
    mtd = [f for f in files if f.endswith("MTD_MSIL2A.xml")]
    if not mtd:
        raise InputDataError("not a Sentinel-2 L2A product: MTD_MSIL2A.xml missing", path=path,
                             hint="give a .SAFE folder, its .zip, or a folder with a STAC item JSON")
    try:
        root = ET.fromstring(read_text(mtd[0]))
    except ET.ParseError as err:
        raise InputDataError(f"unreadable product metadata MTD_MSIL2A.xml: {err}", path=path) from None
    meta = _mtd_values(root)
    if meta.get("PRODUCT_TYPE", "S2MSI2A") != "S2MSI2A":
        raise InputDataError(f"product type {meta['PRODUCT_TYPE']}, not S2MSI2A (Level-2A)", path=path)
    quant = meta.get("BOA_QUANTIFICATION_VALUE")
    if quant is None:
        raise InputDataError("BOA_QUANTIFICATION_VALUE missing in MTD_MSIL2A.xml", path=path)
    offsets = _mtd_offsets(root)
    baseline = _baseline(meta.get("PROCESSING_BASELINE"), path.name)
    if not offsets:
        if baseline >= _BASELINE_WITH_OFFSET:
            raise InputDataError(f"processing baseline {baseline[0]:02d}.{baseline[1]:02d} but no "
                                 "BOA_ADD_OFFSET in MTD_MSIL2A.xml", path=path,
                                 hint="products from baseline 04.00 carry BOA_ADD_OFFSET_VALUES_LIST")
        offsets = {b: 0.0 for b in MTD_BAND_ID}
    missing_off = [b for b in MTD_BAND_ID if b not in offsets]
    if missing_off:
        raise InputDataError(f"BOA_ADD_OFFSET missing for band(s) {missing_off}", path=path)
    sources = _safe_bands(files, gdal_path, path)
    date = _date(meta.get("PRODUCT_START_TIME"), path)
    return _finish(path, date, sources, offsets, float(quant))


def _listing(path: Path):
    """(relative file names, name -> GDAL path, name -> text) of a SAFE folder or zip."""
    if path.is_dir():
        files = sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())
        return files, lambda f: str(path / f), lambda f: (path / f).read_bytes()
    try:
        with zipfile.ZipFile(path) as zf:
            files = sorted(n for n in zf.namelist() if not n.endswith("/"))
    except (zipfile.BadZipFile, OSError) as err:
        raise InputDataError(f"not a readable zip or SAFE folder: {err}", path=path) from None

    def read(f: str) -> bytes:
        with zipfile.ZipFile(path) as zf:
            return zf.read(f)

    return files, lambda f: f"/vsizip/{path.absolute()}/{f}", read


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _mtd_values(root: ET.Element) -> dict[str, str]:
    """Product type, baseline, start time and quantification (Sen2Cor 2.4-2.5 products of 2017-2018
    call the latter L2A_BOA_QUANTIFICATION_VALUE)."""
    keys = {"PRODUCT_TYPE", "PROCESSING_BASELINE", "PRODUCT_START_TIME", "BOA_QUANTIFICATION_VALUE"}
    tags = ((_local(e.tag).removeprefix("L2A_"), e.text) for e in root.iter())
    return {k: (t or "").strip() for k, t in tags if k in keys}


def _mtd_offsets(root: ET.Element) -> dict[str, float]:
    by_id = {v: k for k, v in MTD_BAND_ID.items()}
    out = {}
    for e in root.iter():
        if _local(e.tag) == "BOA_ADD_OFFSET" and e.get("band_id", "").isdigit():
            band = by_id.get(int(e.get("band_id")))
            if band:
                out[band] = float(e.text)
    return out


def _baseline(text: str | None, name: str) -> tuple[int, int]:
    """Processing baseline as (major, minor), from the metadata or the N0509 part of the name."""
    m = re.fullmatch(r"(\d+)\.(\d+)", text or "") or re.search(r"_N(\d\d)(\d\d)_", name)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _date(text: str | None, path: Path) -> dt.date:
    m = re.match(r"(\d{4})-(\d{2})-(\d{2})", text or "") or re.search(r"_(\d{4})(\d{2})(\d{2})T\d{6}", path.name)
    if not m:
        raise InputDataError("acquisition date not found (metadata or product name)", path=path)
    return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def _safe_bands(files: list[str], gdal_path, path: Path) -> dict[str, str]:
    """The finest-resolution jp2 of each needed band (B02 10 m, B11 20 m, SCL 20 m, ...)."""
    best: dict[str, tuple[int, str]] = {}
    for f in files:
        m = _JP2.search(f)
        if m and m.group(2) in NEEDED:
            res = int(m.group(3))
            if m.group(2) not in best or res < best[m.group(2)][0]:
                best[m.group(2)] = (res, f)
    missing = [b for b in NEEDED if b not in best]
    if missing:
        raise InputDataError(f"band file(s) missing: {missing} (looked for GRANULE/*/IMG_DATA/R10m|R20m|R60m/"
                             "*_<band>_<res>m.jp2)", path=path)
    return {b: gdal_path(best[b][1]) for b in NEEDED}


def _open_stac(path: Path) -> S2Product:
    folder = path if path.is_dir() else path.parent
    items = [path] if path.is_file() else sorted(folder.glob("*.json"))
    item = None
    for p in items:
        try:
            doc = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise InputDataError(f"unreadable STAC item: {err}", path=p) from None
        if isinstance(doc, dict) and doc.get("type") == "Feature" and "assets" in doc:
            item, item_path = doc, p
            break
    if item is None:
        raise InputDataError("no STAC item (a GeoJSON Feature with assets) in the folder", path=path)
    props = item.get("properties", {})
    level_text = " ".join(str(x) for x in (item.get("id", ""), item.get("collection", ""),
                                           props.get("s2:product_type", "")))
    if re.search(r"L1C|MSI1C", level_text, re.I):
        _check_level("L1C", item_path)
    sources, scale_offset = {}, {}
    for key, asset in item["assets"].items():
        names = {key.lower(), *(str(b.get(n, "")).lower() for b in asset.get("eo:bands", [])
                                for n in ("name", "common_name"))}
        for band, aliases in STAC_NAMES.items():
            if band not in sources and names & aliases and (band != "B08" or "nir08" not in names):
                sources[band] = _stac_href(asset.get("href", ""), folder, item_path)
                rb = (asset.get("raster:bands") or [{}])[0]
                scale_offset[band] = (rb.get("scale"), rb.get("offset"))
    missing = [b for b in NEEDED if b not in sources]
    if missing:
        raise InputDataError(f"STAC item has no asset for band(s) {missing}", path=item_path)
    applied = props.get("earthsearch:boa_offset_applied", props.get("sentinel:boa_offset_applied"))
    baseline = _baseline(str(props.get("s2:processing_baseline", props.get("sentinel:processing_baseline", ""))),
                         str(item.get("id", "")))
    quant, offsets = 10000.0, {}
    for band in MTD_BAND_ID:
        scale, offset = scale_offset.get(band, (None, None))
        if scale:
            quant = 1.0 / float(scale)
        if applied is True:
            offsets[band] = 0.0
        elif offset is not None:
            offsets[band] = float(offset) * quant
        else:
            offsets[band] = -1000.0 if baseline >= _BASELINE_WITH_OFFSET else 0.0
    date = _date(props.get("datetime"), item_path)
    return _finish(path, date, sources, offsets, round(quant, 6))


def _stac_href(href: str, folder: Path, item_path: Path) -> str:
    """A local file for an asset: the href itself if it exists, else its file name in the folder."""
    local = (folder / href) if not re.match(r"\w+://", href) else None
    if local is not None and local.exists():
        return str(local)
    by_name = folder / Path(href.split("?")[0]).name
    if by_name.exists():
        return str(by_name)
    raise InputDataError(f"asset file {by_name.name} not found beside the STAC item", path=item_path,
                         hint="download every band COG into the item's folder")


def _finish(path: Path, date: dt.date, sources: dict[str, str], offsets: dict[str, float],
            quant: float) -> S2Product:
    """Open every band file once (corrupt files fail here) and check one CRS for all."""
    crs = bounds = origin = None
    for band, src in sources.items():
        shown = _shown(path, src)
        with open_input(src, shown) as ds:
            if crs is None:
                crs, bounds, origin, res = ds.crs, tuple(ds.bounds), (ds.transform.c, ds.transform.f), ds.res[0]
            elif ds.crs != crs:
                raise InputDataError(f"band {band} is in {ds.crs}, band B02 in {crs}", path=shown)
    return S2Product(path, date, sources, offsets, quant, crs, bounds, origin, res)


def _shown(path: Path, src: str) -> str:
    """How a band file is named in errors: the file itself, or the zip and its member."""
    return src.replace("/vsizip/", "") if src.startswith("/vsizip/") else src


# ------------------------------------------------------------------------------------- writing
def cloud_lut(scl_to_cloud: dict[int, int]) -> np.ndarray:
    """A 256-entry lookup table SCL class -> cloud.tif code (unlisted classes: 0 clear)."""
    lut = np.zeros(256, np.uint8)
    for k, v in scl_to_cloud.items():
        lut[int(k)] = v
    return lut


def write_scene(product: S2Product, grid: Grid, folder: Path, lut: np.ndarray, block_rows: int) -> float:
    """Write optical.tif (B2 B3 B4 B8 B11 B12 reflectance, float32, NaN no data) and cloud.tif
    (lut[SCL]; 255 also where any optical band is no data) on `grid`, one row block at a time.

    20 m bands and the SCL are resampled to the grid by nearest neighbour (on the product's own
    10 m lattice each 20 m pixel becomes 2 x 2 pixels, values unchanged). Returns the fraction of
    the grid that is cloud, shadow or no data.
    """
    folder.mkdir(parents=True, exist_ok=True)
    masked = 0
    srcs = {b: open_input(s, _shown(product.path, s)) for b, s in product.sources.items()}
    try:
        vrts = {b: warped(ds, grid, Resampling.nearest, src_nodata=0, nodata=0) for b, ds in srcs.items()}
        with open_output(folder / "optical.tif", grid, list(OPTICAL), "float32", float("nan")) as opt, \
                open_output(folder / "cloud.tif", grid, ["cloud"], "uint8", 255) as cld:
            for win in row_windows(grid, block_rows):
                nodata = np.zeros((int(win.height), int(win.width)), bool)
                for i, band in enumerate(OPTICAL.values(), start=1):
                    dn = read_window(vrts[band], win, _shown(product.path, product.sources[band]))
                    nodata |= dn == 0
                    opt.write(product.reflectance(band, dn), i, window=win)
                scl = read_window(vrts["SCL"], win, _shown(product.path, product.sources["SCL"]))
                cloud = lut[scl]
                cloud[nodata] = 255
                masked += int(np.count_nonzero(cloud))
                cld.write(cloud, 1, window=win)
        for v in vrts.values():
            v.close()
    finally:
        for ds in srcs.values():
            ds.close()
    return masked / (grid.width * grid.height)

