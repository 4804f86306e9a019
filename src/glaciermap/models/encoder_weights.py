"""Local encoder weights (no downloads here): a state dict file -> an smp encoder.

Files come in many shapes: a plain state dict, a checkpoint wrapping one ({"state_dict": ...},
{"model": ...}), keys with a prefix ("module.", "encoder.", "backbone.", ...), timm names where smp's
timm extractor flattens them ("stages.0" vs "stages_0"). The prefix pair that matches most tensor
names wins; an input convolution with another channel count is adapted with timm's
`adapt_input_conv`; anything else that does not fit is a ConfigError naming the file.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from timm.models import adapt_input_conv
from torch import Tensor, nn

from glaciermap.errors import ConfigError

log = logging.getLogger(__name__)


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
                # timm's adaptation (what timm/smp do for pretrained stems): sum for one channel,
                # else repeat the channels cyclically and rescale by c / in_channels
                w = adapt_input_conv(want.shape[1], w.float(), base_chans=w.shape[1])
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
