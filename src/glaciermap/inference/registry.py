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


def load_model_uri(model_uri: str):
    """(model, bundle) of a logged/registered model URI, loaded safely from its bundle."""
    with tempfile.TemporaryDirectory(prefix="glaciermap-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))
        meta = next((local / "artifacts").rglob("model.json"), None)
        if meta is None:
            raise FileNotFoundError(f"{model_uri} holds no glaciermap bundle")
        return load_bundle(meta.parent)


def registered_name(model: str, sensor_set: str) -> str:
    """One registered model per (model, sensor set)."""
    return f"glaciermap-{model}-{sensor_set}"


def register_best(params, model: str, sensor_set: str) -> dict:
    """Register each fold's best run (by best_val_iou) and set aliases fold-<k> and champion.

    Only runs trained on the current cubes and folds compete (tag `glaciermap.data`): a run of
    older data may have scored higher on its own validation set but is not a model of this data.
    """
    from mlflow.tracking import MlflowClient

    from glaciermap.errors import GlaciermapError
    from glaciermap.training import tracking
    from glaciermap.training.run import DATA_TAG, data_key

    client = MlflowClient(tracking.resolve_tracking_uri(params.tracking))
    exp_id = tracking.experiment_id(params.tracking.experiment)
    name = registered_name(model, sensor_set)
    versions, best = {}, None
    data = data_key(params)
    for fold in params.train.folds:
        runs = client.search_runs(
            [exp_id], filter_string=(f"tags.`glaciermap.model` = '{model}' and tags.`glaciermap.sensor_set` = "
                                     f"'{sensor_set}' and tags.`glaciermap.fold` = '{fold}' and "
                                     f"tags.`{DATA_TAG}` = '{data}' and attributes.status = 'FINISHED'"),
            order_by=["metrics.best_val_iou DESC"], max_results=1)
        if not runs:
            raise GlaciermapError(f"no finished run for {model}/{sensor_set} fold {fold} trained on the "
                                  f"current cubes and folds in MLflow",
                                  hint="run `dvc repro` (train stages) first")
        run = runs[0]
        mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", name,
                                   tags={"fold": str(fold), "run_id": run.info.run_id})
        client.set_registered_model_alias(name, f"fold-{fold}", mv.version)
        iou = run.data.metrics.get("best_val_iou", float("nan"))
        versions[f"fold-{fold}"] = {"version": int(mv.version), "run_id": run.info.run_id, "best_val_iou": iou}
        if best is None or iou > best[1]:
            best = (mv.version, iou)
    client.set_registered_model_alias(name, "champion", best[0])
    return {"name": name, "aliases": versions, "champion": int(best[0])}


def load_registered(name: str, alias: str):
    """(model, bundle) for models:/NAME@ALIAS, rebuilt from config and safetensors weights."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from glaciermap.errors import GlaciermapError

    try:
        MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as err:
        raise GlaciermapError(f"registered model {name!r} has no alias {alias!r} ({err.message.splitlines()[0]})",
                              hint="run `glaciermap register` first, or check the name and alias") from None
    return load_model_uri(f"models:/{name}@{alias}")
