"""Reliability under broken state (issue #18): concurrent writers, damaged checkpoints, orphaned
MLflow runs, unwritable outputs, a failing tracking server, stale rasters, outbound calls, -q.

Every test runs on the tiny region of conftest.py (seconds); the one real training run is shared
by the tests that need it (`tiny_train`).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import yaml
from conftest import FOLDS
from test_reliability import _params, _run_cli, infer_setup, mlflow_restored

from glaciermap import cli
from glaciermap.data.folds import write_folds

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _one_error(code: int, lines: list[str]) -> str:
    """Exit 2 and exactly one `error:` line (MLflow's INFO log lines and warnings may come before)."""
    errors = [ln for ln in lines if ln.startswith("error")]
    assert code == 2 and len(errors) == 1, lines
    return errors[0]


# ------------------------------------------------------------------ concurrent atomic swaps
SWAPPER = """
import sys, time
from pathlib import Path
from glaciermap.io import atomic_path
target, tag, start = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
while not start.exists():
    time.sleep(0.001)
for i in range(int(sys.argv[4])):
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "who").write_text(f"{tag} {i}")
"""


def test_two_processes_swapping_one_output_never_fail(tmp_path):
    """Before the swap lock, about 1 swap in 120 failed (`Directory not empty`, FileNotFoundError)."""
    target, start = tmp_path / "out" / "cubes", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    procs = [subprocess.Popen([PY, "-c", SWAPPER, str(target), tag, str(start), "300"], env=env,
                              stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    start.touch()  # both start together
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert (target / "who").read_text() in {"a 299", "b 299"}  # the last swap wins, whole
    assert sorted(p.name for p in target.parent.iterdir()) == ["cubes"]  # no temporary left


# ------------------------------------------------------------------ outputs that cannot be written
@pytest.fixture
def stage_params(tmp_path, cubes_dir, folds, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folds_path = write_folds(tmp_path / "folds.json", folds, FOLDS)
    return _params(tmp_path / "params.yaml", data={"cubes_dir": cubes_dir},
                   folds={**FOLDS.model_dump(mode="json"), "path": folds_path},
                   train={"folds": [0, 1, 2], "runs_dir": tmp_path / "runs"},
                   tracking={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"})


def test_folds_json_as_a_folder_is_one_line_before_any_work(stage_params, tmp_path, capsys, monkeypatch):
    import glaciermap.data.folds as folds_mod

    folds_path = tmp_path / "folds.json"
    folds_path.unlink()
    folds_path.mkdir()
    monkeypatch.setattr(folds_mod, "make_folds", lambda *a, **k: pytest.fail("computed before the check"))
    code, lines = _run_cli(["--params", str(stage_params), "-q", "folds"], capsys, monkeypatch)
    line = _one_error(code, lines)
    assert line == (f"error: {folds_path}: output is a folder, but a file belongs here "
                    f"(move {folds_path} aside or choose another output location)")


def test_ingest_output_under_a_file_fails_before_computing_cubes(stage_params, raw_region, tmp_path, capsys,
                                                               monkeypatch):
    import glaciermap.data.ingest as ingest

    (tmp_path / "products").write_text("a file where the products folder belongs")
    monkeypatch.setattr(ingest, "ingest_region", lambda *a, **k: pytest.fail("computed before the check"))
    out = tmp_path / "products" / "cubes"
    code, lines = _run_cli(["--params", str(stage_params), "-q", "ingest", "--raw", str(raw_region),
                            "--out", str(out)], capsys, monkeypatch)
    assert _one_error(code, lines).startswith(f"error: {out}: {tmp_path / 'products'} is a file, so the output "
                                              "cannot be created under it")


def test_read_only_output_folder_is_one_line(stage_params, tmp_path, capsys, monkeypatch):
    import glaciermap.io as io

    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root may write anywhere: make the check see what a user would
        real = io.os.access
        monkeypatch.setattr(io.os, "access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    code, lines = _run_cli(["--params", str(stage_params), "-q", "area-change", "--areas", str(tmp_path / "a.csv"),
                            "--out", str(ro / "area_change")], capsys, monkeypatch)
    assert _one_error(code, lines) == (f"error: {ro / 'area_change'}: folder {ro} is not writable "
                                       "(fix its permissions or choose another output location)")


@pytest.mark.parametrize("exc, hint", [
    (PermissionError(13, "Permission denied", "products/cubes"), "fix its permissions or choose another location"),
    (IsADirectoryError(21, "Is a directory", "products/folds.json"), "a folder is where a file belongs: move it aside"),
    (NotADirectoryError(20, "Not a directory", "products/cubes"), "a file is where a folder belongs: move it aside"),
    (FileExistsError(17, "File exists", "runs"), "move it aside and re-run"),
])
def test_os_errors_from_any_stage_are_one_line_exit_2(exc, hint, stage_params, capsys, monkeypatch):
    import glaciermap.data.folds as folds_mod

    def fail(*a, **k):
        raise exc

    monkeypatch.setattr(folds_mod, "make_folds", fail)
    code, lines = _run_cli(["--params", str(stage_params), "-q", "folds"], capsys, monkeypatch)
    assert _one_error(code, lines) == f"error: {exc.filename}: {exc.strerror} ({hint})"
    with pytest.raises(type(exc)):  # -v: the traceback, for debugging
        cli.main(["--params", str(stage_params), "-v", "folds"])


@pytest.mark.parametrize("damage", ["corrupt", "folder"])
def test_unusable_mlflow_database_is_one_line(damage, stage_params, tmp_path, capsys, monkeypatch, mlflow_restored):
    db = tmp_path / "mlflow.db"
    if damage == "corrupt":
        db.write_bytes(b"not sqlite " * 1000)
    else:
        db.mkdir()
    code, lines = _run_cli(["--params", str(stage_params), "-q", "register"], capsys, monkeypatch)
    line = _one_error(code, lines)
    if damage == "corrupt":
        assert line.startswith(f"error: sqlite:///{db}: tracking store failed: (sqlite3.DatabaseError) "
                               "file is not a database (if it is a database file, move it aside"), line
    else:  # caught before MLflow retries opening it for two minutes
        assert line.startswith(f"error: {db}: output is a folder, but a file belongs here"), line


# ------------------------------------------------------------------ a tracking server whose API fails
class _HalfServer(http.server.BaseHTTPRequestHandler):
    """/health answers OK; every API call is a 500. Counts the API calls."""

    api_calls: list[str] = []

    def _reply(self):
        if self.path.startswith("/health"):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"OK")
            return
        type(self).api_calls.append(self.path)
        self.send_response(500)
        self.end_headers()
        self.wfile.write(b"internal error")

    do_GET = do_POST = _reply

    def log_message(self, *args):
        pass


def test_server_with_a_failing_api_gives_one_line_after_bounded_retries(stage_params, capsys, monkeypatch,
                                                                        mlflow_restored):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HalfServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")  # the count matters here, not the waits
    _HalfServer.api_calls.clear()
    try:
        code, lines = _run_cli(["--params", str(stage_params), "-q", "train", "--model", "unet", "--sensors",
                                "optical", "--fold", "0"], capsys, monkeypatch)
    finally:
        server.shutdown()
    line = _one_error(code, lines)
    assert line.startswith(f"error: {uri}: tracking store failed: "), line
    assert len(_HalfServer.api_calls) == 3  # one call and MLFLOW_HTTP_REQUEST_MAX_RETRIES=2 retries (MLflow: 8)


# ------------------------------------------------------------------ train: refused, held, damaged, orphans
@pytest.mark.parametrize("member, message", [
    (["--fold", "7"], "error: fold 7 does not exist (folds: 0..2)"),
    (["--fold", "0", "--seed", "-1"], "error: seed -1 is negative (seeds are integers >= 0 (train.seeds))"),
])
def test_refused_train_creates_nothing(member, message, stage_params, tmp_path, capsys, monkeypatch,
                                       mlflow_restored):
    before = sorted(p.name for p in tmp_path.iterdir())
    code, lines = _run_cli(["--params", str(stage_params), "-q", "train", "--model", "unet", "--sensors",
                            "optical", *member], capsys, monkeypatch)
    assert _one_error(code, lines) == message
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no runs/, no mlflow.db


def test_a_second_trainer_on_one_run_folder_is_refused(stage_params, tmp_path, capsys, monkeypatch,
                                                       mlflow_restored):
    from filelock import FileLock

    run_dir = tmp_path / "runs" / "unet" / "optical" / "fold0-seed0"
    run_dir.mkdir(parents=True)
    with FileLock(run_dir.with_name(".fold0-seed0.lock")):  # the first trainer holds it
        code, lines = _run_cli(["--params", str(stage_params), "-q", "train", "--model", "unet", "--sensors",
                                "optical", "--fold", "0"], capsys, monkeypatch)
    assert _one_error(code, lines) == (f"error: {run_dir}: another trainer is using this run folder "
                                       "(wait for it to finish or stop it; then re-run)")
    assert sorted(p.name for p in run_dir.iterdir()) == []  # nothing touched


def test_damaged_last_checkpoint_is_set_aside_and_training_starts_afresh(tmp_path):
    from glaciermap.tracking.runs import INPUTS_FILE
    from glaciermap.training.run import prepare_run_dir

    run_dir = tmp_path / "fold0"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / INPUTS_FILE).write_text("k")
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 truncated by a full disk")
    with pytest.warns(UserWarning, match="checkpoint is damaged .*set aside as .*last.ckpt.damaged-"):
        assert prepare_run_dir(run_dir, "k") is False  # not resumed
    (kept,) = run_dir.glob("last.ckpt.damaged-*")
    assert kept.read_bytes().endswith(b"full disk")
    assert not (run_dir / "checkpoints").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert prepare_run_dir(run_dir, "k") is False  # the next attempt is clean, no second warning


def test_runs_of_killed_processes_are_closed_and_live_ones_kept(tmp_path, mlflow_restored):
    from mlflow.tracking import MlflowClient

    from glaciermap.tracking import runs as tracking

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.create_experiment("x")
    dead = subprocess.run([PY, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = tracking.owner_tags()[tracking.HOST_TAG]
    runs = {name: client.create_run(exp, tags={tracking.PID_TAG: pid, tracking.HOST_TAG: h}).info.run_id
            for name, pid, h in [("dead", dead.stdout.strip(), host), ("alive", str(os.getppid()), host),
                                 ("other_host", dead.stdout.strip(), "elsewhere")]}
    untagged = client.create_run(exp).info.run_id
    assert tracking.close_orphaned_runs(client, exp) == [runs["dead"]]
    status = {k: client.get_run(r).info.status for k, r in {**runs, "untagged": untagged}.items()}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "other_host": "RUNNING", "untagged": "RUNNING"}


# ------------------------------------------------------------------ one real, quiet training run
HOOKED = """
import sys
hits = []
def audit(event, args):
    if event == "socket.connect":  # (socket, address)
        hits.append(repr(args[1]))
    elif event == "socket.getaddrinfo":  # (host, port, ...): a name lookup comes before any connection
        hits.append(repr((args[0], args[1])))
sys.addaudithook(audit)
from glaciermap.cli import main
code = main(sys.argv[2:])
import mlflow.telemetry
client = mlflow.telemetry.get_telemetry_client()
if client is not None:  # what MLflow would fetch and send in the background, done now, while we count
    if getattr(client, "_config_thread", None) is not None:
        client._config_thread.join(10)
    client.flush(terminate=True)
open(sys.argv[1], "w").write("\\n".join(hits))
sys.exit(code)
"""


@pytest.fixture(scope="module")
def tiny_train(cubes_dir, folds, tmp_path_factory):
    """`glaciermap -q train` (2 epochs, 64 px) in a real process, outside pytest's environment
    (MLflow turns telemetry off under pytest), with every socket connection recorded."""
    root = tmp_path_factory.mktemp("train")
    write_folds(root / "folds.json", folds, FOLDS)
    (root / "params.yaml").write_text(yaml.safe_dump({
        "data": {"cubes_dir": str(cubes_dir), "buffer_m": 320.0},
        "folds": {**FOLDS.model_dump(mode="json"), "path": str(root / "folds.json")},
        "patches": {"size": 64, "eval_stride": 64, "samples_per_epoch": 8, "val_samples": 8, "batch_size": 4},
        "models": {"unet": {"name": "unet", "encoder": "resnet18"}},
        "train": {"folds": [0], "max_epochs": 2, "runs_dir": str(root / "runs")},
        "tracking": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"}}))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTEST_CURRENT_TEST", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = str(ROOT / "src")
    res = subprocess.run([PY, "-c", HOOKED, str(root / "connections.txt"), "-q", "--params", str(root / "params.yaml"),
                          "train", "--model", "unet", "--sensors", "optical", "--fold", "0"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return root, res


def test_a_stage_opens_no_connection_beyond_loopback(tiny_train):
    root, _ = tiny_train
    hits = [h for h in (root / "connections.txt").read_text().splitlines() if h]
    outbound = [h for h in hits if not h.startswith(("('127.", "('::1'", "('localhost'", "'/", "b'"))]
    assert outbound == []


def test_quiet_train_prints_no_library_chatter(tiny_train):
    _, res = tiny_train
    out = res.stdout + res.stderr
    for noise in ("GPU available", "TPU available", "Tip:", "\x1b[", "Downloading artifacts"):
        assert noise not in out, out


def test_finished_run_keeps_its_bundle_not_its_checkpoints(tiny_train):
    root, _ = tiny_train
    run_dir = root / "runs/unet/optical/fold0-seed0"
    assert (run_dir / "model/model.safetensors").exists() and (run_dir / "finished").exists()
    assert not (run_dir / "checkpoints").exists()


def test_history_has_each_epochs_own_train_loss(tiny_train):
    """The plot's train_loss of epoch e is the one MLflow logged for epoch e (it was one epoch late)."""
    import csv

    from mlflow.tracking import MlflowClient

    root, _ = tiny_train
    rows = list(csv.DictReader((root / "metrics/train/unet_optical_fold0_seed0_history.csv").open()))
    run_id = (root / "runs/unet/optical/fold0-seed0/mlflow_run_id").read_text().strip()
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    logged = [m.value for m in sorted(client.get_metric_history(run_id, "train_loss"), key=lambda m: m.step)]
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert [float(r["train_loss"]) for r in rows] == pytest.approx(logged, abs=1e-6)
    tags = client.get_run(run_id).data.tags
    assert tags["glaciermap.pid"].isdigit() and tags["glaciermap.host"]  # who owns it while RUNNING


# ------------------------------------------------------------------ incremental inference
def test_infer_keeps_rasters_of_unchanged_inputs_and_redoes_the_rest(infer_setup, cube_index, tmp_path):
    from glaciermap.inference.run import infer

    params, _, fakes = infer_setup
    out = tmp_path / "predictions"
    first = infer(params, "unet", "optical", out, progress=False)
    assert len(fakes.calls) == len(cube_index)
    fakes.calls.clear()
    assert infer(params, "unet", "optical", out, progress=False).equals(first)
    assert fakes.calls == []  # nothing changed: every raster kept
    fakes.run_ids[1, 0] = "retrained"  # fold 1's member is a new MLflow run
    infer(params, "unet", "optical", out, progress=False)
    fold1 = set(json.loads(params.folds.path.read_text())["folds"][1]["test"])
    redone = {c.split(".nc@")[0] for c in fakes.calls}
    assert redone == fold1 and len(fakes.calls) == cube_index.glacier_id.isin(fold1).sum()


# ------------------------------------------------------------------ project files
def test_dvc_sends_no_analytics_and_keeps_its_remote_inside_the_project():
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".dvc/config")
    assert cfg["core"]["analytics"] == "false"
    url = cfg["'remote \"local\"'"]["url"]
    storage = (ROOT / ".dvc" / url).resolve()
    assert storage.parent == ROOT and storage.name == ".dvc-storage"
    assert "/.dvc-storage" in (ROOT / ".gitignore").read_text().splitlines()


def test_demo_ends_with_a_short_summary(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    from summary import summary

    (tmp_path / "metrics/evaluate").mkdir(parents=True)
    (tmp_path / "metrics/evaluate/unet_optical.json").write_text(json.dumps({
        "model": "unet", "sensor_set": "optical", "mean": {"iou_mean": 0.85},
        "folds": {"fold1": {"iou": 0.9}, "fold0": {"iou": 0.8}}}))
    (tmp_path / "metrics/area_change.json").write_text(json.dumps({
        "rate_pct_per_yr": -1.61, "n_kept": 9, "n_total": 20,
        "truth": {"true_regional_rate_pct_per_yr": -1.86, "regional_rate_error_pct_per_yr": 0.25}}))
    lines = summary(tmp_path).splitlines()
    assert lines[:2] == ["test IoU unet/optical: fold0 0.800  fold1 0.900  (mean 0.850)",
                         "regional area change: -1.61 %/yr from 9 of 20 glaciers; truth -1.86 %/yr (error +0.25)"]
    assert len(lines) == 5 and "mlflow ui" in lines[3]
    assert "scripts/summary.py" in (ROOT / "scripts/demo.sh").read_text()
    assert "dvc metrics show" not in (ROOT / "scripts/demo.sh").read_text()
