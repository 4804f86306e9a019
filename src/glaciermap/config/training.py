"""Settings of training, tracking and inference (the train:, tracking: and infer: sections)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from glaciermap.config.base import StrictModel

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
    # ensemble members per fold: one run per (fold, seed), Lightning seed 1000 * seed + fold
    seeds: list[int] = Field([0], min_length=1)
    runs_dir: Path = Path("runs")
    limit_train_batches: int | float | None = None  # for smoke tests

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v) or min(v) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers, got {v}")
        return v


class TrackingConfig(StrictModel):
    """MLflow: a local SQLite database by default; MLFLOW_TRACKING_URI overrides."""

    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "glaciermap"
    offline_fallback: bool = False  # if the server is down: fail fast (False) or log locally


class InferConfig(StrictModel):
    """Which registered model predicts, and how (register -> infer -> area change; evaluate and the
    served model run on the same device settings). A glacier is always mapped by the members
    (`train.seeds`) of the fold that held it out, never by a model that trained on it."""

    model: str = "unet"
    sensor_set: str = "optical_dem"
    tta: bool = False
    device: str = "auto"  # auto (a CUDA GPU when torch sees one), cpu, cuda, cuda:1, ...
    precision: Literal["auto", "bf16", "32"] = "auto"  # auto: bf16 autocast where the device supports it
    batch_size: int | None = Field(None, ge=1)  # windows per forward pass (None: patches.batch_size)
    compile: bool = False  # torch.compile the models (GPU: ~1.7x the U-Net's patches/s; a one-off compile per shape)
    # many devices: Lightning Trainer.predict deals the cubes out to devices x num_nodes ranks
    devices: int = Field(1, ge=1)
    num_nodes: int = Field(1, ge=1)
    strategy: str = "ddp_spawn"  # with devices > 1: ddp_spawn (one command) or ddp (torchrun / a cluster launcher)

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if v != "auto" and v != "cpu" and not re.fullmatch(r"cuda(:\d+)?", v):
            raise ValueError(f"device must be auto, cpu or cuda[:N], got {v!r}")
        return v
