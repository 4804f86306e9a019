"""Settings of the scene simulator (the `simulate:` section of params.yaml)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from glaciermap.config.base import StrictModel

#: peak memory of `simulate` ~ MEMORY_BASE_BYTES + MEMORY_BYTES_PER_PIXEL * scene pixels. Measured
#: (peak RSS, ru_maxrss) on procedural regions at 10 m with SAR: 6x4 km 322 MiB, 12x8 km 436 MiB,
#: 24x16 km 819 MiB, 40x30 km 1654 MiB, i.e. 107-139 B per extra pixel; 150 leaves a margin.
MEMORY_BASE_BYTES = 320 * 2**20
MEMORY_BYTES_PER_PIXEL = 150


def estimated_memory_bytes(width_px: int | float, height_px: int | float) -> float:
    """Peak memory `simulate` needs for a scene of width x height pixels (see MEMORY_BYTES_PER_PIXEL)."""
    return MEMORY_BASE_BYTES + MEMORY_BYTES_PER_PIXEL * float(width_px) * float(height_px)


def memory_problem(width_px: int | float, height_px: int | float, limit_gib: float) -> str | None:
    """Why a scene does not fit `limit_gib` (with the estimate), or None when it fits."""
    need = estimated_memory_bytes(width_px, height_px) / 2**30
    if need <= limit_gib:
        return None
    return (f"a {width_px:.0f} x {height_px:.0f} px scene needs about {need:.1f} GiB of memory "
            f"(~{MEMORY_BYTES_PER_PIXEL} bytes per pixel), more than max_memory_gib = {limit_gib:g}; "
            "make the region smaller or resolution_m coarser, or raise max_memory_gib on a larger machine")


class SimulateConfig(StrictModel):
    """A simulated multi-sensor region with known glacier outlines and known retreat.

    Region: `width_km` x `height_km` around (`center_lon`, `center_lat`) in `crs`. With a real
    `dem_path` and none of centre / width / height set explicitly, the region is the DEM's whole
    extent; if any of them is set, it is that box, clipped to the DEM.
    """

    seed: int = 42
    name: str = "demo-alps"
    crs: str = "EPSG:32632"
    center_lon: float = Field(10.75, ge=-180, le=180)
    center_lat: float = Field(46.8, ge=-84, le=84)
    width_km: float = Field(12.0, gt=0, le=200)
    height_km: float = Field(8.0, gt=0, le=200)
    resolution_m: float = Field(10.0, gt=0)
    dem_resolution_m: float = Field(30.0, gt=0)
    sar_resolution_m: float = Field(20.0, gt=0)
    dem_path: Path | None = None
    outlines_path: Path | None = None
    outlines_id_column: str | None = None  # real outlines: id column (None: glacier_id, rgi_id, RGIId, ...)
    n_glaciers: int = Field(25, ge=1, le=5000)
    ela_m: float = Field(2900.0, gt=0)
    inventory_years: list[int] = [2015, 2016]
    recent_year: int = 2023
    regional_rate_pct_per_yr: float = Field(-1.8, gt=-10, le=0)
    debris_fraction: float = Field(0.3, ge=0, le=1)
    cloud_cover: float = Field(0.08, ge=0, le=0.8)
    # acquisitions per epoch, `revisit_days` apart: same ice, own clouds, gains, noise and SAR;
    # ingest maps each glacier from the one that masks least of it (DL4GAM's best-scene choice)
    acquisitions_per_epoch: int = Field(1, ge=1, le=6)
    revisit_days: int = Field(5, ge=1, le=30)
    sar: bool = True
    sun_elevation_deg: float = Field(45.0, gt=5, le=90)
    sun_azimuth_deg: float = Field(150.0, ge=0, lt=360)
    noise: float = Field(0.01, ge=0, le=0.2)
    # dhdt.tif: surface elevation change (m/yr, negative = thinning) over `dhdt_period` (None: the 15
    # years before the first inventory year, e.g. 2000-2015), at `dhdt_resolution_m` (Hugonnet et al.
    # 2021: 100 m), with noise of `dhdt_noise` m/yr (1 sigma) on flat stable ground, more on slopes
    dhdt: bool = True
    dhdt_resolution_m: float = Field(100.0, gt=0)
    dhdt_period: tuple[int, int] | None = None
    dhdt_noise: float = Field(0.25, ge=0, le=5)
    # refuse regions whose estimated peak memory exceeds this (16 GiB: fits a 24 GiB machine)
    max_memory_gib: float = Field(16.0, gt=0)

    @field_validator("inventory_years")
    @classmethod
    def _years_sorted_unique(cls, v: list[int]) -> list[int]:
        if not v:
            raise ValueError("inventory_years must list at least one year")
        if sorted(set(v)) != list(v):
            raise ValueError(f"inventory_years must be increasing and unique, got {v}")
        if not all(1980 <= y <= 2100 for y in v):
            raise ValueError(f"inventory_years out of range 1980..2100: {v}")
        return v

    @field_validator("crs")
    @classmethod
    def _crs_valid(cls, v: str) -> str:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            crs = CRS.from_user_input(v)
        except CRSError as err:
            raise ValueError(f"invalid crs {v!r}: {err}") from None
        if not crs.is_projected:
            raise ValueError(f"crs must be a projected (metric) CRS, got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> SimulateConfig:
        if self.recent_year <= self.inventory_years[-1]:
            raise ValueError(f"recent_year ({self.recent_year}) must be after the last inventory year "
                             f"({self.inventory_years[-1]})")
        if self.recent_year > 2100:
            raise ValueError("recent_year must be <= 2100")
        if self.dhdt_period is not None and not self.dhdt_period[0] < self.dhdt_period[1]:
            raise ValueError(f"dhdt_period must be [start year, end year] with start < end, got "
                             f"{list(self.dhdt_period)}")
        px = self.width_km * 1000 / self.resolution_m * self.height_km * 1000 / self.resolution_m
        if px < 64 * 64:
            raise ValueError("region too small: need at least 64 x 64 pixels at resolution_m")
        if self.dem_path is None or self.explicit_box:  # else the DEM's extent decides (checked then)
            problem = memory_problem(self.width_km * 1000 / self.resolution_m,
                                     self.height_km * 1000 / self.resolution_m, self.max_memory_gib)
            if problem:
                raise ValueError(problem)
        return self

    @property
    def dhdt_years(self) -> tuple[int, int]:
        """The period dhdt.tif describes: `dhdt_period`, or the 15 years before the first inventory year."""
        return self.dhdt_period or (self.inventory_years[0] - 15, self.inventory_years[0])

    @property
    def explicit_box(self) -> bool:
        """Whether the centre or size of the region was set explicitly (matters with a real DEM)."""
        return bool({"center_lon", "center_lat", "width_km", "height_km"} & self.model_fields_set)
