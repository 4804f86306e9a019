"""`glaciermap train`: one (model, sensor set, fold) run, as a DVC matrix stage calls it."""

from __future__ import annotations

from pathlib import Path

from glaciermap.cli import arguments, command


@command("train", "train one model on one sensor set and fold (resumes if interrupted)")
@arguments(lambda p: (
    p.add_argument("--model", required=True, help="key under models: in params.yaml"),
    p.add_argument("--sensors", required=True, help="sensor set name (sensors.sets)"),
    p.add_argument("--fold", type=int, required=True, help="fold index"),
))
def _train(args, params):
    from glaciermap.training.run import RunSpec, train_run

    result = train_run(params, RunSpec(args.model, args.sensors, args.fold), progress=not args.quiet)
    print(f"{args.model}/{args.sensors}/fold{args.fold}: best val IoU {result['best_val_iou']:.3f} "
          f"({result['epochs']} epochs) -> {result['run_dir']}")


@command("evaluate", "test-set metrics per fold (the paper's Table 1) for one model and sensor set")
@arguments(lambda p: (
    p.add_argument("--model", required=True, help="key under models: in params.yaml"),
    p.add_argument("--sensors", required=True, help="sensor set name"),
    p.add_argument("--out", type=Path, help="JSON output (default metrics/evaluate/<model>_<sensors>.json)"),
))
def _evaluate(args, params):
    from glaciermap.analysis.evaluate import evaluate, log_evaluation
    from glaciermap.io import write_json

    result = evaluate(params, args.model, args.sensors, progress=not args.quiet)
    out = args.out or Path("metrics/evaluate") / f"{args.model}_{args.sensors}.json"
    write_json(out, result)
    log_evaluation(params, result)
    m = result["mean"]
    print(f"{args.model}/{args.sensors}: test IoU {m['iou_mean']:.3f} +- {m['iou_std']:.3f} over "
          f"{len(result['folds'])} folds -> {out}")
