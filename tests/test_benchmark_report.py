"""benchmarks/run.py's report: a scratch run (--out elsewhere) must not rewrite the project's benchmarks/README.md."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_scratch_out_folder_gets_its_own_report_and_leaves_the_projects_alone(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("benchmarks_run", ROOT / "benchmarks" / "run.py")
    run = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, run)
    spec.loader.exec_module(run)
    project_readme = ROOT / "benchmarks" / "README.md"
    before = project_readme.read_bytes()
    shutil.copy(ROOT / "benchmarks" / "results" / "peak.json", tmp_path / "peak.json")
    assert run.main(["--readme-only", "--out", str(tmp_path)]) == 0
    assert project_readme.read_bytes() == before
    report = (tmp_path / "README.md").read_text()
    assert report.startswith("# glaciermap benchmarks") and "GFLOP/s" in report
