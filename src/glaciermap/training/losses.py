"""Masked segmentation losses: pixels with valid == 0 (no data, cloud) never contribute."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def _masked_mean(per_pixel: Tensor, valid: Tensor) -> Tensor:
    w = valid.to(per_pixel.dtype)
    return (per_pixel * w).sum() / w.sum().clamp_min(1.0)


def masked_bce(logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    """Binary cross-entropy averaged over valid pixels (the paper's loss)."""
    return _masked_mean(F.binary_cross_entropy_with_logits(logits, target, reduction="none"), valid)


def masked_dice(logits: Tensor, target: Tensor, valid: Tensor, eps: float = 1.0) -> Tensor:
    """Soft Dice loss over valid pixels of the whole batch."""
    p = torch.sigmoid(logits) * valid
    t = target * valid
    return 1 - (2 * (p * t).sum() + eps) / (p.sum() + t.sum() + eps)


def masked_focal(logits: Tensor, target: Tensor, valid: Tensor, gamma: float = 2.0, alpha: float = 0.25) -> Tensor:
    """Sigmoid focal loss (Lin et al. 2017) over valid pixels."""
    from torchvision.ops import sigmoid_focal_loss

    return _masked_mean(sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma, reduction="none"), valid)


def masked_bce_dice(logits: Tensor, target: Tensor, valid: Tensor) -> Tensor:
    return masked_bce(logits, target, valid) + masked_dice(logits, target, valid)


LOSSES: dict[str, LossFn] = {"bce": masked_bce, "dice": masked_dice, "focal": masked_focal,
                             "bce_dice": masked_bce_dice}
