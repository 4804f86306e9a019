"""Settings of the area-change analysis (the `area_change:` section; paper defaults)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from glaciermap.config.base import StrictModel


class AreaChangeConfig(StrictModel):
    """Filters and options of the area-change analysis (paper defaults)."""

    min_recall: float = Field(0.75, ge=0, le=1)  # inventory-year test recall below: excluded
    max_masked_frac: float = Field(0.2, ge=0, le=1)  # cloud/no-data fraction above (either epoch)
    correct_masked: bool = True  # scale masked glaciers up with the visible-part recall
    drop_extreme_frac: float = Field(0.05, ge=0, lt=0.5)  # two-sided, around the median rate
    min_area_km2: float = Field(0.1, ge=0)  # inventory (outline) area below: excluded
    # |rate| below min_snr * sigma(rate): excluded, the change is not resolved (DL4GAM: 1); 0 = off
    min_snr: float = Field(0.0, ge=0)
    # DL4GAM's stricter quality filter (0.9) on the same inventory-year recall as min_recall, flagged
    # apart so that the reason column tells the paper's filter from this one; None = off
    min_inventory_recall: float | None = Field(None, ge=0, le=1)
    # the ice the model misses in the inventory year, M0 = outline area - predicted area (module
    # glaciermap.analysis.area_change): "proportional" = DL4GAM's recall correction (the same share
    # of the glacier missed in both epochs); "uniform" = the share g of M0 gone by the recent epoch
    # is unknown, g ~ U(0, 1): change - M0 / 2 +- M0 / sqrt(12), rates relative to the outline area
    missed_ice: Literal["proportional", "uniform"] = "proportional"
    # the uncertainty model's three numbers (module glaciermap.analysis.area_change), all fitted on the
    # simulated validity regions (benchmarks/validity.py, README); the defaults take the bands as they are:
    # sigma_scale multiplies every glacier's sigma from its bands and missed ice. The band between the
    # p = 0.16 and 0.84 contours moves a glacier's whole boundary at once, which overstates one glacier's
    # error; fitted on the true rates of the kept glaciers
    sigma_scale: float = Field(1.0, gt=0)
    # correlation of the glaciers' band errors in the regional sigma: 0 = independent, 1 = all aligned
    band_correlation: float = Field(0.0, ge=0, le=1)
    # a regional error no glacier's band shows (%/yr, added in quadrature to the regional and region-wide
    # sigma): errors one model makes on every glacier of a region alike (fresh forefield mapped as ice,
    # the fate of the ice it misses) and which glaciers the filters keep; fitted on the regional errors
    discrepancy_pct_per_yr: float = Field(0.0, ge=0)
