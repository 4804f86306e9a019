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
