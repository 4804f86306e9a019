"""Settings of `glaciermap region build` (the `region_build:` section of an optional YAML file).

This module imports nothing but pydantic, the standard library and glaciermap.config.base, so the
params loader can include it without pulling in GDAL.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from glaciermap.config.base import StrictModel

#: Sentinel-2 L2A scene classification (SCL) class -> `cloud.tif` code (0 clear, 1 cloud,
#: 2 cloud shadow, 255 no data). Classes not listed are clear. SCL classes: 0 no data,
#: 1 saturated or defective, 2 dark area pixels (topographic shadow), 3 cloud shadow,
#: 4 vegetation, 5 not vegetated, 6 water, 7 unclassified, 8 cloud medium probability,
#: 9 cloud high probability, 10 thin cirrus, 11 snow / ice. Snow / ice (11) stays clear: glaciers
#: are snow and ice. Dark area pixels (2) stay clear: in the Alps they are mostly terrain shadow.
DEFAULT_SCL_TO_CLOUD: dict[int, int] = {0: 255, 1: 255, 3: 2, 8: 1, 9: 1, 10: 1}
CLOUD_CODES = (0, 1, 2, 255)


class RegionBuildConfig(StrictModel):
    """How standard products become a raw region (docs/data-format.md, section 1.1)."""

    name: str | None = None  # region name in region.yaml (None: the output folder's name)
    epochs_by: Literal["season", "date"] = "season"
    # season: the Sentinel-2 products of one year are one epoch (named by the year), the others its
    # alternates; date: every acquisition date is its own epoch (named YYYY-MM-DD)
    scl_to_cloud: dict[int, int] = Field(default_factory=lambda: dict(DEFAULT_SCL_TO_CLOUD))
    inventory_epochs: list[str] | None = None  # None: the epoch nearest each outline's date
    buffer_m: float | None = Field(2000.0, ge=0)  # region = outlines' bounding box + buffer, clipped
    # to the Sentinel-2 products; None: the products' whole extent
    resolution_m: float = Field(10.0, gt=0)  # optical.tif / cloud.tif pixel size
    sar_resolution_m: float = Field(20.0, gt=0)  # sar.tif pixel size
    dem_resolution_m: float = Field(30.0, gt=0)  # dem.tif pixel size
    sar_window_days: float = Field(12.0, ge=0)  # Sentinel-1 used within +- this many days of a scene
    id_column: str | None = None  # outlines' id column (None: rgi_id, RGIId, glacier_id, ... found by name)
    date_column: str | None = None  # outlines' date column (None: src_date, BgnDate, date, ... by name)
    block_rows: int = Field(512, ge=256)  # rows read and written at a time (memory ~ rows x width)
    gdal_cache_mb: int = Field(256, ge=16)  # GDAL block cache while building (counts in the RSS)

    @field_validator("scl_to_cloud")
    @classmethod
    def _valid_codes(cls, v: dict[int, int]) -> dict[int, int]:
        bad_class = sorted(k for k in v if not 0 <= k <= 255)
        bad_code = sorted({c for c in v.values() if c not in CLOUD_CODES})
        if bad_class or bad_code:
            raise ValueError(f"SCL classes must be 0..255 (got {bad_class}) and codes one of "
                             f"{list(CLOUD_CODES)} (got {bad_code})")
        return v
