"""Fold members: log a trained bundle to MLflow, register this configuration's runs, load them.

Each fold has an ensemble of members, one per seed of `train.seeds`. "A fold's member" has one
source of truth: the run folder `runs/<model>/<sensor set>/fold<k>-seed<s>` that training wrote
for the current params (`RunSpec`). `register` puts exactly those runs in the Model Registry
(aliases `member_alias`: fold-<k> for seed 0, fold-<k>-seed-<s> otherwise; `champion`);
`evaluate` reads the same bundles from the run folders, `infer` through the registry. A run that
is unfinished, or that trained on other cubes or folds, is an error: never an older run that
happens to score higher (a `dvc exp run` that retrains must map with the models it trained).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import Schema, TensorSpec

from glaciermap.config import Params
from glaciermap.device import compiled
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


#: MLflow's advice for models that give neither: ours gives its signature explicitly (any batch, H
#: and W), and an input example would be a whole cube in every run's artifacts
_MLFLOW_ADVICE = ("Add type hints to the `predict` method", "An input example was not provided")


def log_model(run_id: str, bundle_dir: Path, name: str) -> None:
    """Log the bundle as an MLflow pyfunc model `name` under the run (weights stay safetensors)."""
    _, bundle = load_bundle(bundle_dir)
    # recorded and passed on, less the advice (a filter would not do: loading the model's code
    # puts filters of its own in front)
    with mlflow.start_run(run_id=run_id, log_system_metrics=False), warnings.catch_warnings(record=True) as said:
        mlflow.pyfunc.log_model(name=name, python_model=str(PYFUNC_CODE),
                                artifacts={"bundle": str(bundle_dir)},
                                signature=signature(sum(bundle.channels.values())),
                                pip_requirements=["glaciermap"])
    for w in said:
        if not any(advice in str(w.message) for advice in _MLFLOW_ADVICE):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


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


def member_alias(fold: int, seed: int) -> str:
    """The registry alias of a fold's member: fold-<k> for seed 0 (the single-model alias of
    old), fold-<k>-seed-<s> otherwise."""
    return f"fold-{fold}" if seed == 0 else f"fold-{fold}-seed-{seed}"


def pipeline_run_id(params: Params, spec: RunSpec, client) -> str:
    """The MLflow run that trained `spec`'s run folder for the current cubes and folds, or an error."""
    run_dir = spec.run_dir(params)
    id_file = run_dir / RUN_ID_FILE
    if not (run_dir / FINISHED_FILE).exists() or not id_file.exists():
        raise GlaciermapError(f"no finished training run for {spec.model}/{spec.sensor_set} fold {spec.fold} "
                              f"seed {spec.seed}",
                              path=run_dir, hint="run `dvc repro` (the train stages) first")
    run_id = id_file.read_text().strip()
    try:
        run = client.get_run(run_id)
    except mlflow.exceptions.MlflowException:
        raise GlaciermapError(f"MLflow run {run_id} of this run folder is not in the tracking store",
                              path=id_file, hint="the tracking database was reset: re-train this fold") from None
    if run.data.tags.get(DATA_TAG) != data_key(params):
        raise GlaciermapError(f"the run of {spec.model}/{spec.sensor_set} fold {spec.fold} seed {spec.seed} trained on "
                              "other cubes or folds than the current ones", path=run_dir,
                              hint="re-run `dvc repro` so that training sees the current data")
    if run.info.status != "FINISHED":
        raise GlaciermapError(f"MLflow run {run_id} is {run.info.status}, not FINISHED", path=id_file,
                              hint="finish training this fold (`dvc repro`)")
    return run_id


def register_runs(params: Params, model: str, sensor_set: str) -> dict[str, Any]:
    """Register every member's pipeline run (the one in its run folder: each fold of `train.folds`
    times each seed of `train.seeds`) and set its alias (`member_alias`) and `champion`. The
    champion is the member with the best validation IoU, and says so (its version's description
    and tag `champion_reason`); it serves single-model use (the pyfunc model), never infer."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(runs.resolve_tracking_uri(params.tracking))
    name = registered_name(model, sensor_set)
    versions, best = {}, None
    for fold in params.train.folds:
        for seed in params.train.seeds:
            spec = RunSpec(model, sensor_set, fold, seed)
            run_id = pipeline_run_id(params, spec, client)
            iou = client.get_run(run_id).data.metrics.get("best_val_iou", float("nan"))
            alias = member_alias(fold, seed)
            mv = mlflow.register_model(f"runs:/{run_id}/{spec.model_name}", name,
                                       tags={"fold": str(fold), "seed": str(seed), "run_id": run_id,
                                             "best_val_iou": f"{iou:.4f}"})
            client.set_registered_model_alias(name, alias, mv.version)
            versions[alias] = {"version": int(mv.version), "run_id": run_id, "fold": fold, "seed": seed,
                               "best_val_iou": iou}
            if best is None or iou > best[1]:
                best = (mv.version, iou, alias)
    n_folds, n_seeds = len(params.train.folds), len(params.train.seeds)
    reason = (f"highest validation IoU ({best[1]:.4f}, {best[2]}) among the {len(versions)} members "
              f"({n_folds} fold{'s' * (n_folds > 1)} x {n_seeds} seed{'s' * (n_seeds > 1)}); infer still maps "
              "each glacier with the members of the fold that held it out, never with the champion")
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
                ) -> dict[int, list[tuple[Any, ModelBundle]]]:
    """{fold: [(model, bundle) per member, in `train.seeds` order]} for every fold of `train.folds`:
    the bundles of this configuration's run folders, or (`registry`) the registered versions
    (aliases `member_alias`, set by `register`). A missing member is an error naming its alias or
    run folder. With `infer.compile` each model is `torch.compile`d (infer, evaluate, benchmark)."""
    if registry:
        runs.resolve_tracking_uri(params.tracking)
        name = registered_name(model, sensor_set)
        loaded = {f: [load_registered(name, member_alias(f, s)) for s in params.train.seeds] for f in params.train.folds}
    else:
        loaded = {f: [member_bundle(params, RunSpec(model, sensor_set, f, s)) for s in params.train.seeds]
                  for f in params.train.folds}
    return {f: [(compiled(m, params.infer.compile), b) for m, b in members] for f, members in loaded.items()}


def member_bundle(params: Params, spec: RunSpec) -> tuple[Any, ModelBundle]:
    """(model, bundle) of a member's run folder, or an error naming the folder."""
    if not spec.model_dir(params).is_dir():
        raise GlaciermapError(f"no trained model for {spec.model}/{spec.sensor_set} fold {spec.fold} seed "
                              f"{spec.seed}", path=spec.run_dir(params),
                              hint="train every seed of train.seeds for every fold (`dvc repro`)")
    return load_bundle(spec.model_dir(params))
