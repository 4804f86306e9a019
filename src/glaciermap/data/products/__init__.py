"""Standard products (Sentinel-2 L2A, Sentinel-1 HyP3 RTC / InSAR, DEM tiles, RGI outlines) ->
a raw region (docs/data-format.md, section 1.1: `glaciermap region build`)."""

from glaciermap.config.region_build import DEFAULT_SCL_TO_CLOUD, RegionBuildConfig

__all__ = ["RegionBuildConfig", "DEFAULT_SCL_TO_CLOUD", "build_region"]


def build_region(*args, **kwargs):
    """See glaciermap.data.products.build.build_region (imported lazily: it pulls in GDAL)."""
    from .build import build_region as _build

    return _build(*args, **kwargs)
