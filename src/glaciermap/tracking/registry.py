"""Fold models: log a trained bundle to MLflow, register this configuration's fold runs, load them.

"The fold's model" has one source of truth: the run folder `runs/<model>/<sensor set>/fold<k>`
that training wrote for the current params (`RunSpec`). `register` puts exactly those runs in the
Model Registry (aliases `fold-<k>`, `champion`); `evaluate` reads the same bundles from the run
folders, `infer` through the registry. A run that is unfinished, or that trained on other cubes
or folds, is an error: never an older run that happens to score higher (a `dvc exp run` that
retrains must map with the models it trained).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

from glaciermap.config import Params
from glaciermap.errors import GlaciermapError
from glaciermap.models.serialize import ModelBundle, load_bundle
from glaciermap.tracking import runs
from glaciermap.tracking.runs import DATA_TAG, FINISHED_FILE, RUN_ID_FILE, RunSpec, data_key

PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")
log = logging.getLogger(__name__)


def signature(channels: int) -> ModelSignature:
    """Any batch and any H, W: only the channel count is fixed (the served model windows the input)."""
    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, channels, -1, -1))]),
                          outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 1, -1, -1))]))


def log_model(run_id: str, bundle_dir: Path, name: str) -> None:
    """Log the bundle as an MLflow pyfunc model `name` under the run (weights stay safetensors)."""
    _, bundle = load_bundle(bundle_dir)
    with mlflow.start_run(run_id=run_id, log_system_metrics=False):
        mlflow.pyfunc.log_model(name=name, python_model=str(PYFUNC_CODE),
                                artifacts={"bundle": str(bundle_dir)},
                                signature=signature(sum(bundle.channels.values())),
                                pip_requirements=["glaciermap"])


def load_model_uri(model_uri: str):
    """(model, bundle) of a logged/registered model URI, loaded safely from its bundle."""
    with tempfile.TemporaryDirectory(prefix="glaciermap-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))
        meta = next((local / "artifacts").rglob("model.json"), None)
        if meta is None:
            raise GlaciermapError(f"{model_uri} holds no glaciermap bundle",
                                  hint="register models trained by `glaciermap train`")
        model, bundle = load_bundle(meta.parent)
        bundle.source = model_uri  # errors name the URI (alias), not a temporary download folder
        return model, bundle


def registered_name(model: str, sensor_set: str) -> str:
    """One registered model per (model, sensor set)."""
    return f"glaciermap-{model}-{sensor_set}"


def pipeline_run_id(params: Params, spec: RunSpec, client) -> str:
    """The MLflow run that trained `spec`'s run folder for the current cubes and folds, or an error."""
    run_dir = spec.run_dir(params)
    id_file = run_dir / RUN_ID_FILE
    if not (run_dir / FINISHED_FILE).exists() or not id_file.exists():
        raise GlaciermapError(f"no finished training run for {spec.model}/{spec.sensor_set} fold {spec.fold}",
                              path=run_dir, hint="run `dvc repro` (the train stages) first")
    run_id = id_file.read_text().strip()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise GlaciermapError(f"MLflow run {run_id} of this run folder is not in the tracking store",
                              path=id_file, hint="the tracking database was reset: re-train this fold") from None
    if run.data.tags.get(DATA_TAG) != data_key(params):
        raise GlaciermapError(f"the run of {spec.model}/{spec.sensor_set} fold {spec.fold} trained on other cubes "
                              "or folds than the current ones", path=run_dir,
                              hint="re-run `dvc repro` so that training sees the current data")
    if run.info.status != "FINISHED":
        raise GlaciermapError(f"MLflow run {run_id} is {run.info.status}, not FINISHED", path=id_file,
                              hint="finish training this fold (`dvc repro`)")
    return run_id


def register_runs(params: Params, model: str, sensor_set: str) -> dict[str, Any]:
    """Register each fold's pipeline run (the one in its run folder) and set aliases fold-<k> and
    champion. The champion is the fold model with the best validation IoU, and says so (its
    version's description and tag `champion_reason`)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(runs.resolve_tracking_uri(params.tracking))
    name = registered_name(model, sensor_set)
    versions, best = {}, None
    for fold in params.train.folds:
        spec = RunSpec(model, sensor_set, fold)
        run_id = pipeline_run_id(params, spec, client)
        iou = client.get_run(run_id).data.metrics.get("best_val_iou", float("nan"))
        mv = mlflow.register_model(f"runs:/{run_id}/{spec.model_name}", name,
                                   tags={"fold": str(fold), "run_id": run_id, "best_val_iou": f"{iou:.4f}"})
        client.set_registered_model_alias(name, f"fold-{fold}", mv.version)
        versions[f"fold-{fold}"] = {"version": int(mv.version), "run_id": run_id, "best_val_iou": iou}
        if best is None or iou > best[1]:
            best = (mv.version, iou, fold)
    reason = (f"highest validation IoU ({best[1]:.4f}, fold {best[2]}) among the {len(versions)} fold models; "
              "each glacier is still mapped by the fold model that held it out (alias fold-<k>)")
    client.set_registered_model_alias(name, "champion", best[0])
    client.set_model_version_tag(name, best[0], "champion_reason", reason)
    client.update_model_version(name, best[0], description=f"Champion: {reason}.")
    return {"name": name, "aliases": versions, "champion": int(best[0]), "champion_reason": reason}


def load_registered(name: str, alias: str):
    """(model, bundle) for models:/NAME@ALIAS, rebuilt from config and safetensors weights."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as err:
        raise GlaciermapError(f"registered model {name!r} has no alias {alias!r} ({err.message.splitlines()[0]})",
                              hint="run `glaciermap register` first, or check the name and alias") from None
    return load_model_uri(f"models:/{name}@{alias}")


def fold_models(params: Params, model: str, sensor_set: str, *, registry: bool = False
                ) -> dict[int, tuple[Any, ModelBundle]]:
    """{fold: (model, bundle)} for every fold of `train.folds`: the bundles of this configuration's
    run folders, or (`registry`) the registered versions (aliases fold-<k>, set by `register`)."""
    if registry:
        runs.resolve_tracking_uri(params.tracking)
        name = registered_name(model, sensor_set)
        return {f: load_registered(name, f"fold-{f}") for f in params.train.folds}
    return {f: load_bundle(RunSpec(model, sensor_set, f).model_dir(params)) for f in params.train.folds}
