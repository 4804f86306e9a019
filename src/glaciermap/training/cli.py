"""`glaciermap train`: one (model, sensor set, fold) run, as a DVC matrix stage calls it."""

from __future__ import annotations

from glaciermap.commands import Command


def _train_args(p):
    p.add_argument("--model", required=True, help="key under models: in params.yaml")
    p.add_argument("--sensors", required=True, help="sensor set name (sensors.sets)")
    p.add_argument("--fold", type=int, required=True, help="fold index")


def _train(args, params):
    from glaciermap.tracking.runs import RunSpec
    from glaciermap.training.run import train_run

    result = train_run(params, RunSpec(args.model, args.sensors, args.fold), progress=not args.quiet)
    print(f"{args.model}/{args.sensors}/fold{args.fold}: best val IoU {result['best_val_iou']:.3f} "
          f"({result['epochs']} epochs) -> {result['run_dir']}")


COMMANDS = [Command("train", "train one model on one sensor set and fold (resumes if interrupted)", _train, _train_args)]
