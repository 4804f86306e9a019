"""The `tune:` section of params.yaml: the study, its storage, budget and search space."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from glaciermap.config.base import StrictModel


class ParamSpec(StrictModel):
    """One dimension of the search space (Optuna's suggest_float / suggest_int / suggest_categorical)."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _complete(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if any(not isinstance(c, (str, int, float, bool)) and c is not None for c in self.choices):
                raise ValueError("categorical choices must be strings, numbers, booleans or null")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs 'low' and 'high'")
        if not self.low < self.high:
            raise ValueError(f"'low' ({self.low}) must be below 'high' ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log-scale parameter needs 'low' > 0")
        if self.log and self.step is not None:
            raise ValueError("'step' and 'log' cannot be combined (Optuna forbids it)")
        return self


def _default_space() -> dict[str, ParamSpec]:
    return {
        "train.lr": ParamSpec(type="float", low=1e-4, high=1e-2, log=True),
        "train.weight_decay": ParamSpec(type="float", low=1e-6, high=1e-2, log=True),
        "train.loss": ParamSpec(type="categorical", choices=["bce", "dice", "bce_dice"]),
    }


class TuneConfig(StrictModel):
    """An Optuna study: every trial trains through `train_run`; objective = mean val IoU over folds.

    Search-space keys are dotted paths into params.yaml (`train.lr`, `patches.batch_size`,
    `models.unet.encoder`, `models.glavitu.glavitu.depth`, ...); `tune.model` and
    `tune.sensor_set` tune the architecture and the sensor set themselves.
    """

    study: str = "glaciermap"
    storage: str = "sqlite:///optuna.db"  # any SQLAlchemy URL, or journal:<file> for Optuna's journal storage
    model: str | None = None  # key under models: (None: the first of train.models)
    sensor_set: str | None = None  # sensor set (None: the first of train.sensor_sets)
    folds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    n_trials: int = Field(20, ge=1)  # the study's total (over all workers, across restarts)
    timeout_s: float | None = Field(None, gt=0)  # per worker: no trial starts or runs past it
    sampler: Literal["tpe", "random"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"
    pruner_warmup_epochs: int = Field(1, ge=0)  # median pruner: never prune before this epoch
    startup_trials: int = Field(2, ge=0)  # median pruner: trials completed before pruning starts
    heartbeat_s: int = Field(60, ge=1)  # RDB storage: a trial silent for 2x this is failed and retried
    max_retries: int = Field(1, ge=0)  # how often a trial failed by a crash is retried
    seed: int | None = None  # fixes a single worker's sampling; workers sharing a seed sample the same values
    runs_dir: Path = Path("runs/tune")
    space: dict[str, ParamSpec] = Field(default_factory=_default_space)
