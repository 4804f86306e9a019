"""MLflow Model Registry: log a trained bundle, register the best per fold, load by alias."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

from glaciermap.models.serialize import load_bundle

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
log = logging.getLogger(__name__)


def signature(channels: int) -> ModelSignature:
    """Any batch and any H, W (multiples of 32): only the channel count is fixed."""
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, channels, -1, -1))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, -1, -1))]))


def log_model(run_id: str, bundle_dir: Path) -> None:
    """Log the bundle as an MLflow pyfunc model under the run (weights stay safetensors)."""
    _, bundle = load_bundle(bundle_dir)
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        mlflow.pyfunc.log_model(name="model", python_model=str(PYFUNC_CODE),
                                artifacts={"bundle": str(bundle_dir)},
                                signature=signature(sum(bundle.channels.values())),
                                pip_requirements=["glaciermap"])


def download_bundle(model_uri: str) -> Path:
    """Fetch a registered model's bundle folder (e.g. models:/unet-optical_dem@fold-3)."""
    local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tempfile.mkdtemp(prefix="glaciermap-")))
    return local / "artifacts" / "bundle"
