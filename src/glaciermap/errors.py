"""User-facing errors: each names the file (or key), the problem and what to do."""

from __future__ import annotations

from pathlib import Path


class GlaciermapError(Exception):
    """An error the CLI reports as one clear message (no traceback) and exit code 2."""

    def __init__(self, problem: str, *, path: str | Path | None = None, hint: str | None = None,
                 keep_lines: bool = False):
        # A library's message may span lines (pandas' parser errors end in one): the CLI prints one
        # line per error, so whitespace is collapsed unless the lines carry meaning (YAML's caret).
        self.problem = problem if keep_lines else " ".join(problem.split())
        self.path = None if path is None else str(path)
        self.hint = hint
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = f"{self.path}: " if self.path else ""
        tip = f" ({self.hint})" if self.hint else ""
        return f"{where}{self.problem}{tip}"


class InputDataError(GlaciermapError):
    """Bad input data: unreadable file, missing band, wrong CRS, empty overlap, NaN DEM..."""


class ConfigError(GlaciermapError):
    """Invalid params.yaml: unknown key, wrong type, impossible value."""


class OutputError(GlaciermapError):
    """An output cannot be written: read-only folder, a file where a folder belongs, or the reverse."""


#: what to do about an OS error, by its kind (the message names the path and the problem)
_OS_HINTS = (
    (PermissionError, "fix its permissions or choose another location"),
    (IsADirectoryError, "a folder is where a file belongs: move it aside"),
    (NotADirectoryError, "a file is where a folder belongs: move it aside"),
    (FileExistsError, "move it aside and re-run"),
    (FileNotFoundError, "check the path, or re-run the stage that writes it"),
    (OSError, "check the path, the disk space and the permissions"),
)


def _database_error_types() -> tuple[type[BaseException], ...]:
    """Errors of the tracking store (MLflow, its SQLAlchemy/SQLite backend), among those loaded.

    Only modules already imported are consulted: an error of a library never imported cannot occur,
    and this module stays free of heavy imports.
    """
    import sys

    names = (("sqlite3", "DatabaseError"), ("sqlalchemy.exc", "SQLAlchemyError"),
             ("mlflow.exceptions", "MlflowException"))
    return tuple(getattr(sys.modules[m], c) for m, c in names if m in sys.modules)


def user_error(err: BaseException) -> GlaciermapError | None:
    """The one-line error for an environment fault (file system, tracking database), else None.

    A read-only folder, a file where a folder belongs (or the reverse), a corrupt or unopenable
    MLflow database: the user's to fix, so the CLI reports `<path>: <problem> (<what to do>)`
    instead of a traceback. Anything else is a bug and keeps its traceback.
    """
    import os

    if isinstance(err, OSError):
        hint = next(h for cls, h in _OS_HINTS if isinstance(err, cls))
        path = err.filename if err.filename2 is None else f"{err.filename} -> {err.filename2}"
        return GlaciermapError(err.strerror or str(err), path=path, hint=hint)
    if isinstance(err, _database_error_types()):
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
        return GlaciermapError(f"tracking store failed: {first}", path=os.environ.get("MLFLOW_TRACKING_URI"),
                               hint="if it is a database file, move it aside (a new one is created) or set "
                                    "tracking.tracking_uri; if it is a server, check it (-v shows details)")
    return None
