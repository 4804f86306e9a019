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

from glaciermap.errors import ConfigError, InputDataError
from glaciermap.config.models import (MODEL_NAMES, SMP_MODELS, ModelConfig, check_encoder_name,
                                      check_model_name)

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
        load_encoder_weights_into(model.net.encoder, cfg.encoder_weights_path, encoder_name=cfg.encoder)
    return model


# --------------------------------------------------------------------------- local encoder weights

_CONTAINER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "encoder", "weights")
_CLASSIFIER_PREFIXES = ("fc.", "head.", "heads.", "classifier.", "last_linear.", "head_dist.", "pre_logits.")


def _read_weights(path: Path) -> dict[str, Tensor]:
    """Tensors of a .safetensors file or a torch.save'd state dict (read with weights_only=True)."""
    if not path.is_file():
        raise ConfigError("encoder weights file not found", path=path, hint="check encoder_weights_path")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any failure to parse means a bad file; say which and why
        raise ConfigError(f"cannot read encoder weights ({type(err).__name__}: {str(err)[:300]})", path=path,
                          hint="expected a state dict saved with torch.save (.pth/.pt) or a .safetensors file"
                          ) from None
    # unwrap checkpoints such as {"state_dict": {...}} or {"model": {...}}
    for _ in range(3):
        if isinstance(obj, Mapping) and not any(isinstance(v, Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _CONTAINER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise ConfigError(f"encoder weights file holds a {type(obj).__name__}, not a state dict", path=path,
                          hint="save model.state_dict(), not the model object")
    state = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise ConfigError("encoder weights file holds no tensors", path=path)
    return state


def _prefixes(keys: list[str]) -> list[str]:
    """'' plus the dotted prefixes (1 to 3 components deep) shared by at least a fifth of `keys`."""
    counts: dict[str, int] = {}
    for k in keys:
        parts = k.split(".")
        for depth in (1, 2, 3):
            if len(parts) > depth:
                p = ".".join(parts[:depth]) + "."
                counts[p] = counts.get(p, 0) + 1
    return [""] + sorted(p for p, n in counts.items() if n * 5 >= len(keys))


def _unique_normalised(keys) -> bool:
    keys = list(keys)
    return len({k.replace("_", ".") for k in keys}) == len(keys)


def _strip(keys, prefix: str, normalise: bool = False) -> dict[str, str]:
    """{key without `prefix` (with '_' read as '.', if `normalise`): original key}.

    Normalising lets a plain timm state dict ('stages.0.blocks...') match smp's timm feature
    extractor, which flattens module names ('model.stages_0.blocks...')."""
    out = {k[len(prefix):]: k for k in keys if k.startswith(prefix)}
    return {k.replace("_", "."): v for k, v in out.items()} if normalise else out


def adapt_input_conv(weight: Tensor, in_channels: int) -> Tensor:
    """Adapt a conv kernel (out, c, kh, kw) to `in_channels` inputs like timm/smp do: sum for one
    channel, else repeat the channels cyclically and rescale by c / in_channels (keeps activations'
    scale for inputs of similar statistics)."""
    c = weight.shape[1]
    if in_channels == c:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    idx = torch.arange(in_channels) % c
    return weight[:, idx] * (c / in_channels)


def load_encoder_weights_into(encoder: nn.Module, path: str | Path, *, encoder_name: str = "encoder") -> None:
    """Load a local state dict into `encoder`, matching keys with or without a common prefix
    ('module.', 'encoder.', 'backbone.', 'model.', ...) and adapting input convolutions whose
    channel count differs. Missing tensors or other shape mismatches are a ConfigError naming the
    file; unexpected tensors (other than classifier heads) give a warning."""
    path = Path(path)
    src = _read_weights(path)
    target = encoder.state_dict()
    norm = _unique_normalised(src) and _unique_normalised(target)
    # best (file prefix, model prefix) pair: most keys in common, then the shortest prefixes
    best = max(((len(set(_strip(src, pf, norm)) & set(_strip(target, pm, norm))), -len(pf) - len(pm), pf, pm)
                for pf in _prefixes(list(src)) for pm in _prefixes(list(target))))
    n_match, _, pf, pm = best
    src_keys, tgt_keys = _strip(src, pf, norm), _strip(target, pm, norm)
    if n_match == 0:
        raise ConfigError(f"no tensor name in the file matches the {encoder_name} encoder "
                          f"(file has e.g. {sorted(src)[:3]}, the encoder e.g. {sorted(target)[:3]})",
                          path=path, hint=f"use a state dict of a {encoder_name} backbone")
    matched_tgt = {tk for short, tk in tgt_keys.items() if short in src_keys}
    missing = [k for k in target if k not in matched_tgt]
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(f"the file lacks {len(missing)} of the {len(target)} tensors of the {encoder_name} "
                          f"encoder, e.g. {missing[:5]}", path=path,
                          hint=f"is it a {encoder_name} checkpoint? (matched {n_match} tensors "
                               f"after stripping prefix {pf!r})")
    new_state, adapted, bad = dict(target), [], []
    for short, tk in tgt_keys.items():
        if short not in src_keys:
            continue
        w, want = src[src_keys[short]], target[tk]
        if w.shape != want.shape:
            if w.ndim == 4 and want.ndim == 4 and w.shape[0] == want.shape[0] and w.shape[2:] == want.shape[2:]:
                w = adapt_input_conv(w.float(), want.shape[1])
                adapted.append(f"{tk} {src[src_keys[short]].shape[1]}->{want.shape[1]} channels")
            else:
                bad.append(f"{tk}: file {tuple(w.shape)} vs model {tuple(want.shape)}")
                continue
        new_state[tk] = w.to(dtype=want.dtype)
    if bad:
        raise ConfigError(f"{len(bad)} tensor shape(s) do not match the {encoder_name} encoder: {bad[:5]}",
                          path=path, hint=f"is it a {encoder_name} checkpoint?")
    nn.Module.load_state_dict(encoder, new_state, strict=True)
    used = {src_keys[k] for k in tgt_keys if k in src_keys}
    unexpected = [k for k in src if k not in used
                  and not k.removeprefix(pf).startswith(_CLASSIFIER_PREFIXES)]
    if unexpected:
        warnings.warn(f"{path}: {len(unexpected)} tensor(s) not used by the {encoder_name} encoder, "
                      f"e.g. {unexpected[:5]}", UserWarning, stacklevel=3)
    log.info("%s: loaded %d encoder tensors (prefix %r), adapted %s, ignored %d", path, len(used), pf,
             adapted or "none", len(src) - len(used))


def load_encoder_weights(model: GlacierSegmenter, path: str | Path) -> None:
    """Load local encoder weights into an smp-based model built by `build_model`."""
    if not isinstance(model, SmpSegmenter):
        raise ConfigError(f"{model.model_name} has no pretrained encoder to load", path=path)
    load_encoder_weights_into(model.net.encoder, path, encoder_name=model.encoder_name)
