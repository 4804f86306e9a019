"""Save and load trained models as safetensors weights + a JSON config (never pickle).

A bundle folder holds `model.safetensors`, `model.json` (the `ModelBundle` fields that describe the
network) and, once training has calibrated it, `calibration.json` (written by
`glaciermap.training.calibration`: the temperature T of p = sigmoid(logit / T) and its reliability
before and after). Predictions need the temperature: `require_calibrated` refuses a bundle without.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from glaciermap.errors import GlaciermapError, InputDataError
from glaciermap.io import atomic_path

WEIGHTS, META, CALIBRATION = "model.safetensors", "model.json", "calibration.json"
#: ModelBundle fields that come from elsewhere than model.json (set by `load_bundle`, never saved there)
RUNTIME_FIELDS = ("temperature", "source")


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
    temperature: float | None = None  # from calibration.json; None: not calibrated
    source: str | None = None  # where it was loaded from (calibration.json's path, or a registry URI)

    @property
    def channels(self) -> dict[str, int]:
        return {g: len(b) for g, b in self.groups.items()}

    def calibrated_temperature(self) -> float:
        """`require_calibrated(self)`, for layers that may not import this module (data.windows)."""
        return require_calibrated(self)


def save_bundle(folder: str | Path, model: torch.nn.Module, bundle: ModelBundle) -> Path:
    """Write weights and config into `folder` (each file atomically)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS) as tmp:
        save_file(state, str(tmp))
    with atomic_path(folder / META) as tmp:
        tmp.write_text(json.dumps({k: v for k, v in asdict(bundle).items() if k not in RUNTIME_FIELDS}, indent=2))
    return folder


def read_temperature(path: Path) -> float | None:
    """The temperature of a bundle's calibration.json (a finite T > 0), None when the file is absent."""
    if not path.exists():
        return None
    try:
        t = float(json.loads(path.read_text())["temperature"])
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError
        raise InputDataError(f"cannot read the calibration ({type(err).__name__}: {err})", path=path,
                             hint="re-train this fold, which calibrates it") from None
    if not (t > 0 and t < float("inf")):
        raise InputDataError(f"calibration temperature {t} is not a finite positive number", path=path,
                             hint="re-train this fold, which calibrates it")
    return t


def require_calibrated(bundle: ModelBundle, where: str | Path | None = None) -> float:
    """The bundle's temperature, or a one-line error naming `where` (default: `bundle.source`, the
    bundle's calibration.json or registry alias) when the bundle was never calibrated."""
    if bundle.temperature is None:
        raise GlaciermapError(f"model bundle has no calibration ({CALIBRATION} missing)", path=where or bundle.source,
                              hint="models trained before calibration existed must be re-trained "
                                   "(`dvc repro`, then `glaciermap register`)")
    return bundle.temperature


def load_bundle(folder: str | Path, map_location: str = "cpu") -> tuple[torch.nn.Module, ModelBundle]:
    """Rebuild the model from its config and load its weights safely (safetensors); the bundle's
    temperature from calibration.json when present (None otherwise) and `source` = that file's path."""
    from glaciermap.models import build_model
    from glaciermap.config.models import ModelConfig

    folder = Path(folder)
    meta_path, weights_path = folder / META, folder / WEIGHTS
    if not meta_path.exists() or not weights_path.exists():
        raise InputDataError(f"model folder lacks {META} or {WEIGHTS}", path=folder)
    bundle = ModelBundle(**json.loads(meta_path.read_text()))
    bundle.temperature = read_temperature(folder / CALIBRATION)
    bundle.source = str(folder / CALIBRATION)
    model = build_model(ModelConfig.model_validate(bundle.model), bundle.channels, load_encoder_weights=False)
    try:
        state = load_file(str(weights_path), device=map_location)
    except (SafetensorError, OSError) as err:
        raise InputDataError(f"cannot read weights: {err}", path=weights_path) from None
    model.load_state_dict(state)
    return model.eval(), bundle
