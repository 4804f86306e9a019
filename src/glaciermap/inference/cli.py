"""`glaciermap infer`: each glacier and epoch mapped by the registered members of the fold that held it out."""

from __future__ import annotations

from pathlib import Path

from glaciermap.commands import Command
from glaciermap.tracking.cli import model_arguments


def _infer_args(p):
    model_arguments(p)
    p.add_argument("--out", type=Path, default=Path("products/predictions"))
    p.add_argument("--tta", action="store_true", default=None, help="flip test-time augmentation (default: infer.tta)")
    p.add_argument("--device", help="auto, cpu or cuda[:N] (default: infer.device)")


def _infer(args, params):
    from glaciermap.config import updated
    from glaciermap.inference.run import infer
    from glaciermap.io import check_writable

    check_writable(args.out, folder=True)
    overrides = {k: v for k, v in {"tta": args.tta, "device": args.device}.items() if v is not None}
    cfg = updated(params.infer, section="infer", **overrides)
    params = updated(params, infer=cfg)
    table = infer(params, args.model or cfg.model, args.sensors or cfg.sensor_set, args.out, progress=not args.quiet)
    print(f"{len(table)} glaciers predicted -> {args.out}")


COMMANDS = [Command("infer", "predict every glacier and epoch with the registered members of its held-out fold",
                    _infer, _infer_args)]
