"""Typed model configuration (the `models:` section of params.yaml).

Name and encoder checks live in plain functions that raise `ConfigError`; the pydantic validators
call them and turn the error into a `ValueError`, so `parse_params` reports the offending key
(e.g. `models.unet.encoder`) and `build_model` gives the same message for configs built any other way.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from glaciermap.config.base import StrictModel
from glaciermap.errors import ConfigError

#: Every architecture `build_model` knows, by name.
MODEL_NAMES: tuple[str, ...] = ("unet", "deeplabv3plus", "segformer", "glavitu")

#: Models built by segmentation-models-pytorch (they use `encoder` / `encoder_weights_path`).
SMP_MODELS: tuple[str, ...] = ("unet", "deeplabv3plus", "segformer")

#: Encoder a model gets when the config does not name one (resolved at validation time, so a
#: dumped config always names the encoder it was built with).
DEFAULT_ENCODERS: dict[str, str] = {"unet": "resnet34", "deeplabv3plus": "resnet34", "segformer": "mit_b0"}


def _suggest(name: str, valid: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
    return f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""


def check_model_name(name: str) -> str:
    """Return `name` if it is a known model, else raise ConfigError listing the valid ones."""
    if name not in MODEL_NAMES:
        raise ConfigError(f"unknown model {name!r}",
                          hint=f"{_suggest(name, MODEL_NAMES)}valid models: {', '.join(MODEL_NAMES)}")
    return name


# Checked without importing smp (a 2-4 s import) so that parsing params.yaml stays fast.
_KNOWN_SMP_ENCODERS = frozenset(
    [f"resnet{d}" for d in (18, 34, 50, 101, 152)] + [f"mit_b{i}" for i in range(6)]
    + [f"efficientnet-b{i}" for i in range(8)])


def smp_encoder_names() -> list[str]:
    """Encoder names segmentation-models-pytorch registers (besides 'tu-<timm model>')."""
    import segmentation_models_pytorch as smp

    return sorted(smp.encoders.get_encoder_names())


def check_encoder_name(encoder: str) -> str:
    """Return `encoder` if smp can build it offline, else raise ConfigError listing the valid ones.

    Valid: every name of `smp.encoders.get_encoder_names()` and `tu-<name>` for any timm model
    (a pretrained tag such as `tu-convnext_atto.d2_in1k` is accepted; weights are never downloaded).
    """
    if encoder.startswith("tu-"):
        import timm

        base = encoder[3:].split(".", 1)[0]
        if base and timm.is_model(base):
            return encoder
        raise ConfigError(f"unknown timm encoder {encoder!r}: timm has no model {base!r}",
                          hint=f"{_suggest(base, timm.list_models())}"
                               "use 'tu-' + a name from timm.list_models(), e.g. 'tu-convnext_atto'")
    if encoder in _KNOWN_SMP_ENCODERS:
        return encoder
    valid = smp_encoder_names()
    if encoder not in valid:
        raise ConfigError(f"unknown encoder {encoder!r}",
                          hint=f"{_suggest(encoder, valid)}valid encoders: {', '.join(valid)}; "
                               "or 'tu-<timm model name>'")
    return encoder


class GlaViTUConfig(StrictModel):
    """GlaViTU hyper-parameters; defaults are those of Maslov et al. (2024)."""

    embed_dim: int = Field(64, ge=8)  # width of the fused features and of the ViT tokens
    depth: int = Field(12, ge=1)  # transformer blocks
    heads: int = Field(4, ge=1)
    mlp_dim: int = Field(256, ge=1)
    patch_size: int = 16  # ViT patch size in pixels (a power of two, at most 32)
    dropout: float = Field(0.1, ge=0, lt=1)  # active in training mode only
    unet_filters: tuple[int, ...] = (64, 128, 256)  # residual U-Net levels (full, 1/2, 1/4 resolution)
    bottleneck: int = Field(512, ge=1)  # residual U-Net bottleneck width (1/8 resolution for 3 levels)
    location_encoding: bool = False  # add an MLP encoding of (lon, lat) to the fused features
    aux_weight: float = Field(0.5, ge=0)  # loss weight of the deep-supervision head; 0 disables it
    pos_embed_size: int = Field(384, ge=32)  # image size the learned positional embedding is laid out
    # for; other input sizes interpolate it (bicubic)

    @field_validator("patch_size")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v < 2 or v > 32 or v & (v - 1):
            raise ValueError(f"patch_size must be a power of two between 2 and 32, got {v}")
        return v

    @field_validator("unet_filters")
    @classmethod
    def _filters(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or min(v) < 1:
            raise ValueError(f"unet_filters must be one or more positive widths, got {v}")
        if len(v) > 5:
            raise ValueError(f"at most 5 U-Net levels (inputs are only guaranteed divisible by 32), got {len(v)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> GlaViTUConfig:
        if self.embed_dim % self.heads:
            raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by heads ({self.heads})")
        if self.pos_embed_size % self.patch_size:
            raise ValueError(f"pos_embed_size ({self.pos_embed_size}) must be a multiple of "
                             f"patch_size ({self.patch_size})")
        return self

    @property
    def n_upsamplings(self) -> int:
        return int(math.log2(self.patch_size))


class ModelConfig(StrictModel):
    """One model of the `models:` section: architecture, encoder, optional local encoder weights."""

    name: str = "unet"
    encoder: str = "resnet34"  # smp encoder (ignored by glavitu); segformer defaults to mit_b0
    encoder_weights_path: Path | None = None  # local .pth/.pt/.safetensors encoder weights
    num_classes: int = Field(1, ge=1)
    glavitu: GlaViTUConfig = GlaViTUConfig()

    @model_validator(mode="before")
    @classmethod
    def _default_encoder(cls, data: Any) -> Any:
        # The encoder default depends on the model; resolve it here so the stored value is explicit.
        if isinstance(data, dict) and "encoder" not in data:
            default = DEFAULT_ENCODERS.get(data.get("name", "unet"))
            if default is not None:
                data = {**data, "encoder": default}
        return data

    def own_settings(self) -> dict[str, Any]:
        """The settings this architecture uses (JSON values): `glavitu.*` for GlaViTU, the encoder
        for the smp models; not the other architectures' defaults."""
        d = self.model_dump(mode="json")
        if self.name == "glavitu":
            return {"name": self.name, "num_classes": self.num_classes, "glavitu": d["glavitu"]}
        return {k: d[k] for k in ("name", "encoder", "encoder_weights_path", "num_classes")}

    @field_validator("name")
    @classmethod
    def _known_model(cls, v: str) -> str:
        try:
            return check_model_name(v)
        except ConfigError as err:
            raise ValueError(err.message) from None

    @field_validator("encoder")
    @classmethod
    def _known_encoder(cls, v: str) -> str:
        try:
            return check_encoder_name(v)
        except ConfigError as err:
            raise ValueError(err.message) from None

    @model_validator(mode="after")
    def _weights_need_an_encoder(self) -> ModelConfig:
        if self.encoder_weights_path is not None and self.name not in SMP_MODELS:
            raise ValueError(f"encoder_weights_path is only used by {', '.join(SMP_MODELS)}; "
                             f"model {self.name!r} has no pretrained encoder")
        return self
