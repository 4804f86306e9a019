"""What a pipeline stage's command is: a name, its arguments and the library call it makes.

Each stage package lists its commands in its own `cli.py` (beside the code they call); the
top-level `glaciermap.cli` puts those lists into one explicit table. A command's `run` only reads
the parsed arguments and calls library functions: everything it does is testable without argparse.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """A command without arguments of its own."""


@dataclass(frozen=True)
class Command:
    """One `glaciermap <name>` subcommand."""

    name: str
    help: str
    run: Callable[[argparse.Namespace, Any], None]  # (parsed arguments, validated Params)
    configure: Callable[[argparse.ArgumentParser], None] = no_arguments
