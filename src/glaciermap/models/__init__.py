"""Segmentation models: one factory builds every architecture by name.

    from glaciermap.models import build_model
    from glaciermap.config.models import ModelConfig
    model = build_model(ModelConfig(name="unet"), {"optical": 6, "dem": 3})

The config classes import without torch; the factory, the models and the summary are imported on
first use (so parsing params.yaml stays fast).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from glaciermap.config.models import MODEL_NAMES, GlaViTUConfig, ModelConfig

if TYPE_CHECKING:
    from glaciermap.models.factory import GlacierSegmenter, build_model, load_encoder_weights
    from glaciermap.models.summary import model_summary

_LAZY = {
    "GlacierSegmenter": "glaciermap.models.factory",
    "build_model": "glaciermap.models.factory",
    "load_encoder_weights": "glaciermap.models.factory",
    "model_summary": "glaciermap.models.summary",
}

__all__ = ["MODEL_NAMES", "GlaViTUConfig", "GlacierSegmenter", "ModelConfig", "build_model",
           "load_encoder_weights", "model_summary"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
