"""MLflow runs: tracking URI (checked before any compute), parent runs, tags, the data key, and the
run-folder layout that training writes and every later stage reads."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from mlflow.entities import Param
from mlflow.tracking import MlflowClient

from glaciermap.config import Params, TrackingConfig
from glaciermap.data.cubes import INDEX_FILE
from glaciermap.errors import ConfigError, GlaciermapError
from glaciermap.io import check_writable, pid_alive, write_json

RUN_ID_FILE = "mlflow_run_id"  # in a run folder: the MLflow run that trained it
INPUTS_FILE = "inputs.sha256"  # what the run trains on: a checkpoint resumes only for the same inputs
FINISHED_FILE = "finished"  # written last: a finished run trains afresh when asked again
MODEL_DIR = "model"  # the exported safetensors bundle of a run folder
PROVENANCE_FILE = "provenance.json"  # in a predictions folder: the configuration and member runs that made it
DATA_TAG = "glaciermap.data"  # MLflow tag: data_key() of the cubes and folds a run trained on
OFFLINE_URI = "sqlite:///mlflow-offline.db"
_FROM_PARAMS = "GLACIERMAP_TRACKING_URI_FROM_PARAMS"  # marks an MLFLOW_TRACKING_URI we set, not the user
PID_TAG, HOST_TAG = "glaciermap.pid", "glaciermap.host"  # the process that owns a RUNNING run
#: a server that answers /health but fails its API: a few quick retries, then one error line (MLflow's
#: defaults, 7 retries with exponential backoff and a 120 s timeout, kept users waiting minutes)
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """One cell of the training matrix (an ensemble member: a fold and a seed), and where its run
    folder lives: the one definition of runs/<model>/<sensor set>/fold<k>-seed<s> (training writes
    it; evaluate, register and infer read it). The seed is in every member's folder and file names,
    seed 0 included, because DVC's matrix can only join values (dvc.yaml declares the same paths)."""

    model: str
    sensor_set: str
    fold: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0:  # Lightning's seed 1000 * seed + fold must be >= 0
            raise ConfigError(f"seed {self.seed} is negative", hint="seeds are integers >= 0 (train.seeds)")

    @property
    def member(self) -> str:
        """fold<k>-seed<s>: the run folder's name."""
        return f"fold{self.fold}-seed{self.seed}"

    @property
    def rng_seed(self) -> int:
        """Lightning's seed (initial weights, patch sampling): 1000 * seed + fold, distinct per member."""
        return 1000 * self.seed + self.fold

    def run_dir(self, params: Params) -> Path:
        return params.train.runs_dir / self.model / self.sensor_set / self.member

    def model_dir(self, params: Params) -> Path:
        return self.run_dir(params) / MODEL_DIR

    @property
    def name(self) -> str:
        """<model>_<sensor set>_fold<k>_seed<s>: the member's metrics and history file names."""
        return f"{self.model}_{self.sensor_set}_fold{self.fold}_seed{self.seed}"

    @property
    def run_name(self) -> str:
        """The MLflow run name: the fold first, so that the UI's narrow name column tells runs apart."""
        return f"fold{self.fold} seed{self.seed} {self.model} {self.sensor_set}"

    @property
    def model_name(self) -> str:
        """The name of the run's logged MLflow model (registered from runs:/<run id>/<model_name>)."""
        return f"{self.model}-{self.sensor_set}-{self.member}"

    @property
    def cli_args(self) -> str:
        return f"--model {self.model} --sensors {self.sensor_set} --fold {self.fold} --seed {self.seed}"

    @property
    def tags(self) -> dict[str, str]:
        return {"glaciermap.model": self.model, "glaciermap.sensor_set": self.sensor_set,
                "glaciermap.fold": str(self.fold), "glaciermap.seed": str(self.seed)}


#: the params.yaml settings a fold run logs as MLflow params (the whole file is its params.json artifact)
RUN_PARAM_KEYS: dict[str, tuple[str, ...]] = {
    "train": ("lr", "weight_decay", "loss", "scheduler", "max_epochs", "early_stopping_patience", "precision"),
    "patches": ("size", "samples_per_epoch", "batch_size", "debris_centres", "margin_centres", "margin_px",
                "background_centres", "context_centres", "group_dropout"),
    "data": ("resolution_m", "buffer_m", "context_tile_m"),
}


def run_params(params: Params, spec: RunSpec) -> dict[str, str]:
    """A fold run's MLflow params: what identifies it (model, sensor set and its bands, fold), the
    settings of its own architecture, and the training settings, each once. Not the 178-key dump of
    params.yaml, which repeated keys and listed other architectures' settings."""
    out = {"model": spec.model, "sensor_set": spec.sensor_set, "fold": str(spec.fold), "seed": str(spec.seed),
           "bands": ",".join(b for bands in params.sensors.resolve(spec.sensor_set).values() for b in bands)}
    out.update(flatten(params.models[spec.model].own_settings(), "model."))
    for section, keys in RUN_PARAM_KEYS.items():
        cfg = getattr(params, section).model_dump(mode="json")
        out.update({f"{section}.{k}": str(cfg[k]) for k in keys})
    return out


def data_key(params: Params) -> str:
    """Fingerprint of the data a run trains and validates on: the cube index and the folds.

    Tagged on every training run (`glaciermap.data`): a run of other cubes is never taken as a
    model of this data.
    """
    h = hashlib.sha256()
    for path in (params.data.cubes_dir / INDEX_FILE, params.folds.path):
        h.update(path.read_bytes() if path.is_file() else b"")
    return h.hexdigest()


class TrackingUnavailableError(GlaciermapError):
    """The MLflow tracking server cannot be reached."""


def resolve_tracking_uri(cfg: TrackingConfig) -> str:
    """MLFLOW_TRACKING_URI if set, else params' tracking.tracking_uri; checked before any compute.

    An unreachable http(s) server is an error, or (tracking.offline_fallback) a local SQLite
    database whose runs can be synced later with `mlflow` export tools. MLflow's HTTP retries and
    timeout are bounded (`HTTP_LIMITS`, unless the user set those variables). A SQLite database
    path that is a folder, or in a folder we cannot write, is an error at once (MLflow would retry
    for two minutes).
    """
    for var, value in HTTP_LIMITS.items():
        os.environ.setdefault(var, value)
    env = os.environ.get("MLFLOW_TRACKING_URI")
    # mlflow.set_tracking_uri exports the URI to the environment; only a user's own setting wins
    uri = env if env and env != os.environ.get(_FROM_PARAMS) else cfg.tracking_uri
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as r:
                r.read()
        except OSError as err:
            if not cfg.offline_fallback:
                raise TrackingUnavailableError(
                    f"MLflow tracking server {uri} is unreachable ({err})",
                    hint="start it, unset MLFLOW_TRACKING_URI, or set tracking.offline_fallback: true") from None
            warnings.warn(f"MLflow server {uri} unreachable: logging to {OFFLINE_URI} instead", stacklevel=2)
            uri = OFFLINE_URI
    if uri != env:
        os.environ[_FROM_PARAMS] = uri
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///"):
        check_writable(Path(uri.removeprefix("sqlite:///")))  # a file, in a folder we may write
        # workers starting together must not race to create the tables (one creates, the rest wait)
        with sqlite_lock(uri):
            MlflowClient(uri).search_experiments(max_results=1)
    return uri


def sqlite_lock(uri: str) -> FileLock:
    """An inter-process lock beside a sqlite:/// database file (for schema creation)."""
    path = Path(uri.removeprefix("sqlite:///"))
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(f"{path}.lock")


def owner_tags() -> dict[str, str]:
    """Tags naming this process (host and pid): a RUNNING run whose process is gone is an orphan."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def close_orphaned_runs(client: MlflowClient, exp_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose owning process (tagged on this host) no longer exists.

    A killed trainer or sweep trial cannot close its run; the next `train` or `tune` does. Runs of
    other hosts, or without owner tags, are left alone: their process cannot be checked from here.
    """
    host, closed = socket.gethostname(), []
    flt = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    for run in client.search_runs([exp_id], filter_string=flt, max_results=1000):
        pid = run.data.tags.get(PID_TAG, "")
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            client.set_terminated(run.info.run_id, status="KILLED")
            closed.append(run.info.run_id)
    if closed:
        log.warning("closed %d MLflow run(s) left RUNNING by killed processes: %s", len(closed), closed)
    return closed


#: MLflow's experiment-kind tag: the UI opens a "custom_model_development" experiment on its training
#: runs (unset, MLflow 3 opens the GenAI view of traces, which glaciermap has none of)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: beside a sqlite:/// database (`<db folder>/mlruns`),
    wherever the command runs; None (the server's or MLflow's default) for other stores. MLflow's
    own default, ./mlruns of the working directory, scattered models over whichever folder a
    command (or a test) happened to run in."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlruns").as_uri()


def experiment_id(name: str) -> str:
    """The experiment's id, created (artifacts beside the database, kind set) when absent."""
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        return mlflow.create_experiment(name, artifact_location=artifact_root(mlflow.get_tracking_uri()),
                                        tags=dict([EXPERIMENT_KIND]))
    if exp.tags.get(EXPERIMENT_KIND[0]) is None:  # made by an older glaciermap
        MlflowClient().set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)
    return exp.experiment_id


def runs_page(params, sort_by: str = "test_iou_mean", ascending: bool = False,
              base: str = "http://127.0.0.1:5000") -> str | None:
    """The MLflow UI page of this configuration's experiment that compares its runs: the training-runs
    tab in MLflow's model-training mode (MLflow 3.17's UI otherwise starts in its GenAI mode and opens
    an experiment on a traces overview, whatever the experiment's kind tag says), sorted by metric
    `sort_by`; None when the store has no such experiment (asking creates nothing)."""
    resolve_tracking_uri(params.tracking)
    exp = mlflow.get_experiment_by_name(params.tracking.experiment)
    if exp is None:
        return None
    return (f"{base}/#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning"
            f"&orderByKey=metrics.%60{sort_by}%60&orderByAsc={str(ascending).lower()}")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """{'a': {'b': 1}} -> {'a.b': '1'} (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


def config_hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


#: what `git_dirty` looks at: the code. params.yaml and dvc.lock change in every `dvc exp run` and
#: are recorded anyway (the run's params and the DVC tags), so they would make every run "dirty"
CODE_PATHS = ("src", "pyproject.toml")


def reproducibility_tags() -> dict[str, str]:
    """git commit (also as MLflow's source commit), whether the code differs from it, DVC data hash
    and DVC experiment name (when run by `dvc exp run`)."""
    commit = _git("rev-parse", "HEAD")
    tags = {"git_commit": commit or "unknown",
            "git_dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)))}
    if commit:
        tags["mlflow.source.git.commit"] = commit
    dvc_file = Path("data.dvc")
    if dvc_file.exists():
        import yaml

        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs", [{}])
        tags["dvc_data_md5"] = str(outs[0].get("md5", "unknown"))
    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        if os.environ.get(var):
            tags[var.lower()] = os.environ[var]
    return tags


def find_or_create_parent(client: MlflowClient, exp_id: str, name: str, tags: dict[str, str],
                          extra_tags: dict[str, str] | None = None, params: dict[str, str] | None = None) -> str:
    """The parent run with exactly these identifying tags (and, when created, `extra_tags` and `params`),
    created if absent.

    Workers that start together may both create one; the oldest wins and the others delete theirs.
    """
    flt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs([exp_id], filter_string=flt, max_results=1, order_by=["attributes.start_time ASC"])
    if runs:
        return runs[0].info.run_id
    mine = client.create_run(exp_id, run_name=name, tags={**tags, **reproducibility_tags(), **(extra_tags or {})}
                             ).info.run_id  # RUNNING until its first stage reports (touch_parent)
    if params:
        client.log_batch(mine, params=[Param(k, str(v)) for k, v in params.items()])
    oldest = client.search_runs([exp_id], filter_string=flt, max_results=1,
                                order_by=["attributes.start_time ASC", "attributes.run_id ASC"])[0].info.run_id
    if oldest != mine:
        client.delete_run(mine)
    return oldest


def parent_run(client: MlflowClient, exp_id: str, params, model: str, sensor_set: str) -> str:
    """The parent run of one (model, sensor set) under one configuration (fold runs nest in it)."""
    ident = {"glaciermap.role": "parent", "glaciermap.model": model, "glaciermap.sensor_set": sensor_set,
             "glaciermap.config": config_hash(params.model_dump(mode="json", exclude={"tracking"}))}
    note = (f"All folds of {model} on the {sensor_set} sensor set under one configuration "
            f"(glaciermap.config = {ident['glaciermap.config']}). Fold runs nest below; evaluate adds the test "
            "metrics (test_iou_mean, test_iou_fold<k>), area-change the regional rate.")
    bands = params.sensors.resolve(sensor_set) if sensor_set in params.sensors.sets else {}
    shown = {"model": model, "sensor_set": sensor_set,  # columns for comparing parents in the UI's table
             "groups": "+".join(bands), "bands": ",".join(b for bs in bands.values() for b in bs)}
    return find_or_create_parent(client, exp_id, f"{model}/{sensor_set}", ident,
                                 {"mlflow.note.content": note, **source_tags("glaciermap")}, params=shown)


def source_tags(command: str) -> dict[str, str]:
    """MLflow's "Source" column: the glaciermap command that made the run."""
    return {"mlflow.source.name": command, "mlflow.source.type": "LOCAL"}


def touch_parent(client: MlflowClient, parent: str) -> None:
    """Mark the parent FINISHED as of now: its duration spans its stages (from the first fold's
    start to the last stage that reported to it), not the instant it was created."""
    client.set_terminated(parent, status="FINISHED")


def log_to_parent(params, model: str, sensor_set: str, metrics: dict[str, float],
                  files: list[Path] = (), payloads: dict[str, Any] | None = None) -> str:
    """Log a stage's results (metrics, files, JSON payloads) to the (model, sensor set) parent run."""
    client = MlflowClient(resolve_tracking_uri(params.tracking))
    parent = parent_run(client, experiment_id(params.tracking.experiment), params, model, sensor_set)
    for k, v in metrics.items():
        if v is not None and v == v:  # MLflow rejects None; NaN says nothing
            client.log_metric(parent, k, float(v))
    for f in files:
        if Path(f).exists():
            client.log_artifact(parent, str(f))
    for name, obj in (payloads or {}).items():
        client.log_dict(parent, obj, name)
    touch_parent(client, parent)
    return parent


def write_provenance(folder: Path, model: str, sensor_set: str, members: dict[str, list[str | None]]) -> Path:
    """Record in a predictions folder which configuration (and which member runs per fold) made it."""
    return write_json(Path(folder) / PROVENANCE_FILE, {"model": model, "sensor_set": sensor_set, "members": members})


def read_provenance(folder: Path) -> dict[str, Any] | None:
    """A predictions folder's provenance (None for one written before it was recorded)."""
    path = Path(folder) / PROVENANCE_FILE
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text())
        return {"model": str(obj["model"]), "sensor_set": str(obj["sensor_set"]), "members": obj.get("members", {})}
    except (ValueError, KeyError, TypeError) as err:
        raise GlaciermapError(f"cannot read the predictions' provenance ({type(err).__name__}: {err})", path=path,
                              hint="re-run `glaciermap infer`") from None


def log_to_fold_runs(params, model: str, sensor_set: str, metrics: dict[int, dict[str, float]]) -> None:
    """Log per-fold results (of the fold's member ensemble) to the MLflow run of each of its members
    (run folders that name no run are skipped: there is nothing to attach them to)."""
    client = MlflowClient(resolve_tracking_uri(params.tracking))
    for fold, values in metrics.items():
        for seed in params.train.seeds:
            id_file = RunSpec(model, sensor_set, fold, seed).run_dir(params) / RUN_ID_FILE
            if not id_file.exists():
                continue
            run_id = id_file.read_text().strip()
            for k, v in values.items():
                if v is not None and v == v:
                    client.log_metric(run_id, k, float(v))
