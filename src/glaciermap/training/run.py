"""Train one (model, sensor set, fold, seed) run: Lightning + MLflow, resumable, exported safely.

`dvc repro` calls this once per matrix entry; `glaciermap tune` calls it once per trial (with a
pruning callback): there is one training loop in the project.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import mlflow
import torch
from filelock import FileLock, Timeout
from lightning.pytorch.callbacks import Callback, EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from glaciermap.config import Params
from glaciermap.data.datamodule import GlacierDataModule
from glaciermap.data.dhdt import BAND as DHDT_BAND, require_dhdt
from glaciermap.data.folds import Fold, read_folds
from glaciermap.device import resolve_device
from glaciermap.errors import ConfigError, GlaciermapError
from glaciermap.io import atomic_path, write_json, write_text
from glaciermap.models.serialize import CALIBRATION, ModelBundle, save_bundle
from glaciermap.testhooks import hang_at
from glaciermap.tracking import runs as tracking
from glaciermap.tracking.registry import log_model
from glaciermap.tracking.runs import (DATA_TAG, FINISHED_FILE, INPUTS_FILE, MODEL_DIR, RUN_ID_FILE, RunSpec,
                                      data_key)
from glaciermap.training.calibration import calibrate
from glaciermap.training.figures import reliability_figure, sample_predictions_figure
from glaciermap.training.task import SegmentationTask


class HistoryCSV(Callback):
    """Per-epoch metrics as CSV (for `dvc plots`), rewritten atomically during each epoch.

    The epoch's row is written when its validation ends (a sweep may prune the run right there)
    and completed when the training epoch ends, the only point where the epoch's own train_loss
    is aggregated: it sits beside its validation scores, not one row late.

    The history is kept in every path given (the DVC plot file and a copy in the run folder):
    DVC deletes a stage's outputs before re-running it, and a resumed run whose last epoch had
    ended does not validate again, so `flush` restores the plot file from the run's copy.
    """

    KEYS = ("epoch", "train_loss", "val_loss", "val_iou", "val_precision", "val_recall", "val_f1")

    def __init__(self, *paths: Path):
        self.paths = list(dict.fromkeys(Path(p) for p in paths))
        self.rows: list[dict[str, Any]] = []
        for path in self.paths:  # resumed run: keep the history written so far
            if path.exists():
                self.rows = list(csv.DictReader(path.open()))
                break

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._record(trainer, self.KEYS[2:])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, self.KEYS[1:])

    def _record(self, trainer: L.Trainer, keys: tuple[str, ...]) -> None:
        m = trainer.callback_metrics
        old = next((r for r in self.rows if int(r["epoch"]) == trainer.current_epoch), {})
        row = {**old, "epoch": trainer.current_epoch, **{k: round(float(m[k]), 6) for k in keys if k in m}}
        self.rows = [r for r in self.rows if int(r["epoch"]) != trainer.current_epoch] + [row]
        self.flush()

    def flush(self) -> None:
        for path in self.paths:
            with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=self.KEYS)
                w.writeheader()
                w.writerows(self.rows)


class TestHangPoint(Callback):
    """`GLACIERMAP_TEST_HANG_AT=epoch<k>`: stop for a test's SIGKILL as epoch k starts, so every
    earlier epoch is checkpointed and in the history (`glaciermap.testhooks`)."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        hang_at(f"epoch{trainer.current_epoch}")


def trainer_kwargs(params: Params) -> dict[str, Any]:
    """Lightning Trainer settings from params (DDP: devices / num_nodes / strategy pass through)."""
    t = params.train
    precision = t.precision
    if precision == "auto":
        precision = "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    kw = dict(max_epochs=t.max_epochs, accelerator=t.accelerator, devices=t.devices, num_nodes=t.num_nodes,
              strategy=t.strategy, precision=precision, log_every_n_steps=1)
    if t.limit_train_batches is not None:
        kw["limit_train_batches"] = t.limit_train_batches
    return kw


def make_datamodule(params: Params, spec: RunSpec) -> GlacierDataModule:
    folds = read_folds(params.folds.path)
    if not 0 <= spec.fold < len(folds):
        raise ConfigError(f"fold {spec.fold} does not exist (folds: 0..{len(folds) - 1})")
    require_dhdt(params.sensors, [spec.sensor_set], have=DHDT_BAND in folds[spec.fold].stats,
                 region_yaml=params.data.raw_dir / "region.yaml", lacking="the training cubes have no dhdt band")
    return GlacierDataModule(params.data.cubes_dir, folds[spec.fold], params.sensors.resolve(spec.sensor_set),
                             params.patches, seed=spec.rng_seed)


def make_task(params: Params, spec: RunSpec) -> SegmentationTask:
    if spec.model not in params.models:
        raise ConfigError(f"unknown model key {spec.model!r}", hint=f"defined under models: {sorted(params.models)}")
    t = params.train
    return SegmentationTask(model=params.models[spec.model].model_dump(mode="json"),
                            groups=params.sensors.channels(spec.sensor_set), loss=t.loss, lr=t.lr,
                            weight_decay=t.weight_decay, scheduler=t.scheduler, max_epochs=t.max_epochs)


def inputs_key(params: Params, spec: RunSpec, data: str) -> str:
    """Fingerprint of everything a run trains on: its params sections, its member (fold, seed) and its
    data (`data_key`); the list `train.seeds` is left out (adding a seed changes no other member)."""
    return hashlib.sha256(json.dumps({
        "model": params.models[spec.model].model_dump(mode="json"),
        "sensors": params.sensors.resolve(spec.sensor_set), "fold": spec.fold, "seed": spec.seed,
        "patches": params.patches.model_dump(mode="json"),
        "train": params.train.model_dump(mode="json", exclude={"seeds"}),
        "data": data,
    }, sort_keys=True, default=str).encode()).hexdigest()


def checkpoint_readable(path: Path) -> bool:
    """Whether a Lightning checkpoint loads (safely) and holds weights and its epoch."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated zip, bad pickle, I/O error: all mean "damaged"
        return False
    return isinstance(ckpt, dict) and "state_dict" in ckpt and "epoch" in ckpt


def set_aside(path: Path, folder: Path) -> Path:
    """Move a damaged file to `folder/<name>.damaged-<UTC time>` (kept for a look, out of the way)."""
    dst = folder / f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    path.rename(dst)
    return dst


def prepare_run_dir(run_dir: Path, key: str, extra: tuple[Path, ...] = ()) -> bool:
    """Keep an interrupted run with the same inputs (True: resume), else clear it for a fresh one.

    A finished run, or one whose inputs changed (new data, params), never resumes: its
    checkpoint, MLflow run id, history and exported model are removed, with the `extra` files
    (the DVC history plot) that belong to it. A damaged `last.ckpt` (e.g. the disk filled up while
    it was written) is set aside as `last.ckpt.damaged-<time>` with a warning, and the run starts
    afresh instead of failing on every later attempt.
    """
    stamp, last = run_dir / INPUTS_FILE, run_dir / "checkpoints" / "last.ckpt"
    if (stamp.exists() and stamp.read_text().strip() == key and not (run_dir / FINISHED_FILE).exists()
            and last.exists()):
        if checkpoint_readable(last):
            return True
        kept = set_aside(last, run_dir)
        warnings.warn(f"{last}: checkpoint is damaged (unreadable); set aside as {kept}, training afresh",
                      stacklevel=2)
    for path in (run_dir / "checkpoints", run_dir / MODEL_DIR, run_dir / RUN_ID_FILE, run_dir / FINISHED_FILE,
                 run_dir / "history.csv", *extra):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    write_text(stamp, key)
    return False


def _mlflow_run(client: MlflowClient, exp_id: str, params: Params, spec: RunSpec, fold: Fold, run_dir: Path,
                parent_id: str | None, data: str) -> tuple[str, bool]:
    """The fold's MLflow run: reused when resuming (id stored in the run folder), else created."""
    id_file = run_dir / RUN_ID_FILE
    if id_file.exists():
        run_id = id_file.read_text().strip()
        try:
            client.get_run(run_id)
            client.update_run(run_id, status="RUNNING")
            for k, v in tracking.owner_tags().items():  # this process owns it now
                client.set_tag(run_id, k, v)
            return run_id, False
        except mlflow.exceptions.MlflowException:
            pass  # tracking database was reset: start a fresh run
    if parent_id is None:
        parent_id = tracking.parent_run(client, exp_id, params, spec.model, spec.sensor_set)
    run = client.create_run(exp_id, run_name=spec.run_name,
                            tags={"mlflow.parentRunId": parent_id, **spec.tags, DATA_TAG: data,
                                  "mlflow.note.content": run_description(params, spec, fold),
                                  **tracking.source_tags(f"glaciermap train {spec.cli_args}"),
                                  **tracking.reproducibility_tags(), **tracking.owner_tags()})
    write_text(id_file, run.info.run_id)
    return run.info.run_id, True


def run_description(params: Params, spec: RunSpec, fold: Fold) -> str:
    """The fold run's description in the MLflow UI: what it is and what it was trained and tested on."""
    return (f"{spec.model} ({params.models[spec.model].name}) on {spec.sensor_set} "
            f"({', '.join(params.sensors.resolve(spec.sensor_set))}), fold {spec.fold} of {params.folds.k}: "
            f"{len(fold.train)} training, {len(fold.val)} validation and {len(fold.test)} held-out test "
            "glaciers. The best epoch by validation IoU is exported and registered; `glaciermap evaluate` "
            "logs its test metrics here, and `infer` maps the test glaciers with it.")


def train_run(params: Params, spec: RunSpec, *, progress: bool = True, callbacks: list[Callback] = (),
              parent_run_id: str | None = None, run_dir: Path | None = None,
              metrics_dir: Path | None = Path("metrics/train")) -> dict[str, Any]:
    """Train (or resume) one run; export the best model; return its metrics.

    Metrics JSON and the per-epoch history CSV go to `metrics_dir` (DVC metrics/plots), or into
    the run folder when `metrics_dir` is None. A refused run (unknown fold, model or sensor set)
    creates nothing; a run folder another trainer holds is an error (`hold_run_dir`); MLflow
    runs left RUNNING by killed trainers are closed first (`close_orphaned_runs`).
    """
    L.seed_everything(spec.rng_seed, workers=True, verbose=False)  # the model's initial weights
    dm = make_datamodule(params, spec)  # every check on the request, before anything is created
    task = make_task(params, spec)
    uri = tracking.resolve_tracking_uri(params.tracking)  # fails fast, before any compute
    client = MlflowClient(uri)
    exp_id = tracking.experiment_id(params.tracking.experiment)
    tracking.close_orphaned_runs(client, exp_id)
    run_dir = Path(run_dir or spec.run_dir(params))
    with hold_run_dir(run_dir):
        return _train_in(run_dir, params, spec, dm, task, client, exp_id, uri, progress=progress,
                         callbacks=callbacks, parent_run_id=parent_run_id, metrics_dir=metrics_dir)


@contextmanager
def hold_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold the run folder for this trainer (a lock file beside it); a second trainer is refused.

    Two trainers in one folder (e.g. `dvc repro` killed while its trainer lives on, then re-run)
    would resume the same checkpoint and log every epoch to MLflow twice.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir.with_name(f".{run_dir.name}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise GlaciermapError("another trainer is using this run folder", path=run_dir,
                              hint="wait for it to finish or stop it; then re-run") from None
    try:
        yield
    finally:
        lock.release()


def _train_in(run_dir: Path, params: Params, spec: RunSpec, dm: GlacierDataModule, task: SegmentationTask,
              client: MlflowClient, exp_id: str, uri: str, *, progress: bool, callbacks: list[Callback],
              parent_run_id: str | None, metrics_dir: Path | None) -> dict[str, Any]:
    """`train_run` once its checks passed and it holds the run folder."""
    if metrics_dir is None:
        metrics_path, history_path = run_dir / "metrics.json", run_dir / "history.csv"
    else:
        Path(metrics_dir).mkdir(parents=True, exist_ok=True)
        metrics_path = Path(metrics_dir) / f"{spec.name}.json"
        history_path = Path(metrics_dir) / f"{spec.name}_history.csv"
    data = data_key(params)
    prepare_run_dir(run_dir, inputs_key(params, spec, data), extra=(history_path,))
    run_id, new = _mlflow_run(client, exp_id, params, spec, dm.fold, run_dir, parent_run_id, data)
    if new:
        client.log_batch(run_id, params=[Param(k, v) for k, v in tracking.run_params(params, spec).items()])
    logger = MLFlowLogger(experiment_name=params.tracking.experiment, tracking_uri=uri, run_id=run_id,
                          log_model=False)
    ckpt_dir = run_dir / "checkpoints"
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val_iou", mode="max",
                                 save_last=True, enable_version_counter=False)
    history = HistoryCSV(history_path, run_dir / "history.csv")
    trainer = L.Trainer(logger=logger, enable_progress_bar=progress, enable_model_summary=False,
                        callbacks=[checkpoint, history, TestHangPoint(),
                                   EarlyStopping("val_iou", mode="max", patience=params.train.early_stopping_patience),
                                   LearningRateMonitor("epoch"), *callbacks],
                        **trainer_kwargs(params))
    last = ckpt_dir / "last.ckpt"
    try:
        trainer.fit(task, datamodule=dm, ckpt_path=last if last.exists() else None, weights_only=True)
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    if not trainer.is_global_zero:  # strategy ddp: the other ranks' copies of this command stop here
        return {}
    # the run folder's copy is the history as the training process(es) wrote it (with ddp_spawn
    # they were children: this process's callback holds only what existed before fit)
    HistoryCSV(run_dir / "history.csv", history_path).flush()
    return finish_run(client, run_id, params, spec, run_dir, task, dm, checkpoint, trainer,
                      metrics_path, history_path)


def finish_run(client: MlflowClient, run_id: str, params: Params, spec: RunSpec, run_dir: Path,
               task: SegmentationTask, dm: GlacierDataModule, checkpoint: ModelCheckpoint,
               trainer: L.Trainer, metrics_path: Path, history_path: Path) -> dict[str, Any]:
    """Export the best weights, calibrate them, write metrics, log artifacts and the registrable model.

    Calibration (`training.calibration`): the temperature fitted on the fold's validation pixels
    goes into the bundle (`model/calibration.json`, so it travels with the logged model), its
    reliability diagram into `reliability.png`; temperature and ECE before/after into the metrics.

    Then the checkpoints (weights and optimiser state, about 300 MB each for the demo's U-Net) are
    deleted: a finished run never resumes (`prepare_run_dir`) and inference reads the exported
    safetensors bundle, so they would only fill the disk and the DVC cache.
    """
    best = checkpoint.best_model_path or str(run_dir / "checkpoints" / "last.ckpt")
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    state = ckpt["state_dict"]
    task.load_state_dict(state)
    bundle = ModelBundle(model=params.models[spec.model].model_dump(mode="json"),
                         groups=params.sensors.resolve(spec.sensor_set), stats=dm.fold.stats,
                         patch_size=params.patches.size, sensor_set=spec.sensor_set, fold=spec.fold,
                         extra={"model_key": spec.model, "mlflow_run_id": run_id, "seed": spec.seed})
    save_bundle(run_dir / MODEL_DIR, task.model, bundle)
    calib = calibrate(task.model, dm, device=resolve_device("cpu" if params.train.accelerator == "cpu" else "auto"))
    write_json(run_dir / MODEL_DIR / CALIBRATION, calib)
    reliability = reliability_figure(calib, run_dir / "reliability.png")
    score = checkpoint.best_model_score
    if score is None:  # trained in spawned ranks: the score is in the checkpoint's callback state
        score = next((v.get("best_model_score") for k, v in ckpt.get("callbacks", {}).items()
                      if k.startswith("ModelCheckpoint")), None)
    best_iou = float(score) if score is not None else float("nan")
    calib_metrics = {k: calib[k] for k in ("temperature", "ece_before", "ece_after")}
    metrics = {"best_val_iou": best_iou, "epochs": trainer.current_epoch, **calib_metrics,
               "fold": spec.fold, "seed": spec.seed, "model": spec.model, "sensor_set": spec.sensor_set}
    write_json(metrics_path, metrics)
    for k, v in {"best_val_iou": best_iou, **calib_metrics}.items():
        client.log_metric(run_id, k, v)
    fig_path = sample_predictions_figure(task.model, dm, run_dir / "samples.png")
    for p in (metrics_path, history_path, fig_path, reliability):
        if p.exists():
            client.log_artifact(run_id, str(p))
    client.log_text(run_id, json.dumps(params.model_dump(mode="json"), indent=2, default=str), "params.json")
    log_model(run_id, run_dir / MODEL_DIR, spec.model_name)
    client.set_terminated(run_id, status="FINISHED")
    parent = client.get_run(run_id).data.tags.get("mlflow.parentRunId")
    if parent:
        tracking.touch_parent(client, parent)
    (run_dir / FINISHED_FILE).touch()
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return {**metrics, "run_id": run_id, "run_dir": str(run_dir)}
