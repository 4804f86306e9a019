"""params.yaml -> typed, validated config objects (the only place raw YAML is interpreted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from glaciermap.analysis.area_change import AreaChangeConfig
from glaciermap.config_base import StrictModel
from glaciermap.data.simulate.config import SimulateConfig
from glaciermap.errors import ConfigError
from glaciermap.models.config import ModelConfig
from glaciermap.tuning.config import TuneConfig

OPTICAL_BANDS = ("B2", "B3", "B4", "B8", "B11", "B12")
SAR_BANDS = ("VV", "VH", "coh")
DEM_BANDS = ("dem", "slope", "hillshade")


class DataConfig(StrictModel):
    """Where the raw region and the derived products live, and how cubes are cut."""

    raw_dir: Path = Path("data")
    cubes_dir: Path = Path("products/cubes")
    crs: str = "auto"  # metric CRS of the cubes; "auto" = UTM zone of the region's centre
    resolution_m: float = Field(10.0, gt=0)
    buffer_m: float = Field(1280.0, ge=0)
    max_scene_cloud_fraction: float = Field(0.98, gt=0, le=1)  # above: scene rejected as all-cloud
    workers: int = Field(1, ge=1)  # processes building cubes in parallel
    # dataset adapters (`glaciermap ingest --format ...`, docs/data-format.md section 3)
    dandb_inventory_epoch: str | None = None  # dandb-netcdf: epoch folder of the inventory (None: first by name)
    glavitu_channels: dict[str, list[str]] = {  # glavitu-hdf5: band names of each dataset's channels
        "optical": ["B2", "B3", "B4", "B8", "B11", "B12"],
        "dem": ["dem", "slope"],
        "sar": ["VV", "VH"],
        "coherence": ["coh"],
    }
    glavitu_on_missing_feature: Literal["skip", "error"] = "skip"  # tile lacking a feature a sensor set needs

    @field_validator("glavitu_channels")
    @classmethod
    def _unique_channel_names(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        names = [b for bands in v.values() for b in bands]
        dup = sorted({b for b in names if names.count(b) > 1})
        if dup or any(not bands for bands in v.values()):
            raise ValueError(f"channel names must be unique and every dataset needs at least one; duplicates: {dup}")
        return v


class SensorsConfig(StrictModel):
    """Sensor groups (band names as the raw files call them) and named sensor sets."""

    groups: dict[str, list[str]] = {
        "optical": list(OPTICAL_BANDS),
        "sar": list(SAR_BANDS),
        "dem": list(DEM_BANDS),
    }
    sets: dict[str, list[str]] = {
        "optical": ["optical"],
        "optical_dem": ["optical", "dem"],
        "optical_sar": ["optical", "sar"],
        "optical_sar_dem": ["optical", "sar", "dem"],
    }

    @model_validator(mode="after")
    def _sets_use_known_groups(self) -> SensorsConfig:
        for name, groups in self.sets.items():
            unknown = [g for g in groups if g not in self.groups]
            if unknown:
                raise ValueError(
                    f"sensor set {name!r} uses unknown group(s) {unknown}; "
                    f"known groups: {sorted(self.groups)}"
                )
        return self

    def resolve(self, sensor_set: str) -> dict[str, list[str]]:
        """Ordered {group: bands} of a named sensor set."""
        if sensor_set not in self.sets:
            raise ConfigError(
                f"unknown sensor set {sensor_set!r}", hint=f"valid sets: {sorted(self.sets)}"
            )
        return {g: list(self.groups[g]) for g in self.sets[sensor_set]}

    def channels(self, sensor_set: str) -> dict[str, int]:
        """Ordered {group: channel count}, the input a model factory needs."""
        return {g: len(b) for g, b in self.resolve(sensor_set).items()}


class FoldsConfig(StrictModel):
    """Geographic cross-validation folds (West to East, balanced by glacierized area)."""

    k: int = Field(5, ge=2)
    val_fraction: float = Field(0.15, gt=0, lt=0.5)
    min_train_area_km2: float = Field(0.1, ge=0)
    seed: int = 0
    path: Path = Path("products/folds.json")


class PatchesConfig(StrictModel):
    """How patches are cut from cubes and batched."""

    size: int = Field(256, ge=32)
    eval_stride: int = Field(192, ge=8)
    samples_per_epoch: int = Field(1000, ge=1)
    val_samples: int = Field(200, ge=1)
    batch_size: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0)
    augment: bool = True

    @field_validator("size")
    @classmethod
    def _multiple_of_32(cls, v: int) -> int:
        if v % 32:
            raise ValueError(f"patch size must be a multiple of 32, got {v}")
        return v


class TrainConfig(StrictModel):
    """Which runs `dvc repro` trains, and how."""

    models: list[str] = ["unet"]
    sensor_sets: list[str] = ["optical_dem"]
    folds: list[int] = [0, 1, 2, 3, 4]
    max_epochs: int = Field(20, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    loss: Literal["bce", "dice", "focal", "bce_dice"] = "bce"
    scheduler: Literal["cosine", "plateau", "none"] = "cosine"
    early_stopping_patience: int = Field(5, ge=1)
    precision: str = "auto"  # "auto" picks bf16-mixed on GPUs that support it, else 32-true
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: str = "auto"
    seed: int = 0
    runs_dir: Path = Path("runs")
    limit_train_batches: int | float | None = None  # for smoke tests


class TrackingConfig(StrictModel):
    """MLflow: a local SQLite database by default; MLFLOW_TRACKING_URI overrides."""

    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "glaciermap"
    offline_fallback: bool = False  # if the server is down: fail fast (False) or log locally


class InferConfig(StrictModel):
    """Which registered model predicts, and how (register -> infer -> area change)."""

    model: str = "unet"
    sensor_set: str = "optical_dem"
    ensemble: bool = False
    tta: bool = False


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


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        else:
            lines.append(f"'{key}': {e['msg']}")
    return "; ".join(lines)


def parse_params(raw: dict[str, Any], *, source: str | Path = "params.yaml") -> Params:
    """Validate a params mapping into `Params`, or raise ConfigError naming the bad keys."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err), path=source,
                          hint="see params.yaml in the repository for every key") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml."""
    path = Path(path)
    if not path.exists():
        raise ConfigError("file not found", path=path, hint="run from the project root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", path=path, keep_lines=True) from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError("top level must be a mapping of sections", path=path)
    return parse_params(raw or {}, source=path)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge `override` into a copy of `base` (mappings merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
