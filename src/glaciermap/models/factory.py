"""Build every segmentation model by name; input channels follow from the sensor groups.

    model = build_model(ModelConfig(name="glavitu"), {"optical": 6, "sar": 3, "dem": 3})
    logits = model(x, location, group_present)            # (B, num_classes, H, W)
    logits, aux = model.forward_with_aux(x, location, group_present)   # aux: [(weight, logits)]

Every model takes x of shape (B, sum(groups.values()), H, W) with H and W multiples of 32 (other
sizes are rejected with an InputDataError rather than padded: pad or choose a patch size that is a
multiple of 32), `location` (B, 2) = (lon, lat) in degrees, and `group_present` (B, n_groups) bool.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from glaciermap.config.models import (
    MODEL_NAMES,
    SMP_MODELS,
    ModelConfig,
    check_encoder_name,
    check_model_name,
)
from glaciermap.errors import ConfigError, InputDataError

__all__ = ["MODEL_NAMES", "GlacierSegmenter", "build_model", "load_encoder_weights"]

SIZE_MULTIPLE = 32
log = logging.getLogger(__name__)


class GlacierSegmenter(nn.Module):
    """Common base of every model: input checks, absent sensor groups, optional deep supervision.

    Subclasses implement `_forward(x, location, group_present, with_aux)` returning
    `(logits, [(weight, aux_logits), ...])`.
    """

    #: inference runs it channels_last (benchmarks/README.md: 1.2-1.3x for the CNN encoders on CPU)
    prefers_channels_last: bool = False

    def __init__(self, groups: Mapping[str, int], num_classes: int, name: str):
        super().__init__()
        self.groups: dict[str, int] = dict(groups)
        self.num_classes = num_classes
        self.model_name = name
        self.in_channels = sum(self.groups.values())
        # group index of every input channel, to expand group_present (B, G) to channels (B, C)
        index = [i for i, c in enumerate(self.groups.values()) for _ in range(c)]
        self.register_buffer("_channel_group", torch.tensor(index, dtype=torch.long), persistent=False)

    def forward(self, x: Tensor, location: Tensor | None = None, group_present: Tensor | None = None) -> Tensor:
        """Logits (B, num_classes, H, W)."""
        present = self._check(x, location, group_present)
        return self._forward(x, location, present, False)[0]

    def forward_with_aux(self, x: Tensor, location: Tensor | None = None,
                         group_present: Tensor | None = None) -> tuple[Tensor, list[tuple[float, Tensor]]]:
        """Main logits and the deep-supervision outputs as [(loss weight, aux logits)] (may be empty)."""
        present = self._check(x, location, group_present)
        return self._forward(x, location, present, True)

    def _forward(self, x: Tensor, location: Tensor | None, group_present: Tensor | None,
                 with_aux: bool) -> tuple[Tensor, list[tuple[float, Tensor]]]:
        raise NotImplementedError

    def channel_mask(self, group_present: Tensor) -> Tensor:
        """(B, n_groups) presence → (B, C, 1, 1) mask of 0/1 per input channel."""
        return group_present[:, self._channel_group][:, :, None, None]

    def _check(self, x: Tensor, location: Tensor | None, group_present: Tensor | None) -> Tensor | None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InputDataError(
                f"{self.model_name} expects input (B, {self.in_channels}, H, W) for groups {self.groups}, "
                f"got {tuple(x.shape)}", hint="the sensor set's bands must match the model's")
        h, w = x.shape[-2:]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise InputDataError(
                f"input is {h}x{w} pixels; {self.model_name} needs height and width divisible by {SIZE_MULTIPLE}",
                hint=f"pad the input or use a patch size (patches.size) that is a multiple of {SIZE_MULTIPLE}")
        if location is not None and (location.ndim != 2 or location.shape != (x.shape[0], 2)):
            raise InputDataError(f"location must be (B, 2) = (lon, lat) in degrees, got {tuple(location.shape)}")
        if group_present is None:
            return None
        if group_present.shape != (x.shape[0], len(self.groups)):
            raise InputDataError(f"group_present must be (B, {len(self.groups)}) for groups {list(self.groups)}, "
                                 f"got {tuple(group_present.shape)}")
        return group_present.to(device=x.device, dtype=torch.bool)


class SmpSegmenter(GlacierSegmenter):
    """A segmentation-models-pytorch model; absent groups' channels are zeroed, location is ignored."""

    prefers_channels_last = True

    def __init__(self, net: nn.Module, groups: Mapping[str, int], num_classes: int, name: str, encoder: str):
        super().__init__(groups, num_classes, name)
        self.net = net
        self.encoder_name = encoder

    def _forward(self, x, location, group_present, with_aux):
        if group_present is not None:
            x = x * self.channel_mask(group_present).to(x.dtype)
        return self.net(x), []


class GlaViTUSegmenter(GlacierSegmenter):
    """GlaViTU (see glaciermap.models.glavitu); deep supervision gives one aux output."""

    def __init__(self, net: nn.Module, groups: Mapping[str, int], num_classes: int, aux_weight: float):
        super().__init__(groups, num_classes, "glavitu")
        self.net = net
        self.aux_weight = float(aux_weight)

    def _forward(self, x, location, group_present, with_aux):
        if location is None and self.net.location is not None:
            raise InputDataError("this GlaViTU was built with glavitu.location_encoding=true: pass location, "
                                 "a (B, 2) tensor of (lon, lat) in degrees")
        if group_present is not None:  # the fusion block skips absent groups; zero their inputs too
            x = x * self.channel_mask(group_present).to(x.dtype)
        logits, aux = self.net(x, location, group_present, with_aux=with_aux)
        return logits, ([] if aux is None else [(self.aux_weight, aux)])


def _check_groups(groups: Mapping[str, int]) -> dict[str, int]:
    if not isinstance(groups, Mapping) or not groups:
        raise ConfigError(f"a model needs at least one sensor group, got {groups!r}",
                          hint="pass e.g. {'optical': 6, 'dem': 3}")
    for g, c in groups.items():
        if not isinstance(g, str) or not g or "." in g:
            raise ConfigError(f"invalid sensor group name {g!r}", hint="a non-empty name without '.'")
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ConfigError(f"sensor group {g!r} has {c!r} channels", hint="a positive integer")
    return dict(groups)


def _build_smp(cfg: ModelConfig, in_channels: int) -> nn.Module:
    import segmentation_models_pytorch as smp

    cls = {"unet": smp.Unet, "deeplabv3plus": smp.DeepLabV3Plus, "segformer": smp.Segformer}[cfg.name]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return cls(encoder_name=cfg.encoder, encoder_weights=None, in_channels=in_channels,
                       classes=cfg.num_classes)
    except (ValueError, KeyError, RuntimeError, TypeError, AttributeError, NotImplementedError) as err:
        raise ConfigError(f"cannot build {cfg.name} with encoder {cfg.encoder!r}: {err}",
                          hint="pick another encoder for this architecture") from err


def build_model(cfg: ModelConfig, groups: dict[str, int], *, load_encoder_weights: bool = True) -> GlacierSegmenter:
    """Build `cfg.name` for the ordered sensor groups `groups` (name -> channel count).

    Randomly initialised, except the encoder of an smp model when `cfg.encoder_weights_path` is
    set (and `load_encoder_weights` is true: pass False when the full weights are loaded next
    anyway, e.g. from a saved bundle, so the encoder file need not exist any more).
    """
    check_model_name(cfg.name)
    groups = _check_groups(groups)
    in_channels = sum(groups.values())
    if cfg.name == "glavitu":
        from glaciermap.models.glavitu import GlaViTU

        if cfg.encoder_weights_path is not None:
            raise ConfigError("encoder_weights_path is not used by glavitu (it has no pretrained encoder)",
                              path=cfg.encoder_weights_path, hint="remove encoder_weights_path")
        net = GlaViTU(groups, cfg.num_classes, cfg.glavitu)
        return GlaViTUSegmenter(net, groups, cfg.num_classes, cfg.glavitu.aux_weight)
    check_encoder_name(cfg.encoder)
    assert cfg.name in SMP_MODELS
    model = SmpSegmenter(_build_smp(cfg, in_channels), groups, cfg.num_classes, cfg.name, cfg.encoder)
    if cfg.encoder_weights_path is not None and load_encoder_weights:
        from glaciermap.models.encoder_weights import load_encoder_weights_into

        load_encoder_weights_into(model.net.encoder, cfg.encoder_weights_path, encoder_name=cfg.encoder)
    return model


def load_encoder_weights(model: GlacierSegmenter, path: str | Path) -> None:
    """Load local encoder weights into an smp-based model built by `build_model`."""
    from glaciermap.models.encoder_weights import load_encoder_weights_into

    if not isinstance(model, SmpSegmenter):
        raise ConfigError(f"{model.model_name} has no pretrained encoder to load", path=path)
    load_encoder_weights_into(model.net.encoder, path, encoder_name=model.encoder_name)
