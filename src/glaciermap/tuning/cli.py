"""`glaciermap tune`: run (or join, or resume) an Optuna study; export its best params as a profile."""

from __future__ import annotations

from pathlib import Path

from glaciermap.commands import Command


def _tune_args(p):
    p.add_argument("--n-trials", type=int, help="the study's total trial budget (default tune.n_trials); "
                                                 "0: run nothing, just report/export")
    p.add_argument("--timeout", type=float, help="this worker's time budget in seconds (default tune.timeout_s)")
    p.add_argument("--study", help="study name (default tune.study)")
    p.add_argument("--storage", help="sqlite:///f.db, postgresql://..., or journal:<file> (default tune.storage)")
    p.add_argument("--export", type=Path, help="write the best trial's params as a profile YAML "
                                               "(apply with `glaciermap config apply`)")


def _tune(args, params):
    import yaml

    from glaciermap.config import updated
    from glaciermap.errors import ConfigError
    from glaciermap.io import write_text
    from glaciermap.tuning.report import summary
    from glaciermap.tuning.space import export_overrides
    from glaciermap.tuning.study import run_worker

    if args.n_trials is not None and args.n_trials < 0:
        raise ConfigError(f"--n-trials must be >= 0, got {args.n_trials}")
    overrides = {k: v for k, v in {"study": args.study, "storage": args.storage}.items() if v}
    params = updated(params, tune=updated(params.tune, section="tune", **overrides))
    study = run_worker(params, n_trials=args.n_trials, timeout_s=args.timeout, progress=not args.quiet)
    info = summary(study)
    counts = ", ".join(f"{n} {s}" for s, n in info["trials"].items() if n)
    print(f"study {study.study_name}: {counts or 'no trials'}")
    if "best_value" not in info:
        if args.export:
            raise ConfigError("no completed trial yet: nothing to export", path=args.export)
        return
    print(f"best: trial {info['best_trial']}, val IoU {info['best_value']:.4f}, params {info['best_params']}")
    if args.export:
        profile = export_overrides(params, info["best_params"])
        header = (f"# Best trial {info['best_trial']} of study {study.study_name} (mean val IoU "
                  f"{info['best_value']:.4f}).\n# Apply: glaciermap config apply {args.export}\n")
        write_text(args.export, header + yaml.safe_dump(profile, sort_keys=False))
        print(f"best params written to {args.export}")


COMMANDS = [Command("tune", "hyperparameter sweep with Optuna (pruned, resumable; many workers may share one storage)",
                    _tune, _tune_args)]
