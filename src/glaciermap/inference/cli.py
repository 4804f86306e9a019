"""`glaciermap register` and `glaciermap infer`."""

from __future__ import annotations

from pathlib import Path

from glaciermap.cli import arguments, command


def _model_args(p):
    p.add_argument("--model", help="key under models: in params.yaml (default: infer.model)")
    p.add_argument("--sensors", help="sensor set name (default: infer.sensor_set)")


@command("register", "register each fold's best run in the MLflow Model Registry (aliases fold-<k>, champion)")
@arguments(lambda p: (_model_args(p), p.add_argument("--out", type=Path, default=Path("products/registry.json"))))
def _register(args, params):
    from glaciermap.inference.registry import register_best
    from glaciermap.io import write_json

    result = register_best(params, args.model or params.infer.model, args.sensors or params.infer.sensor_set)
    write_json(args.out, result)
    print(f"registered {result['name']}: " + ", ".join(f"{a} -> v{v['version']}" for a, v in result["aliases"].items())
          + f"; champion v{result['champion']}")


@command("infer", "predict every glacier and epoch with the registered fold models")
@arguments(lambda p: (
    _model_args(p),
    p.add_argument("--out", type=Path, default=Path("products/predictions")),
    p.add_argument("--ensemble", action="store_true", default=None,
                   help="average all fold models, spread = uncertainty (default: infer.ensemble)"),
    p.add_argument("--tta", action="store_true", default=None, help="flip test-time augmentation (default: infer.tta)"),
))
def _infer(args, params):
    from glaciermap.inference.run import infer

    cfg = params.infer
    table = infer(params, args.model or cfg.model, args.sensors or cfg.sensor_set, args.out,
                  ensemble=cfg.ensemble if args.ensemble is None else args.ensemble,
                  tta=cfg.tta if args.tta is None else args.tta, progress=not args.quiet)
    print(f"{len(table)} glaciers predicted -> {args.out}")
