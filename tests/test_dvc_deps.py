"""Every DVC stage depends on the code it runs, so `dvc repro` re-runs a stage whose code changed.

A stage whose deps miss a module it runs keeps its old outputs after that module changes, and
`dvc status` still says all is up to date: the models of a changed sampler, an experiment's area
change from older code. For each `glaciermap <command>` stage of the project's pipelines, the
modules that command can import (statically: the command function's own imports, the top-level
imports it and the helpers it calls name, then everything those import, imports inside functions
included; the params validation in `glaciermap.config` always) must each lie under one of the
stage's deps. Static and transitive,
so it over-counts (a module a code path never reaches) and never under-counts an import.
"""

from __future__ import annotations

import ast
import inspect
import re
from functools import cache
from pathlib import Path

import pytest
import yaml

from glaciermap.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PIPELINES = [ROOT / "dvc.yaml", ROOT / "experiments" / "compare" / "dvc.yaml",
             ROOT / "experiments" / "everest" / "dvc.yaml"]
#: plumbing that cannot change a stage's numbers: the package's environment defaults, the command
#: table, the error types and the reliability tests' kill point (and any module that is only a docstring)
PLUMBING = {"glaciermap", "glaciermap.commands", "glaciermap.errors", "glaciermap.testhooks"}


def module_file(name: str) -> Path | None:
    path = SRC.joinpath(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def imported(nodes, package: str) -> set[str]:
    """glaciermap modules the import statements among `nodes` load (with their parent packages)."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).rstrip(".")
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}")}
    out = set()
    for name in (n for n in names if n.split(".")[0] == "glaciermap"):
        parts = name.split(".")
        out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return {m for m in out if module_file(m)}


@cache
def syntax(name: str) -> ast.Module:
    """The module's parsed source (each module is read once)."""
    return ast.parse(module_file(name).read_text())


def has_code(name: str) -> bool:
    """Whether the module holds more than a docstring and `from __future__` imports."""
    body = syntax(name).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str))
               and not (isinstance(n, ast.ImportFrom) and n.module == "__future__") for n in body)


def package_of(name: str) -> str:
    return name if module_file(name).name == "__init__.py" else name.rpartition(".")[0]


@cache
def module_imports(name: str) -> frozenset[str]:
    """Every import anywhere in the module, functions included."""
    return frozenset(imported(ast.walk(syntax(name)), package_of(name)))


def closure(roots: set[str]) -> set[str]:
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += module_imports(name)
    return seen


def command_modules(command: str) -> set[str]:
    """What `glaciermap <command>` can run: its cli module, the modules its function (and the module's
    helpers that function calls) imports or names, and the params validation, then all they import."""
    run = next(c.run for c in COMMANDS if c.name == command)
    tree = syntax(run.__module__)
    package = package_of(run.__module__)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    top_level = {}  # name bound by a top-level import -> the glaciermap modules behind it
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                top_level[(alias.asname or alias.name).split(".")[0]] = imported([node], package)
    roots, seen, todo = {"glaciermap.config"}, set(), [run.__name__]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        roots |= imported(ast.walk(functions[name]), package)
        for node in ast.walk(functions[name]):
            if isinstance(node, ast.Name):
                roots |= top_level.get(node.id, set())
                todo += [node.id] if node.id in functions else []
    return {m for m in {run.__module__} | closure(roots) if m not in PLUMBING and has_code(m)}


def stages() -> list[tuple[str, str, str, list[Path]]]:
    """(pipeline, stage, glaciermap command, dep paths resolved against the stage's wd)."""
    out = []
    for pipeline in PIPELINES:
        for name, stage in yaml.safe_load(pipeline.read_text())["stages"].items():
            match = re.search(r"\bglaciermap\s+(?:-\S+\s+)*([a-z][\w-]*)", " ".join(str(stage["cmd"]).split()))
            if not match:
                continue
            wd = pipeline.parent / stage.get("wd", ".")
            deps = [(wd / d).resolve() for d in stage.get("deps", []) if "${" not in d]
            out.append((str(pipeline.relative_to(ROOT)), name, match.group(1), deps))
    return out


STAGES = stages()


def test_the_pipelines_have_glaciermap_stages():
    assert {command for *_, command, _ in STAGES} >= {"ingest", "folds", "train", "evaluate", "register",
                                                      "infer", "area-change"}
    assert all(inspect.isfunction(next(c.run for c in COMMANDS if c.name == cmd)) for *_, cmd, _ in STAGES)


def uncovered(command: str, deps: list[Path]) -> list[str]:
    """The files `glaciermap <command>` can run that lie under none of `deps`."""
    return sorted(str(module_file(m).relative_to(ROOT)) for m in command_modules(command)
                  if not any(module_file(m).is_relative_to(d) for d in deps))


@pytest.mark.parametrize(("pipeline", "stage", "command", "deps"), STAGES,
                         ids=[f"{p}:{s}" for p, s, *_ in STAGES])
def test_stage_depends_on_the_code_it_runs(pipeline, stage, command, deps):
    missing = uncovered(command, deps)
    assert not missing, (f"{pipeline} stage {stage} (`glaciermap {command}`) runs code none of its deps "
                         f"covers, so `dvc repro` would keep outputs of older code: add {missing}")


def test_the_check_names_what_a_stage_misses():
    """The train stage as it was (training and models only) misses the patch sampler and the params'
    defaults; the whole package covers everything."""
    old = [SRC / "glaciermap" / "training", SRC / "glaciermap" / "models"]
    missing = uncovered("train", old)
    assert {"src/glaciermap/data/datamodule.py", "src/glaciermap/config/data.py"} <= set(missing)
    assert not any(m.startswith(("src/glaciermap/training", "src/glaciermap/models")) for m in missing)
    assert "src/glaciermap/analysis/compare.py" not in missing  # another command's code is not train's
    assert uncovered("train", [SRC / "glaciermap"]) == []
