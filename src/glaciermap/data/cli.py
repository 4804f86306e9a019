"""Commands of the data stages: simulate, ingest, folds, and the real-data region builders."""

from __future__ import annotations

from pathlib import Path

from glaciermap.commands import Command
from glaciermap.data.products import cli as products_cli


def _simulate_args(p):
    p.add_argument("--out", type=Path, help="region folder (default: data.raw_dir)")
    p.add_argument("--dem", type=Path, help="real DEM to use as terrain (any CRS)")
    p.add_argument("--outlines", type=Path, help="real outlines to use as inventory glaciers")
    p.add_argument("--seed", type=int, help="override simulate.seed")


def _simulate(args, params):
    from glaciermap.config import updated
    from glaciermap.data.simulate import simulate_region

    overrides = {k: v for k, v in {"dem_path": args.dem, "outlines_path": args.outlines,
                                   "seed": args.seed}.items() if v is not None}
    cfg = updated(params.simulate, section="simulate", **overrides)
    out = simulate_region(cfg, args.out or params.data.raw_dir, progress=not args.quiet)
    print(f"simulated region written to {out}")


def _ingest_args(p):
    p.add_argument("--raw", type=Path, help="raw region folder, or the dataset for --format (default: data.raw_dir)")
    p.add_argument("--out", type=Path, help="cubes folder (default: data.cubes_dir)")
    p.add_argument("--format", default="region", choices=["region", "dandb-netcdf", "glavitu-hdf5"],
                   help="input layout: raw region (default), Diaconu & Bamber per-glacier NetCDF, "
                        "GlaViTU tile HDF5 (docs/data-format.md, section 3)")


def _ingest(args, params):
    from glaciermap.io import check_writable

    raw, out = args.raw or params.data.raw_dir, args.out or params.data.cubes_dir
    check_writable(out, folder=True)  # before computing every cube, not at the final swap
    sets = list(dict.fromkeys([*params.train.sensor_sets, params.infer.sensor_set]))
    if args.format == "region":
        from glaciermap.data.ingest import ingest_region

        index = ingest_region(raw, out, params.data, params.sensors, sensor_sets=sets, progress=not args.quiet)
    else:
        from glaciermap.data.adapters import ingest_dataset

        index = ingest_dataset(args.format, raw, out, params.data, params.sensors, sets, progress=not args.quiet)
    from glaciermap.data.cubes import read_context

    tiles = read_context(out)
    extra = f" and {len(tiles)} context tiles" if len(tiles) else ""
    print(f"{index.glacier_id.nunique()} glaciers, {len(index)} cubes{extra} written to {out}")


def _folds(args, params):
    from glaciermap.data.cubes import read_index
    from glaciermap.data.folds import make_folds, write_folds
    from glaciermap.io import check_writable

    check_writable(params.folds.path)
    folds = make_folds(read_index(params.data.cubes_dir), params.data.cubes_dir, params.folds,
                       progress=not args.quiet)
    write_folds(params.folds.path, folds, params.folds)
    for f in folds:
        print(f"fold {f.index}: lon {f.lon_range[0]:.3f}..{f.lon_range[1]:.3f}  "
              f"train {len(f.train)}  val {len(f.val)}  test {len(f.test)}")


def _prepare_everest_args(p):
    p.add_argument("--source", type=Path, required=True,
                   help="folder with the LE7...B4/RGB GeoTIFFs and the RGI 6.0 outlines (real-everest)")
    p.add_argument("--out", type=Path, help="region folder to write (default: data.raw_dir)")


def _prepare_everest(args, params):
    from glaciermap.data.prepare_everest import prepare_everest_region

    out = prepare_everest_region(args.source, args.out or params.data.raw_dir)
    print(f"region written to {out}")


def _region_args(p):
    actions = p.add_subparsers(dest="region_action", required=True, metavar="<action>")
    products_cli.configure(actions.add_parser(
        "build", help="a raw region from downloaded products (Sentinel-2 L2A, Sentinel-1 RTC/InSAR, DEM tiles, RGI)",
        description="Write a raw region (docs/data-format.md, section 1.1) from the products users download."))


COMMANDS = [
    Command("simulate", "write a simulated multi-sensor region (the embedded demo data)", _simulate, _simulate_args),
    Command("ingest", "build one cube per glacier and epoch from a raw region or a published dataset",
            _ingest, _ingest_args),
    Command("folds", "split glaciers into geographic folds (West to East) with band statistics", _folds),
    Command("region", "build a raw region from downloaded products (`glaciermap region build --help`)",
            products_cli.run, _region_args),
    Command("prepare-everest", "build a raw region from the real Everest Landsat scene and RGI outlines",
            _prepare_everest, _prepare_everest_args),
]
