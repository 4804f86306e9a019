"""Search space <-> params: sample a trial's values, turn them into a validated Params."""

from __future__ import annotations

from typing import Any

import optuna

from glaciermap.config import Params, deep_merge, parse_params
from glaciermap.config.tune import ParamSpec


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> dict[str, Any]:
    """One value per search-space key, sampled through Optuna's suggest API."""
    values: dict[str, Any] = {}
    for key, spec in space.items():
        if spec.type == "categorical":
            values[key] = trial.suggest_categorical(key, spec.choices)
        elif spec.type == "int":
            values[key] = trial.suggest_int(key, int(spec.low), int(spec.high), step=int(spec.step or 1),
                                            log=spec.log)
        else:
            values[key] = trial.suggest_float(key, spec.low, spec.high, step=spec.step, log=spec.log)
    return values


def nest(values: dict[str, Any]) -> dict[str, Any]:
    """{'train.lr': 0.1} -> {'train': {'lr': 0.1}}."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def trial_params(base: Params, values: dict[str, Any]) -> Params:
    """`base` with a trial's values applied, validated like params.yaml itself."""
    merged = deep_merge(base.model_dump(mode="json"), nest(values))
    return parse_params(merged, source=f"study {base.tune.study} (trial values {values})")


def export_overrides(params: Params, values: dict[str, Any]) -> dict[str, Any]:
    """A profile (for `glaciermap config apply` / `dvc exp run`) that trains the best trial's setup.

    Besides the tuned keys it points `train` and `infer` at the tuned model and sensor set, so
    that `dvc repro` trains, registers and infers with exactly what the study found best.
    """
    best = trial_params(params, values)
    model, sensor_set = best.tuned_run
    overrides = nest({k: v for k, v in values.items() if not k.startswith("tune.")})
    overrides = deep_merge(overrides, {"train": {"models": [model], "sensor_sets": [sensor_set]},
                                       "infer": {"model": model, "sensor_set": sensor_set}})
    return overrides
