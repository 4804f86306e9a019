"""params.yaml -> typed, validated config objects (the only place raw YAML is interpreted).

Each section's settings live in a leaf module of this package that imports none of the stage's
logic (no torch, rasterio, geopandas or scipy): importing `glaciermap.config` stays cheap, and
every layer can depend on it.

    data.py         DataConfig, SensorsConfig, FoldsConfig, PatchesConfig, band names
    simulate.py     SimulateConfig
    models.py       ModelConfig, GlaViTUConfig, model and encoder name checks
    training.py     TrainConfig, TrackingConfig, InferConfig
    tune.py         TuneConfig, ParamSpec
    area_change.py  AreaChangeConfig
    trace.py        which settings a command reads (for the test of dvc.yaml's params; off by default)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError, model_validator

from glaciermap.config.area_change import AreaChangeConfig
from glaciermap.config.base import StrictModel, format_validation_error, load_yaml, updated
from glaciermap.config.data import (DEM_BANDS, DHDT_BANDS, OPTICAL_BANDS, SAR_BANDS, DataConfig, FoldsConfig,
                                    PatchesConfig, SensorsConfig)
from glaciermap.config.models import GlaViTUConfig, ModelConfig
from glaciermap.config.simulate import SimulateConfig
from glaciermap.config.training import InferConfig, TrackingConfig, TrainConfig
from glaciermap.config.tune import ParamSpec, TuneConfig
from glaciermap.errors import ConfigError

__all__ = ["DEM_BANDS", "DHDT_BANDS", "OPTICAL_BANDS", "SAR_BANDS", "AreaChangeConfig", "DataConfig", "FoldsConfig",
           "GlaViTUConfig", "InferConfig", "ModelConfig", "ParamSpec", "Params", "PatchesConfig",
           "SensorsConfig", "SimulateConfig", "StrictModel", "TrackingConfig", "TrainConfig", "TuneConfig",
           "deep_merge", "load_params", "load_yaml", "parse_params", "updated"]


class Params(StrictModel):
    """Everything in params.yaml."""

    simulate: SimulateConfig = SimulateConfig()
    data: DataConfig = DataConfig()
    sensors: SensorsConfig = SensorsConfig()
    folds: FoldsConfig = FoldsConfig()
    patches: PatchesConfig = PatchesConfig()
    models: dict[str, ModelConfig] = {"unet": ModelConfig()}
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()
    infer: InferConfig = InferConfig()
    area_change: AreaChangeConfig = AreaChangeConfig()
    tune: TuneConfig = TuneConfig()

    @model_validator(mode="after")
    def _train_names_exist(self) -> Params:
        for m in self.train.models:
            if m not in self.models:
                raise ValueError(f"train.models names {m!r}, not defined under models: {sorted(self.models)}")
        for s in self.train.sensor_sets:
            if s not in self.sensors.sets:
                raise ValueError(
                    f"train.sensor_sets names {s!r}, not defined under sensors.sets: {sorted(self.sensors.sets)}"
                )
        if self.infer.model not in self.train.models or self.infer.sensor_set not in self.train.sensor_sets:
            raise ValueError(f"infer uses {self.infer.model}/{self.infer.sensor_set}, which train.models / "
                             "train.sensor_sets do not train")
        bad = [f for f in self.train.folds if not 0 <= f < self.folds.k]
        if bad:
            raise ValueError(f"train.folds {bad} outside 0..{self.folds.k - 1} (folds.k = {self.folds.k})")
        if (self.patches.neighbour_margin_px and self.patches.neighbour_margin_of == "other_date"
                and not self.data.mark_other_date_outlines):
            raise ValueError("patches.neighbour_margin_of: other_date needs the cubes' mask_other_date layer: "
                             "set data.mark_other_date_outlines: true")
        self._check_tune()
        return self

    @property
    def tuned_run(self) -> tuple[str, str]:
        """(model, sensor set) that `glaciermap tune` trains: tune.* if set, else the first of train.*."""
        return self.tune.model or self.train.models[0], self.tune.sensor_set or self.train.sensor_sets[0]

    def _check_tune(self) -> None:
        t = self.tune
        models = list(t.space["tune.model"].choices) if "tune.model" in t.space else [self.tuned_run[0]]
        sets = list(t.space["tune.sensor_set"].choices) if "tune.sensor_set" in t.space else [self.tuned_run[1]]
        if unknown := [m for m in models if m not in self.models]:
            raise ValueError(f"tune uses model(s) {unknown}, not defined under models: {sorted(self.models)}")
        if unknown := [s for s in sets if s not in self.sensors.sets]:
            raise ValueError(f"tune uses sensor set(s) {unknown}, not defined under sensors.sets: "
                             f"{sorted(self.sensors.sets)}")
        if bad := [f for f in t.folds if not 0 <= f < self.folds.k]:
            raise ValueError(f"tune.folds {bad} outside 0..{self.folds.k - 1} (folds.k = {self.folds.k})")
        tree = self.model_dump()
        for key in t.space:
            node: Any = tree
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    raise ValueError(f"tune.space key {key!r} is not a parameter (use a dotted path such "
                                     "as train.lr or models.unet.encoder)")
                node = node[part]
            if isinstance(node, dict):
                raise ValueError(f"tune.space key {key!r} names a section, not a parameter")


def parse_params(raw: dict[str, Any], *, source: str | Path = "params.yaml") -> Params:
    """Validate a params mapping into `Params`, or raise ConfigError naming the bad keys."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err), path=source,
                          hint="see params.yaml in the repository for every key") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    return parse_params(load_yaml(path), source=path)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `override` into a copy of `base` (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
