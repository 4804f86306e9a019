"""Where and how a model runs: the `device` setting (auto, cpu, cuda), autocast precision, loader workers.

    auto  -> cuda when torch sees a GPU, else cpu
    bf16 autocast where the device supports it (precision "auto"), fp32 otherwise
    loader workers "auto" -> 0 on CPU (the model needs the cores), else min(8, cores) with pinned,
                             persistent workers
"""

from __future__ import annotations

import contextlib
import os

import torch

from glaciermap.errors import ConfigError


def resolve_device(setting: str = "auto") -> torch.device:
    """`auto` picks CUDA when available; `cuda` without a GPU is an error, not a silent CPU run."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(setting)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {setting!r} asked for, but torch sees no CUDA GPU",
                          hint="use device: auto or cpu")
    return dev


def accelerator(setting: str = "auto") -> str:
    """The Lightning accelerator name of a device setting (cuda[:N] -> gpu)."""
    return "auto" if setting == "auto" else ("gpu" if setting.startswith("cuda") else setting)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """bf16 on GPUs that support it (precision auto or bf16), else None (plain fp32)."""
    if precision == "32":
        return None
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if precision == "bf16":
        raise ConfigError(f"precision bf16 is not supported on {device}", hint="use precision: auto or 32")
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """torch.autocast for `dtype`, or a no-op context when it is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


def loader_workers(setting: int | str) -> int:
    """DataLoader worker count: an integer as given; `auto` = 0 without CUDA, else min(8, cores - 1)."""
    if setting != "auto":
        return int(setting)
    if not torch.cuda.is_available():
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def compiled(model: torch.nn.Module, enabled: bool) -> torch.nn.Module:
    """`torch.compile(model)` when `enabled` (infer.compile), else the model itself. The compiled
    module shares the weights and moves with `.to(device)`; the first forward of each input shape
    compiles (seconds to a minute), so it pays off on many windows (a tile, a region), not on one."""
    return torch.compile(model) if enabled else model
