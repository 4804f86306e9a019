"""Atomic outputs: write to a temporary sibling, rename on success, never leave half a file."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from glaciermap.errors import OutputError


def _tmp_sibling(path: Path) -> Path:
    # the suffix is kept: GDAL/OGR drivers check it (a GeoPackage without .gpkg draws a warning)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}{path.suffix}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path` (file or folder).

    If the body raises (or the process dies), `path` keeps its old content, or stays absent; what a
    killed writer left beside `path` is removed by the next write to it. Concurrent writers of the
    same `path` each compute their own temporary; the swaps take turns (`_swap_lock`), so the last
    one to finish wins and none fails half-way.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_tmp(path)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        with _swap_lock(path.parent):
            if path.is_dir() and tmp.is_dir():
                old = _tmp_sibling(path)
                path.rename(old)
                tmp.rename(path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


@contextmanager
def _swap_lock(folder: Path) -> Iterator[None]:
    """An exclusive inter-process lock on `folder` itself (flock on the directory), held for a swap.

    A directory lock leaves no lock file behind: outputs inside DVC-tracked folders stay clean.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def check_writable(path: str | Path, *, folder: bool = False) -> Path:
    """Fail fast, before any compute, if `path` (a file, or a `folder`) cannot be written.

    `path`, if it exists, must be of that kind (a folder where a file belongs, or the reverse,
    cannot be replaced), and the nearest existing ancestor must be a folder we may write into.
    Raises `OutputError` naming the path and what to do.
    """
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        found, want = ("a folder", "a file") if path.is_dir() else ("a file", "a folder")
        raise OutputError(f"output is {found}, but {want} belongs here", path=path,
                          hint=f"move {path} aside or choose another output location")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{parent} is a file, so the output cannot be created under it", path=path,
                          hint=f"remove or rename {parent}, or choose another output location")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"folder {parent} is not writable", path=path,
                          hint="fix its permissions or choose another output location")
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Write JSON atomically (indented, keys in insertion order)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_tmp(path: str | Path) -> int:
    """Remove temporary siblings of `path` left by killed writers (their process is gone); return how many."""
    path, n = Path(path), 0
    for p in path.parent.glob(f".{path.name}.tmp-*"):
        pid = p.name.rsplit(".tmp-", 1)[1].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            n += 1
    return n
