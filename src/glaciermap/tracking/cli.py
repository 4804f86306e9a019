"""`glaciermap register`: this configuration's member runs (every fold and seed) into the MLflow Model Registry."""

from __future__ import annotations

from pathlib import Path

from glaciermap.commands import Command


def model_arguments(p):
    """--model / --sensors, defaulting to the infer section (register and infer share them)."""
    p.add_argument("--model", help="key under models: in params.yaml (default: infer.model)")
    p.add_argument("--sensors", help="sensor set name (default: infer.sensor_set)")


def _register_args(p):
    model_arguments(p)
    p.add_argument("--out", type=Path, default=Path("products/registry.json"))


def _register(args, params):
    from glaciermap.io import write_json
    from glaciermap.tracking.registry import register_runs

    result = register_runs(params, args.model or params.infer.model, args.sensors or params.infer.sensor_set)
    write_json(args.out, result)
    print(f"registered {result['name']}: " + ", ".join(f"{a} -> v{v['version']}" for a, v in result["aliases"].items())
          + f"; champion v{result['champion']}")


COMMANDS = [Command("register", "register this configuration's member runs in the MLflow Model Registry "
                                "(aliases fold-<k>[-seed-<s>], champion)", _register, _register_args)]
