"""The machine a benchmark ran on (recorded beside every result; light: torch is imported on call)."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


#: the vector and matrix units that set a CPU's float32 / bf16 peak (the same 2 cores run the
#: models 3x faster with AVX-512 than with AVX2 alone: compare peak.json across machines)
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_flags() -> list[str]:
    """Which of ISA_FLAGS /proc/cpuinfo lists ([] where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ISA_FLAGS if f in have]
    except OSError:
        pass
    return []


def machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        # other processes compete for the cores: figures taken at a load above `threads` are low
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
