"""Read a raw region (docs/data-format.md, section 1) with clear errors for bad input."""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import yaml
from pydantic import ValidationError
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform
from shapely import make_valid
from shapely.geometry import MultiPolygon, Polygon, box

from glaciermap.config.base import StrictModel
from glaciermap.data.dates import decimal_year, inventory_year
from glaciermap.data.grid import Grid
from glaciermap.errors import InputDataError

SCENE_FILES = {"optical": "optical.tif", "sar": "sar.tif", "cloud": "cloud.tif"}
#: what to do about outlines sharing an id (e.g. RGI divides: several polygons per RGIId)
DUPLICATE_ID_HINT = ("every outline needs its own id: name a column unique per polygon (for divides, "
                     "number them), and set group_column (e.g. RGIId) so folds keep a glacier's divides together; "
                     "or dissolve the divides into one outline per glacier")


class EpochInfo(StrictModel):
    """One epoch: its main acquisition (folder scenes/<epoch>) and optional alternates.

    Alternates are other acquisitions of the same season (folders scenes/<name>): ingest maps each
    glacier from whichever acquisition leaves the least of it masked (cloud, shadow, no data), the
    per-glacier best-scene choice of DL4GAM (Diaconu et al. 2025).
    """

    date: dt.date
    alternates: dict[str, dt.date] = {}


class DebrisSource(StrictModel):
    """Where a region says which ice is debris-covered (truth for the debris metrics, not an input).

    `path`: a raster, static or one per epoch (`{epoch}` in the path is the epoch's name, e.g.
    `truth/surface_{epoch}.tif`, the simulator's surface classes); `band`: its band description
    (None: the first band); `values`: the raster values meaning debris-covered ice (1 for a 0/1
    mask; 6 in the simulator's classes).
    """

    path: str
    band: str | None = None
    values: list[int] = [1]


class RegionManifest(StrictModel):
    """The content of region.yaml."""

    name: str
    id_column: str = "glacier_id"
    date_column: str = "date"
    # column naming the glacier each outline belongs to (e.g. RGIId when the outlines are divides):
    # written to index.csv as `group`, so folds never split one glacier; None: the id column
    group_column: str | None = None
    inventory_epochs: list[str]
    epochs: dict[str, EpochInfo]
    outlines: str = "outlines.gpkg"
    outlines_layer: str | None = None  # layer of the outlines file; required when it has several
    dem: str | None = "dem.tif"  # null: the region has no DEM (sensor sets must not use a dem group)
    cloud_masks: bool = True  # false: scenes have no cloud.tif (only optical no-data is invalid)
    debris: DebrisSource | None = None  # optional debris-cover raster(s): cubes get a mask_debris layer
    # surface elevation change (m/yr, negative = thinning), e.g. Hugonnet et al. 2021: the `dhdt` sensor group
    dhdt: str | None = None
    dhdt_period: tuple[int, int] | None = None  # the years it spans (recorded in the cubes' attributes)


@dataclass(frozen=True)
class Region:
    """A raw region on disk: manifest plus resolved paths."""

    root: Path
    manifest: RegionManifest

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def outlines_path(self) -> Path:
        return self.root / self.manifest.outlines

    @property
    def dem_path(self) -> Path | None:
        """The DEM, or None when region.yaml says `dem: null`."""
        return None if self.manifest.dem is None else self.root / self.manifest.dem

    @property
    def dhdt_path(self) -> Path | None:
        """The dh/dt map, or None when region.yaml names none."""
        return None if self.manifest.dhdt is None else self.root / self.manifest.dhdt

    @property
    def has_cloud_masks(self) -> bool:
        return self.manifest.cloud_masks

    def scene_path(self, scene: str, kind: str) -> Path:
        """A file of one acquisition (an epoch's main scene is named like the epoch)."""
        return self.root / "scenes" / scene / SCENE_FILES[kind]

    def acquisitions(self, epoch: str) -> dict[str, dt.date]:
        """An epoch's scenes, {folder name: date}, its main acquisition first."""
        info = self.manifest.epochs[epoch]
        return {epoch: info.date, **info.alternates}

    @property
    def scenes(self) -> dict[str, dt.date]:
        """Every acquisition of every epoch, {folder name: date}."""
        return {s: d for e in self.manifest.epochs for s, d in self.acquisitions(e).items()}

    def epoch_year(self, epoch: str) -> float:
        """Decimal year of an epoch's main acquisition date."""
        return decimal_year(self.manifest.epochs[epoch].date)

    def debris_path(self, epoch: str) -> Path | None:
        """The debris-cover raster of an epoch, or None when region.yaml names none."""
        d = self.manifest.debris
        return None if d is None else self.root / d.path.replace("{epoch}", epoch)

    @property
    def recent_epochs(self) -> list[str]:
        return [e for e in self.manifest.epochs if e not in self.manifest.inventory_epochs]

    def nearest_inventory_epoch(self, year: float) -> str:
        inv = self.manifest.inventory_epochs
        return min(inv, key=lambda e: abs(self.epoch_year(e) - year))


def open_region(root: str | Path) -> Region:
    """Read and check region.yaml and that every file it names exists."""
    root = Path(root)
    manifest_path = root / "region.yaml"
    if not root.is_dir():
        raise InputDataError("region folder not found", path=root,
                             hint="run `glaciermap simulate` or put a raw region there (docs/data-format.md)")
    if not manifest_path.exists():
        raise InputDataError("region.yaml missing", path=manifest_path,
                             hint="every raw region needs a manifest (docs/data-format.md)")
    try:
        raw = yaml.safe_load(manifest_path.read_text())
        manifest = RegionManifest.model_validate(raw)
    except yaml.YAMLError as err:
        raise InputDataError(f"invalid manifest: {err}", path=manifest_path) from None
    except ValidationError as err:
        problems = "; ".join(f"'{'.'.join(str(p) for p in e['loc']) or '(top level)'}': {e['msg']}"
                             for e in err.errors())
        raise InputDataError(f"invalid manifest: {problems}", path=manifest_path,
                             hint="see docs/data-format.md, section 1") from None
    if not manifest.inventory_epochs:
        raise InputDataError("inventory_epochs is empty: the region has no inventory scene", path=manifest_path,
                             hint="list the epoch(s) matching the outlines' date under inventory_epochs")
    missing = [e for e in manifest.inventory_epochs if e not in manifest.epochs]
    if missing:
        raise InputDataError(f"inventory_epochs {missing} are not listed under epochs", path=manifest_path)
    names = [s for e in manifest.epochs for s in [e, *manifest.epochs[e].alternates]]
    dup = sorted({s for s in names if names.count(s) > 1})
    if dup:
        raise InputDataError(f"scene folder(s) {dup} listed twice (as an epoch or an alternate)",
                             path=manifest_path, hint="each acquisition needs its own folder under scenes/")
    region = Region(root, manifest)
    kinds = ("optical", "cloud") if region.has_cloud_masks else ("optical",)
    debris = sorted({region.debris_path(e) for e in manifest.epochs} - {None})
    optional = [p for p in (region.dem_path, region.dhdt_path) if p is not None]
    for p in [region.outlines_path, *optional, *debris] + [region.scene_path(s, k) for s in region.scenes
                                                          for k in kinds]:
        if not p.exists():
            raise InputDataError("file missing", path=p, hint=f"listed by {manifest_path}")
    return region


# --------------------------------------------------------------------------------------- outlines
def read_vector(path: Path, layer: str | None = None, *, layer_hint: str = "name the layer") -> gpd.GeoDataFrame:
    """A vector file's features (any format geopandas reads), with its CRS; one-line errors for an
    unreadable file, a missing CRS, no features, or several layers and no `layer` named."""
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
        if layer is None and len(layers) > 1:
            raise InputDataError(f"the file has {len(layers)} layers {layers}: which holds the outlines?",
                                 path=path, hint=layer_hint)
        if layer is not None and layer not in layers:
            raise InputDataError(f"no layer {layer!r}; the file has {layers}", path=path, hint=layer_hint)
        gdf = gpd.read_file(path, layer=layer)
    except InputDataError:
        raise
    except Exception as err:  # pyogrio raises several types for unreadable files
        raise InputDataError(f"cannot read outlines: {str(err).splitlines()[0]}", path=path) from None
    if gdf.crs is None:
        raise InputDataError("outlines have no CRS", path=path, hint="write a .prj (shapefile) or set the CRS")
    if len(gdf) == 0:
        raise InputDataError("no outlines in file", path=path)
    return gdf


def read_outlines(region: Region) -> gpd.GeoDataFrame:
    """Inventory outlines with columns glacier_id, group, inventory_year, geometry (CRS kept).

    `group` is the `group_column` of region.yaml (the glacier a divide belongs to), else the id.

    Invalid geometries are repaired (with a warning); empty geometries, duplicate ids, a missing
    CRS or missing columns are errors.
    """
    path, m = region.outlines_path, region.manifest
    gdf = read_vector(path, m.outlines_layer, layer_hint=f"set outlines_layer in {region.root / 'region.yaml'}")
    for col in (m.id_column, m.date_column, m.group_column or m.id_column):
        if col not in gdf.columns:
            raise InputDataError(f"column {col!r} missing (columns: {list(gdf.columns)})", path=path,
                                 hint="set id_column/date_column/group_column in region.yaml")
    ids = gdf[m.id_column].astype(str)
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise InputDataError(f"duplicate glacier ids in column {m.id_column!r}: {dup[:10]}", path=path,
                             hint=DUPLICATE_ID_HINT)
    empty = ids[gdf.geometry.is_empty | gdf.geometry.isna()].tolist()
    if empty:
        raise InputDataError(f"empty geometry for glacier(s) {empty[:10]}", path=path)
    kind = gdf.geometry.geom_type
    not_polygon = ~kind.isin(["Polygon", "MultiPolygon"])
    if not_polygon.any():
        raise InputDataError(
            f"non-polygon geometry ({sorted(set(kind[not_polygon]))}) for glacier(s) {ids[not_polygon].tolist()[:10]}",
            path=path, hint="glacier outlines must be (multi)polygons")
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        warnings.warn(f"{path}: repaired {int(invalid.sum())} invalid geometries "
                      f"({ids[invalid].tolist()[:5]}...) with shapely.make_valid", stacklevel=2)
        gdf.loc[invalid, "geometry"] = gdf.geometry[invalid].apply(_polygonal_part)
    years = gdf[m.date_column].apply(inventory_year)
    bad = ids[years.isna()].tolist()
    if bad:
        raise InputDataError(f"unparseable inventory date for glacier(s) {bad[:10]}", path=path)
    return gpd.GeoDataFrame(
        {"glacier_id": ids.values, "group": gdf[m.group_column or m.id_column].astype(str).values,
         "inventory_year": years.astype(float).values},
        geometry=gdf.geometry.values, crs=gdf.crs,
    )


def _polygonal_part(geom):
    fixed = make_valid(geom)
    if isinstance(fixed, (Polygon, MultiPolygon)):
        return fixed
    polys = [g for g in getattr(fixed, "geoms", []) if isinstance(g, (Polygon, MultiPolygon))]
    return MultiPolygon([p for g in polys for p in getattr(g, "geoms", [g])])


# ---------------------------------------------------------------------------------------- rasters
def open_raster(path: Path) -> rasterio.io.DatasetReader:
    """Open a GeoTIFF, turning library errors into a clear InputDataError."""
    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioIOError as err:
        raise InputDataError(f"cannot read raster (corrupt or not a GeoTIFF): {err}", path=path) from None
    if ds.crs is None:
        ds.close()
        raise InputDataError("raster has no CRS", path=path, hint="assign one, e.g. with gdal_edit.py -a_srs")
    return ds


def band_indexes(ds: rasterio.io.DatasetReader, bands: list[str], path: Path) -> list[int]:
    """1-based indexes of named bands (by band description); error lists what the file has."""
    names = [d or f"band{i + 1}" for i, d in enumerate(ds.descriptions)]
    missing = [b for b in bands if b not in names]
    if missing:
        raise InputDataError(f"missing band(s) {missing}; the file has {names}", path=path,
                             hint="band names are read from GeoTIFF band descriptions")
    idx = [names.index(b) + 1 for b in bands]
    alpha = [names[i - 1] for i in idx if ds.colorinterp[i - 1] == ColorInterp.alpha]
    if alpha:  # GDAL would use it as a transparency mask and blank the other bands where it is low
        raise InputDataError(f"band(s) {alpha} are flagged as alpha (transparency), not data", path=path,
                             hint="rewrite the file with photometric=MINISBLACK, or set the band's colour "
                                  "interpretation to gray (rio edit-info --colorinterp)")
    return idx


def band_names(path: Path) -> list[str]:
    with open_raster(path) as ds:
        return [d or f"band{i + 1}" for i, d in enumerate(ds.descriptions)]


def read_on_grid(path: Path, bands: list[str] | None, grid: Grid, *, resampling: Resampling,
                 fill: float = np.nan) -> np.ndarray:
    """Read bands of a raster reprojected onto `grid`, touching only the window it needs.

    Returns float32 (n_bands, height, width); pixels outside the raster or nodata are `fill`.
    Raises InputDataError if the grid does not overlap the raster at all.
    """
    with open_raster(path) as src:
        idx = band_indexes(src, bands, path) if bands is not None else [1]
        if not box(*grid.bounds).intersects(raster_footprint_of(src, grid.crs)):
            raise InputDataError(f"no overlap with the requested area {grid.bounds} ({grid.crs})",
                                 path=path, hint="check that rasters and outlines cover the same place")
        try:
            with WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                           height=grid.height, resampling=resampling, src_nodata=src.nodata,
                           nodata=np.nan, dtype="float32") as vrt:
                out = vrt.read(idx)
        except rasterio.errors.RasterioError as err:  # e.g. a truncated file: the header opens, tiles do not
            raise InputDataError(f"cannot read raster data (corrupt or truncated file): {err}",
                                 path=path) from None
    if not np.isnan(fill):
        out[np.isnan(out)] = fill
    return out


def raster_footprint_of(src: rasterio.io.DatasetReader, crs: CRS) -> Polygon:
    """An open raster's bounds as a polygon in `crs` (edges densified: a true outline, not its
    bounding box, when the CRSs differ)."""
    ring = box(*src.bounds).segmentize(max(src.bounds[2] - src.bounds[0], src.bounds[3] - src.bounds[1]) / 40)
    xs, ys = transform(src.crs, crs, *ring.exterior.xy)
    return Polygon(zip(xs, ys))


def raster_footprint(path: Path, crs: CRS) -> Polygon:
    """A raster file's bounds as a polygon in `crs`."""
    with open_raster(path) as src:
        return raster_footprint_of(src, crs)


__all__ = ["Region", "Grid", "open_region", "read_outlines", "read_on_grid", "band_indexes",
           "band_names", "open_raster", "raster_footprint", "read_vector"]
