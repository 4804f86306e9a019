"""Model size and cost: parameter count and forward FLOPs per patch."""

from __future__ import annotations

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from glaciermap.models.factory import GlacierSegmenter


def count_params(model: torch.nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def forward_flops(model: GlacierSegmenter, size: int = 256, batch: int = 1) -> int:
    """FLOPs of one eval-mode forward pass on `batch` size x size patches, as counted by
    torch.utils.flop_counter (matmuls, convolutions and attention; one multiply-add = 2 FLOPs;
    elementwise ops, norms and interpolation are not counted)."""
    param = next(model.parameters())
    x = torch.zeros(batch, model.in_channels, size, size, device=param.device, dtype=param.dtype)
    loc = torch.zeros(batch, 2, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        # the math backend decomposes attention into matmuls that the counter sees on every device
        # (the fused CPU kernel has no FLOP formula and would count as zero)
        with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]), counter:
            model(x, loc)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def model_summary(model: GlacierSegmenter, size: int = 256) -> dict:
    """{"params": int, "gflops_per_patch": float}: parameter count and forward GFLOPs
    (1e9 FLOPs, multiply-add = 2) for one size x size patch."""
    return {"params": count_params(model), "gflops_per_patch": forward_flops(model, size) / 1e9}
