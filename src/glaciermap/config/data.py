"""Settings of the data stages: raw region and cubes, sensor groups and sets, folds, patches."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from glaciermap.config.base import StrictModel
from glaciermap.errors import ConfigError

OPTICAL_BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")
SAR_BANDS = ("VV", "VH", "coh")
DEM_BANDS = ("dem", "slope", "hillshade")
#: surface elevation change (m/yr, negative = thinning): the `dhdt` group of a region with a dh/dt map
DHDT_BANDS = ("dhdt",)


class DataConfig(StrictModel):
    """Where the raw region and the derived products live, and how cubes are cut."""

    raw_dir: Path = Path("data")
    cubes_dir: Path = Path("products/cubes")
    crs: str = "auto"  # metric CRS of the cubes; "auto" = UTM zone of the region's centre
    resolution_m: float = Field(10.0, gt=0)
    buffer_m: float = Field(1280.0, ge=0)
    # context tiles (glaciermap.data.context): the region beyond the glacier cubes cut into squares of
    # this side, their pixels inside any glacier cube masked, for training patches of the ground far
    # from the ice (`patches.context_centres`); 0 = none
    context_tile_m: float = Field(0.0, ge=0)
    max_scene_cloud_fraction: float = Field(0.98, gt=0, le=1)  # above: scene rejected as all-cloud
    workers: int = Field(1, ge=1)  # processes building cubes in parallel
    # each glacier is mapped from its epoch's clearest acquisition (DL4GAM); with fill_gaps, the
    # optical pixels that one leaves masked (cloud, shadow, no data) come from the epoch's other
    # acquisitions, clearest first: a pixel stays masked only where every acquisition masks it
    fill_gaps: bool = False
    # DEM voids (no-data, NaN, sentinels such as -9999 / -32768 / zeros in high terrain, spikes and
    # pits): "fill" interpolates them from their neighbours, "mask" leaves them NaN and marks them
    # in the cube's mask_dem_void (invalid wherever a sensor set uses the dem group)
    dem_voids: Literal["fill", "mask"] = "fill"
    # SAR layover and radar shadow (NaN in VV, VH and coherence): "keep" leaves them NaN, which the
    # model sees as each band's mean (0 after normalisation) and maps as glacier on rock walls far
    # more often than elsewhere; "fill" interpolates them from their neighbours (rasterio
    # fillnodata, as DEM voids), so a shadowed rock wall looks like the rock around it
    sar_voids: Literal["fill", "keep"] = "keep"
    # dh/dt voids (NaN, nodata, |dh/dt| > 50 m/yr): "fill" interpolates them from their neighbours,
    # "mask" leaves them NaN and marks them in mask_dhdt_void (invalid where a set uses the dhdt group)
    dhdt_voids: Literal["fill", "mask"] = "fill"
    # write each cube's `mask_other_date` layer: 1 inside the outlines inventoried at another epoch
    # than the cube's image (inventories mix years); `patches.neighbour_margin_of: other_date` uses it
    mark_other_date_outlines: bool = False
    # outlines crossing the edge of a scene or of the DEM: "skip" leaves them out; "keep" keeps those
    # with at least `min_coverage` of their area covered (the rest is no data, masked invalid).
    # Every outline left out is listed in <cubes_dir>/skipped.csv
    edge_policy: Literal["skip", "keep"] = "skip"
    min_coverage: float = Field(0.9, gt=0, le=1)
    # dataset adapters (`glaciermap ingest --format ...`, docs/data-format.md section 3)
    dandb_inventory_epoch: str | None = None  # dandb-netcdf: epoch folder of the inventory (None: first by name)
    glavitu_channels: dict[str, list[str]] = {  # glavitu-hdf5: band names of each dataset's channels
        "optical": ["B2", "B3", "B4", "B8", "B11", "B12"],
        "dem": ["dem", "slope"],
        "sar": ["VV", "VH"],  # this project's variant
        "coherence": ["coh"],
        "co_pol_sar": ["VV"],  # the published dataset's names for the same bands
        "cross_pol_sar": ["VH"],
        "in_sar": ["coh"],
    }
    glavitu_on_missing_feature: Literal["skip", "error"] = "skip"  # tile lacking a feature a sensor set needs

    @field_validator("glavitu_channels")
    @classmethod
    def _unique_channel_names(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        """Names are unique within a dataset; two datasets may name the same band (alternative
        layouts, e.g. `sar` or `co_pol_sar` for VV): a tile holding both is an error at ingest."""
        dup = {d: sorted({b for b in bands if bands.count(b) > 1}) for d, bands in v.items()}
        dup = {d: bs for d, bs in dup.items() if bs}
        if dup or any(not bands for bands in v.values()):
            raise ValueError(f"channel names must be unique within a dataset and every dataset needs at least "
                             f"one; duplicates: {dup}")
        return v


class SensorsConfig(StrictModel):
    """Sensor groups (band names as the raw files call them) and named sensor sets."""

    groups: dict[str, list[str]] = {
        "optical": list(OPTICAL_BANDS),
        "sar": list(SAR_BANDS),
        "dem": list(DEM_BANDS),
    }
    sets: dict[str, list[str]] = {
        "optical": ["optical"],
        "optical_dem": ["optical", "dem"],
        "optical_sar": ["optical", "sar"],
        "optical_sar_dem": ["optical", "sar", "dem"],
    }

    @model_validator(mode="after")
    def _sets_use_known_groups(self) -> SensorsConfig:
        if "dhdt" in self.groups and self.groups["dhdt"] != list(DHDT_BANDS):
            raise ValueError(f"sensor group 'dhdt' is the one band {list(DHDT_BANDS)} (a region's dh/dt map), "
                             f"got {self.groups['dhdt']}")
        for name, groups in self.sets.items():
            unknown = [g for g in groups if g not in self.groups]
            if unknown:
                raise ValueError(
                    f"sensor set {name!r} uses unknown group(s) {unknown}; "
                    f"known groups: {sorted(self.groups)}"
                )
        return self

    def resolve(self, sensor_set: str) -> dict[str, list[str]]:
        """Ordered {group: bands} of a named sensor set."""
        if sensor_set not in self.sets:
            raise ConfigError(
                f"unknown sensor set {sensor_set!r}", hint=f"valid sets: {sorted(self.sets)}"
            )
        return {g: list(self.groups[g]) for g in self.sets[sensor_set]}

    def channels(self, sensor_set: str) -> dict[str, int]:
        """Ordered {group: channel count}, the input a model factory needs."""
        return {g: len(b) for g, b in self.resolve(sensor_set).items()}


class FoldsConfig(StrictModel):
    """Cross-validation folds: geographic (West to East, balanced by glacierized area; a glacier's
    divides, one `group` in the cube index, stay in one fold), or the dataset's published split."""

    method: Literal["geographic", "published"] = "geographic"  # published: one fold from index.csv `split`
    k: int = Field(5, ge=2)  # geographic folds (ignored by `published`)
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    min_train_area_km2: float = Field(0.1, ge=0)
    seed: int = 0
    path: Path = Path("products/folds.json")


class PatchesConfig(StrictModel):
    """How patches are cut from cubes and batched."""

    size: int = Field(256, ge=32)
    eval_stride: int = Field(192, ge=8)
    samples_per_epoch: int = Field(1000, ge=1)
    val_samples: int = Field(200, ge=1)
    batch_size: int = Field(8, ge=1)
    num_workers: int | Literal["auto"] = "auto"  # auto: 0 on CPU, up to 8 persistent workers with CUDA
    augment: bool = True
    # where training patches are centred (GlacierPatches): these shares of the centres fall on the
    # glacier's debris-covered ice (cubes with a debris mask; others use glacier pixels) and on its
    # margin (pixels within margin_px of its outline, inside or out) and on the cube's valid ground off
    # every outline (background: what is mistaken for ice far from it); the rest on any glacier pixel
    debris_centres: float = Field(0.0, ge=0, le=1)
    margin_centres: float = Field(0.0, ge=0, le=1)
    margin_px: int = Field(16, ge=1)
    background_centres: float = Field(0.0, ge=0, le=1)
    # and this share on the ground of a context tile (the region beyond every glacier cube, written by
    # ingest with data.context_tile_m > 0): terrain that lies nowhere near the training glaciers
    context_centres: float = Field(0.0, ge=0, le=1)
    # training labels within this many pixels of another glacier's outline (inside or out, not on
    # the cube's own glacier) are left out of the loss: a neighbour's outline may be of another date
    # than the image (`ignore_neighbour_margins`); 0 = off.
    # Measured at 3 px with context tiles: seed 7's rate error under 0.3 %/yr, the demo's worse (README)
    neighbour_margin_px: int = Field(0, ge=0)
    # whose outlines: "all" other glaciers', or "other_date" only those inventoried at another epoch
    # than the image (the cubes' mask_other_date layer: data.mark_other_date_outlines; cubes without
    # it, such as a dataset adapter's, keep every label, with a warning).
    # Measured at 3 px with context tiles: every rate error within 0.3 %/yr, debris IoU lower (README)
    neighbour_margin_of: Literal["all", "other_date"] = "all"
    # photometric augmentation of training patches (`Photometric`; 0 = off): each patch's optical
    # bands times exp(U(-illumination, illumination)), its SAR backscatter (dB) plus
    # U(-backscatter_db, backscatter_db); coherence, DEM and dh/dt unchanged
    illumination: float = Field(0.0, ge=0, le=1)
    backscatter_db: float = Field(0.0, ge=0, le=10)
    # sensor-group dropout (modality dropout; GlacierPatches): with this probability a training patch
    # loses one of its sensor groups, drawn uniformly, marked absent as a missing sensor is (the models
    # zero its channels: the training mean), so that no group decides alone; 0 = off, no effect with
    # one group.
    # Measured worse on the demo and debris-heavy regions (README: tried and not adopted)
    group_dropout: float = Field(0.0, ge=0, lt=1)
    # training batches as float16 image + uint8 masks, restored on the device: auto = with CUDA
    compact_batches: Literal["auto", "on", "off"] = "auto"

    @model_validator(mode="after")
    def _centre_shares(self) -> "PatchesConfig":
        shares = (self.debris_centres, self.margin_centres, self.background_centres, self.context_centres)
        if sum(shares) > 1:
            raise ValueError("debris_centres + margin_centres + background_centres + context_centres must be at "
                             f"most 1, got {' + '.join(str(s) for s in shares)}")
        return self

    @field_validator("size")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"patch size must be a multiple of 32, got {v}")
        return v
