"""Save and load trained models as safetensors weights + a JSON config (never pickle)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from glaciermap.errors import InputDataError
from glaciermap.io import atomic_path

WEIGHTS, META = "model.safetensors", "model.json"


@dataclass
class ModelBundle:
    """What inference needs besides the weights: architecture, bands, normalisation, patching."""

    model: dict[str, Any]  # ModelConfig as a dict
    groups: dict[str, list[str]]  # sensor set: group -> band names, in input order
    stats: dict[str, dict[str, float]]  # per-band normalisation from the fold's training glaciers
    patch_size: int
    sensor_set: str
    fold: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> dict[str, int]:
        return {g: len(b) for g, b in self.groups.items()}


def save_bundle(folder: str | Path, model: torch.nn.Module, bundle: ModelBundle) -> Path:
    """Write weights and config into `folder` (each file atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    with atomic_path(folder / META) as tmp:
        tmp.write_text(json.dumps(asdict(bundle), indent=2))
    return folder


def load_bundle(folder: str | Path, map_location: str = "cpu") -> tuple[torch.nn.Module, ModelBundle]:
    """Rebuild the model from its config and load its weights safely (safetensors)."""
    from glaciermap.models import build_model
    from glaciermap.config.models import ModelConfig

    folder = Path(folder)
    meta_path, weights_path = folder / META, folder / WEIGHTS
    if not meta_path.exists() or not weights_path.exists():
        raise InputDataError(f"model folder lacks {META} or {WEIGHTS}", path=folder)
    bundle = ModelBundle(**json.loads(meta_path.read_text()))
    model = build_model(ModelConfig.model_validate(bundle.model), bundle.channels, load_encoder_weights=False)
    try:
        state = load_file(str(weights_path), device=map_location)
    except (SafetensorError, OSError) as err:
        raise InputDataError(f"cannot read weights: {err}", path=weights_path) from None
    model.load_state_dict(state)
    return model.eval(), bundle
