"""`glaciermap <stage>`: one subcommand per pipeline stage (each has --help).

The table below lists every command; each stage's `cli.py` (beside its code) defines its own.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import warnings
from pathlib import Path

from glaciermap.analysis import cli as analysis_cli
from glaciermap.commands import Command
from glaciermap.data import cli as data_cli
from glaciermap.errors import GlaciermapError, user_error
from glaciermap.inference import cli as inference_cli
from glaciermap.tracking import cli as tracking_cli
from glaciermap.training import cli as training_cli
from glaciermap.tuning import cli as tuning_cli

log = logging.getLogger("glaciermap")


# ----------------------------------------------------------------------------- params profiles
def _config_args(p):
    p.add_argument("action", choices=["apply", "show"])
    p.add_argument("overrides", nargs="?", type=Path, help="YAML to merge (for apply)")


def _config(args, params):
    import yaml

    from glaciermap.config import deep_merge, load_yaml, parse_params
    from glaciermap.errors import ConfigError
    from glaciermap.io import write_text

    if args.action == "show":
        print(yaml.safe_dump(params.model_dump(mode="json"), sort_keys=False))
        return
    if args.overrides is None or not args.overrides.exists():
        raise ConfigError("overrides file missing", path=args.overrides)
    merged = deep_merge(load_yaml(args.params), load_yaml(args.overrides))
    parse_params(merged, source=args.overrides)  # reject before writing anything
    write_text(args.params, yaml.safe_dump(merged, sort_keys=False))
    print(f"applied {args.overrides} to {args.params}")


#: every subcommand, in the order `glaciermap --help` lists them (each stage's own cli.py defines its)
COMMANDS: list[Command] = [
    *data_cli.COMMANDS, *training_cli.COMMANDS, *tracking_cli.COMMANDS, *inference_cli.COMMANDS,
    *analysis_cli.COMMANDS, *tuning_cli.COMMANDS,
    Command("config", "apply a profile/experiment YAML over params.yaml (validated before writing)",
            _config, _config_args),
]


# -------------------------------------------------------------------------------------- plumbing
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="glaciermap", description=__doc__)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for cmd in COMMANDS:
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(func=cmd.run)
    return parser


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def format_warning(message, category, *args, **kwargs) -> str:
    """`warning: <message>`, without the ANSI colour codes some libraries (MLflow) put in theirs."""
    return f"warning: {_ANSI.sub('', str(message))}\n"


def _quiet(verbose: bool, quiet: bool) -> None:
    """Library chatter off: GDAL's / OGR's INFO logs (they would bury the one-line error) and,
    with -q, Lightning's device lines and product tips and MLflow's download progress bars."""
    if not verbose:
        for name in ("rasterio", "pyogrio"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if quiet:  # Lightning resets its package loggers' levels on import: quiet the ones that speak
        for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `glaciermap` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    _quiet(args.verbose, args.quiet)
    warnings.formatwarning = format_warning
    try:
        from glaciermap.config import load_params
        from glaciermap.config.trace import trace_reads

        params = load_params(args.params)
        with trace_reads(params, sys.argv[1:] if argv is None else list(argv)):
            args.func(args, params)
    except Exception as exc:
        err = exc if isinstance(exc, GlaciermapError) else user_error(exc)
        if err is None or args.verbose:
            raise
        print(f"error: {err.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: outputs written so far are complete; re-run to continue", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
