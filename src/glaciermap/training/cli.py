"""`glaciermap train`: one (model, sensor set, fold, seed) run, as a DVC matrix stage calls it."""

from __future__ import annotations

from glaciermap.commands import Command


def _train_args(p):
    p.add_argument("--model", required=True, help="key under models: in params.yaml")
    p.add_argument("--sensors", required=True, help="sensor set name (sensors.sets)")
    p.add_argument("--fold", type=int, required=True, help="fold index")
    p.add_argument("--seed", type=int, help="ensemble member's seed (default: the first of train.seeds)")


def _train(args, params):
    from glaciermap.tracking.runs import RunSpec
    from glaciermap.training.run import train_run

    seed = params.train.seeds[0] if args.seed is None else args.seed
    result = train_run(params, RunSpec(args.model, args.sensors, args.fold, seed), progress=not args.quiet)
    print(f"{args.model}/{args.sensors}/fold{args.fold} seed {seed}: best val IoU {result['best_val_iou']:.3f} "
          f"({result['epochs']} epochs) -> {result['run_dir']}")


COMMANDS = [Command("train", "train one model on one sensor set, fold and seed (resumes if interrupted)",
                    _train, _train_args)]
