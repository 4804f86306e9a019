"""A deterministic kill point for the reliability tests; inert unless GLACIERMAP_TEST_HANG_AT is set.

A test that must kill a stage part-way sets `GLACIERMAP_TEST_HANG_AT=<step>` (and
`GLACIERMAP_TEST_READY=<file>`): when the stage reaches that step it writes its pid to the file
and sleeps, so the test kills it exactly there instead of racing a polling loop against it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HANG_VAR, READY_VAR = "GLACIERMAP_TEST_HANG_AT", "GLACIERMAP_TEST_READY"


def hang_at(step: str) -> None:
    """Signal readiness and sleep forever if the tests asked to stop at `step`; else return at once."""
    if os.environ.get(HANG_VAR) != step:
        return
    if os.environ.get(READY_VAR):
        Path(os.environ[READY_VAR]).write_text(str(os.getpid()))
    while True:
        time.sleep(3600)
