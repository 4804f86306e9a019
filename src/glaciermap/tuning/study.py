"""Run an Optuna study: storage, sampler, pruner, and the objective that calls `train_run`.

Many `glaciermap tune` processes may point at one storage: they share the trial budget
(`tune.n_trials` counts the study's trials, not a process's), never run a trial twice, and a
restarted process continues the study. Trials orphaned by a killed process are failed (RDB:
heartbeat; journal file: the owning process is gone) and retried once with the same values.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import optuna
from mlflow.tracking import MlflowClient
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState
from optuna_integration import PyTorchLightningPruningCallback

from glaciermap.config import Params
from glaciermap.errors import ConfigError
from glaciermap.io import pid_alive
from glaciermap.tracking import runs as tracking
from glaciermap.tracking.runs import RunSpec
from glaciermap.training.run import train_run
from glaciermap.training.task import NonFiniteLossError
from glaciermap.config.tune import TuneConfig
from glaciermap.tuning.space import suggest, trial_params

log = logging.getLogger(__name__)

#: Trial states that use up the budget (failed trials are retried, so they do not).
BUDGET_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
_WORKER_ATTR = "worker"  # user attribute "<host>:<pid>" of the process running a trial


def open_storage(cfg: TuneConfig) -> optuna.storages.BaseStorage:
    """`journal:<file>` -> Optuna's journal file storage; anything else -> an RDB (SQLAlchemy URL)."""
    retry = _retry(cfg.max_retries)
    if cfg.storage.startswith("journal:"):
        path = Path(cfg.storage.removeprefix("journal:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    lock = tracking.sqlite_lock(cfg.storage) if cfg.storage.startswith("sqlite:///") else nullcontext()
    try:
        with lock, warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5, and what we want
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(cfg.storage, heartbeat_interval=cfg.heartbeat_s, grace_period=2 * cfg.heartbeat_s,
                              heartbeat_stale_trial_callback=retry, engine_kwargs=_engine_kwargs(cfg.storage))
    except Exception as err:  # SQLAlchemy: bad URL, unreachable server, missing driver
        raise ConfigError(f"cannot open Optuna storage {cfg.storage!r}: {err}",
                          hint="tune.storage takes sqlite:///file.db, postgresql://user@host/db "
                               "or journal:<file>") from None


def _retry(max_retries: int) -> RetryHeartbeatStaleTrialCallback:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry=max_retries)


def _engine_kwargs(url: str) -> dict[str, Any]:
    # several worker processes on one SQLite file: wait for the lock instead of failing at once
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}


def make_sampler(cfg: TuneConfig) -> optuna.samplers.BaseSampler:
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    return optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=max(cfg.startup_trials, 1))


def make_pruner(cfg: TuneConfig, max_epochs: int) -> optuna.pruners.BasePruner:
    if cfg.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials,
                                           n_warmup_steps=cfg.pruner_warmup_epochs)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs * len(cfg.folds))
    return optuna.pruners.NopPruner()


def load_study(params: Params) -> optuna.Study:
    """Create the study, or attach to it (another worker's, or an interrupted one)."""
    cfg = params.tune
    return optuna.create_study(study_name=cfg.study, storage=open_storage(cfg), load_if_exists=True,
                               direction="maximize", sampler=make_sampler(cfg),
                               pruner=make_pruner(cfg, params.train.max_epochs))


def budget_used(study: optuna.Study) -> int:
    """Trials that count against tune.n_trials (finished or in progress, not failed)."""
    return len(study.get_trials(deepcopy=False, states=BUDGET_STATES))


def fail_orphans(study: optuna.Study, max_retries: int) -> list[int]:
    """Fail (and re-enqueue) RUNNING trials whose worker process on this host is gone.

    Journal storage has no heartbeat; RDB storages get the same from Optuna's heartbeat
    (`fail_stale_trials` with `RetryHeartbeatStaleTrialCallback`).
    """
    retry = _retry(max_retries)
    host, failed = socket.gethostname(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker_host, _, pid = t.user_attrs.get(_WORKER_ATTR, "").rpartition(":")
        if worker_host != host or not pid.isdigit() or int(pid) == os.getpid() or pid_alive(int(pid)):
            continue
        try:
            study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            failed.append(t.number)
            retry(study, study._storage.get_trial(t._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    if failed:
        log.warning("trials %s were left running by a killed worker: failed, and re-queued", failed)
    return failed


class _FoldStepTrial:
    """The trial as the pruning callback sees it on the j-th fold: epoch e is step j*max_epochs + e.

    So the pruner compares a trial's fold-j curve with other trials' fold-j curves.
    """

    def __init__(self, trial: optuna.Trial, offset: int):
        self._trial, self._offset = trial, offset

    def report(self, value: float, step: int) -> None:
        self._trial.report(value, step + self._offset)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trial, name)


class Deadline(L.Callback):
    """Stop training when the sweep's time budget is spent (the trial then counts as pruned)."""

    def __init__(self, deadline: float | None):
        self.deadline, self.hit = deadline, False

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.hit = trainer.should_stop = True


@dataclass
class Objective:
    """Train the trial's configuration on each tuned fold (one member: the first seed of train.seeds);
    return the mean best validation IoU."""

    params: Params
    parent_run_id: str
    client: MlflowClient
    exp_id: str
    deadline: float | None = None
    progress: bool = False

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(_WORKER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
        values = suggest(trial, self.params.tune.space)
        p = trial_params(self.params, values)
        cfg = p.tune
        trial_dir = cfg.runs_dir / cfg.study / f"trial{trial.number:04d}"
        run_id = self._trial_run(trial, values)
        ious: list[float] = []
        state = "FAIL"
        try:
            for j, fold in enumerate(cfg.folds):
                pruning = PyTorchLightningPruningCallback(_FoldStepTrial(trial, j * p.train.max_epochs), "val_iou")
                deadline = Deadline(self.deadline)
                result = train_run(p, RunSpec(*p.tuned_run, fold, p.train.seeds[0]), progress=self.progress,
                                   callbacks=[pruning, deadline], parent_run_id=run_id,
                                   run_dir=trial_dir / f"fold{fold}",
                                   metrics_dir=None)
                ious.append(result["best_val_iou"])
                self.client.log_metric(run_id, f"best_val_iou_fold{fold}", result["best_val_iou"])
                if deadline.hit:
                    raise optuna.TrialPruned("the sweep's time budget ran out during this trial")
            value = sum(ious) / len(ious)
            self.client.log_metric(run_id, "objective_val_iou", value)
            state = "COMPLETE"
            return value
        except optuna.TrialPruned:
            state = "PRUNED"
            raise
        finally:
            self._close_trial_run(run_id, trial, state)
            for fold in cfg.folds:  # a finished trial never resumes: keep its bundle, drop checkpoints
                shutil.rmtree(trial_dir / f"fold{fold}" / "checkpoints", ignore_errors=True)

    def _trial_run(self, trial: optuna.Trial, values: dict[str, Any]) -> str:
        run = self.client.create_run(
            self.exp_id, run_name=f"{self.params.tune.study}-trial{trial.number}",
            tags={"mlflow.parentRunId": self.parent_run_id, "glaciermap.role": "trial",
                  "glaciermap.study": self.params.tune.study, "optuna.trial_number": str(trial.number),
                  **tracking.reproducibility_tags()})
        for k, v in values.items():
            self.client.log_param(run.info.run_id, k, v)
        return run.info.run_id

    def _close_trial_run(self, run_id: str, trial: optuna.Trial, state: str) -> None:
        for step, value in sorted(trial.storage.get_trial(trial._trial_id).intermediate_values.items()):
            self.client.log_metric(run_id, "intermediate_val_iou", value, step=step)
        self.client.set_tag(run_id, "optuna.state", state)
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
        self.client.set_terminated(run_id, status=status)


def study_parent_run(client: MlflowClient, exp_id: str, params: Params) -> str:
    """The study's MLflow run (shared by every worker; trials nest under it)."""
    cfg = params.tune
    return tracking.find_or_create_parent(client, exp_id, f"tune/{cfg.study}",
                                          {"glaciermap.role": "study", "glaciermap.study": cfg.study})


def run_worker(params: Params, *, n_trials: int | None = None, timeout_s: float | None = None,
               progress: bool = True) -> optuna.Study:
    """Run trials until the study holds `n_trials` (default tune.n_trials) or the time is up, then
    log what the study found to its MLflow run."""
    from tqdm.auto import tqdm

    from glaciermap.tuning.report import log_study

    cfg = params.tune
    n_trials = cfg.n_trials if n_trials is None else n_trials
    timeout_s = cfg.timeout_s if timeout_s is None else timeout_s
    uri = tracking.resolve_tracking_uri(params.tracking)  # fails fast, before any compute
    client = MlflowClient(uri)
    exp_id = tracking.experiment_id(params.tracking.experiment)
    study = load_study(params)
    fail_orphans(study, cfg.max_retries)
    parent = study_parent_run(client, exp_id, params)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    objective = Objective(params, parent, client, exp_id, deadline=deadline, progress=False)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    failed: list[int] = []  # this worker's trials that failed (non-finite loss)
    count_failed = lambda _, t: failed.append(t.number) if t.state == TrialState.FAIL else None  # noqa: E731
    with tqdm(total=n_trials, initial=min(budget_used(study), n_trials), desc=f"study {cfg.study}",
              unit="trial", disable=not progress) as bar:
        while budget_used(study) < n_trials and (deadline is None or time.monotonic() < deadline):
            study.optimize(objective, n_trials=1, catch=(NonFiniteLossError,), callbacks=[count_failed],
                           gc_after_trial=True)
            if len(failed) >= n_trials:
                log.warning("%d trials failed (non-finite loss): stopping this worker", len(failed))
                break
            bar.n = min(budget_used(study), n_trials)
            bar.refresh()
    log_study(client, parent, study)
    return study
