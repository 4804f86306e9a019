"""`glaciermap <stage>`: one subcommand per pipeline stage (each has --help)."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from glaciermap.errors import GlaciermapError

log = logging.getLogger("glaciermap")

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str, help: str):
    """Register a subcommand: the decorated function receives (args, params)."""

    def wrap(fn):
        COMMANDS[name] = (help, getattr(fn, "_configure", lambda p: None), fn)
        return fn

    return wrap


def arguments(configure: Callable[[argparse.ArgumentParser], None]):
    def wrap(fn):
        fn._configure = configure
        return fn

    return wrap


# ------------------------------------------------------------------------------------ data stages
@command("simulate", "write a simulated multi-sensor region (the embedded demo data)")
@arguments(lambda p: (
    p.add_argument("--out", type=Path, help="region folder (default: data.raw_dir)"),
    p.add_argument("--dem", type=Path, help="real DEM to use as terrain (any CRS)"),
    p.add_argument("--outlines", type=Path, help="real outlines to use as inventory glaciers"),
    p.add_argument("--seed", type=int, help="override simulate.seed"),
))
def _simulate(args, params):
    from glaciermap.data.simulate import simulate_region

    overrides = {k: v for k, v in {"dem_path": args.dem, "outlines_path": args.outlines,
                                   "seed": args.seed}.items() if v is not None}
    cfg = params.simulate.model_copy(update=overrides)
    out = simulate_region(cfg, args.out or params.data.raw_dir, progress=not args.quiet)
    print(f"simulated region written to {out}")


@command("ingest", "build one cube per glacier and epoch from a raw region or a published dataset")
@arguments(lambda p: (
    p.add_argument("--raw", type=Path, help="raw region folder, or the dataset for --format "
                                            "(default: data.raw_dir)"),
    p.add_argument("--out", type=Path, help="cubes folder (default: data.cubes_dir)"),
    p.add_argument("--format", default="region", choices=["region", "dandb-netcdf", "glavitu-hdf5"],
                   help="input layout: raw region (default), Diaconu & Bamber per-glacier NetCDF, "
                        "GlaViTU tile HDF5 (docs/data-format.md, section 3)"),
))
def _ingest(args, params):
    if args.format == "region":
        from glaciermap.data.ingest import ingest_region

        index = ingest_region(args.raw or params.data.raw_dir, args.out or params.data.cubes_dir,
                              params.data, params.sensors, progress=not args.quiet)
    else:
        from glaciermap.data.adapters import ingest_dataset

        sets = list(dict.fromkeys([*params.train.sensor_sets, params.infer.sensor_set]))
        index = ingest_dataset(args.format, args.raw or params.data.raw_dir, args.out or params.data.cubes_dir,
                               params.data, params.sensors, sets, progress=not args.quiet)
    print(f"{index.glacier_id.nunique()} glaciers, {len(index)} cubes written to "
          f"{args.out or params.data.cubes_dir}")


@command("folds", "split glaciers into geographic folds (West to East) with band statistics")
def _folds(args, params):
    from glaciermap.data.cubes import read_index
    from glaciermap.data.folds import make_folds, write_folds

    folds = make_folds(read_index(params.data.cubes_dir), params.data.cubes_dir, params.folds,
                       progress=not args.quiet)
    write_folds(params.folds.path, folds, params.folds)
    for f in folds:
        print(f"fold {f.index}: lon {f.lon_range[0]:.3f}..{f.lon_range[1]:.3f}  "
              f"train {len(f.train)}  val {len(f.val)}  test {len(f.test)}")


@command("config", "apply a profile/experiment YAML over params.yaml (validated before writing)")
@arguments(lambda p: (
    p.add_argument("action", choices=["apply", "show"]),
    p.add_argument("overrides", nargs="?", type=Path, help="YAML to merge (for apply)"),
))
def _config(args, params):
    import yaml

    from glaciermap.config import deep_merge, parse_params
    from glaciermap.errors import ConfigError
    from glaciermap.io import write_text

    if args.action == "show":
        print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
        return
    if args.overrides is None or not args.overrides.exists():
        raise ConfigError("overrides file missing", path=args.overrides)
    try:
        overrides = yaml.safe_load(args.overrides.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", path=args.overrides, keep_lines=True) from None
    if not isinstance(overrides, dict):
        raise ConfigError("top level must be a mapping of sections", path=args.overrides)
    merged = deep_merge(yaml.safe_load(args.params.read_text()) or {}, overrides)
    parse_params(merged, source=args.overrides)  # reject before writing anything
    write_text(args.params, yaml.safe_dump(merged, sort_keys=False))
    print(f"applied {args.overrides} to {args.params}")


# -------------------------------------------------------------------------------------- plumbing
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glaciermap", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for name, (help_text, configure, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        configure(p)
        p.set_defaults(func=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `glaciermap` console script."""
    _register_later_stages()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # GDAL's / OGR's chatter (logged at INFO) would bury the one-line error
        for name in ("rasterio", "pyogrio"):
            logging.getLogger(name).setLevel(logging.WARNING)
    warnings.formatwarning = lambda msg, cat, *a, **k: f"warning: {msg}\n"
    try:
        from glaciermap.config import load_params

        params = load_params(args.params)
        args.func(args, params)
    except GlaciermapError as err:
        if args.verbose:
            raise
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: outputs written so far are complete; re-run to continue", file=sys.stderr)
        return 130
    return 0


def _register_later_stages() -> None:
    """Stages that live in their own modules register themselves on import."""
    import glaciermap.analysis.cli  # noqa: F401
    import glaciermap.inference.cli  # noqa: F401
    import glaciermap.training.cli  # noqa: F401
    import glaciermap.tuning.cli  # noqa: F401


if __name__ == "__main__":
    sys.exit(main())
