"""`glaciermap region build`: arguments and the call into `build_region`."""

from __future__ import annotations

import argparse
from pathlib import Path

from glaciermap.config.region_build import RegionBuildConfig


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `glaciermap region build`."""
    parser.add_argument("--s2", type=Path, action="append", default=[], metavar="PATH",
                        help="Sentinel-2 L2A product: .SAFE folder, .zip, or folder of band COGs with a "
                             "STAC item JSON (repeat for several)")
    parser.add_argument("--s1", type=Path, nargs="+", action="extend", default=[], metavar="PATH",
                        help="Sentinel-1 HyP3 RTC (*_VV.tif, *_VH.tif) and InSAR coherence (*_corr.tif) "
                             "files, or folders holding them")
    parser.add_argument("--dem", type=Path, nargs="+", action="extend", default=[], metavar="PATH",
                        help="DEM tiles (e.g. Copernicus GLO-30 COGs) or a folder of them, mosaicked")
    parser.add_argument("--outlines", type=Path, required=True,
                        help="inventory outlines (RGI 7.0 / 6.0 shapefile as shipped, or any vector file)")
    parser.add_argument("--out", type=Path, default=None, help="region folder to write (default: data)")
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML file with a `region_build:` section (docs/data-format.md, section 1.1)")
    parser.add_argument("--epochs-by", choices=["season", "date"], default=None,
                        help="season: one epoch per year, other products its alternates (default); "
                             "date: one epoch per acquisition date")
    parser.add_argument("--inventory-epochs", nargs="+", default=None, metavar="EPOCH",
                        help="epochs used with the outlines (default: the epoch nearest each outline's date)")
    parser.add_argument("--name", default=None, help="region name (default: the output folder's name)")
    parser.add_argument("--buffer-m", type=float, default=None,
                        help="margin around the outlines' bounding box (default 2000 m)")
    parser.add_argument("--sar-window-days", type=float, default=None,
                        help="Sentinel-1 used within +- this many days of a scene (default 12)")


def _config(args) -> RegionBuildConfig:
    """The `region_build:` section of --config (if any) with the flags on top, validated once."""
    from glaciermap.config import load_yaml, updated

    base = RegionBuildConfig.model_validate({})
    section = (load_yaml(args.config).get("region_build") or {}) if args.config is not None else {}
    flags = {"epochs_by": args.epochs_by, "inventory_epochs": args.inventory_epochs, "name": args.name,
             "buffer_m": args.buffer_m, "sar_window_days": args.sar_window_days}
    overrides = {**section, **{k: v for k, v in flags.items() if v is not None}}
    return updated(base, source=args.config or "command line", section="region_build", **overrides)


def run(args, params) -> None:
    """Build the region from the parsed arguments and print one summary line."""
    from .build import build_region

    out = args.out or params.data.raw_dir
    result = build_region(args.s2, args.outlines, out, _config(args), s1=args.s1, dem=args.dem)
    print(result.summary())
