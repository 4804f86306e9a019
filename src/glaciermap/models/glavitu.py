"""GlaViTU: hybrid convolutional-transformer glacier mapper (Maslov et al., 2024), in PyTorch.

"Globally scalable glacier mapping by deep learning matches expert delineation accuracy",
Maslov, Schellenberger, Persello & Stein (2024). This is an independent implementation written
from the paper's description (the authors' TensorFlow code was only consulted, not translated):

    sensor groups ──► fusion block (one conv branch per group → width channels, gated, summed)
                  (+) location encoding (MLP of sin/cos lon/lat, broadcast over the image)
                   ──► fused
    fused ──► SETR (ViT on patch_size px patches + progressive-upsampling decoder) (+) fused ──► enc1
    enc1 ──► 1x1 deep-supervision head (auxiliary logits, loss weight aux_weight)
    enc1 ──► residual U-Net (unet_filters levels + bottleneck) (+) enc1 ──► 1x1 head ──► logits

Differences from the reference code, on purpose:
- dropout (spatial dropout in conv blocks, token dropout in the ViT, dropout in the location MLP)
  is active in training mode and off in eval mode, as in any PyTorch module;
- the learned positional embedding is laid out for `pos_embed_size` (384) pixel inputs and is
  interpolated (bicubic, timm's `resample_abs_pos_embed`) for any other input size;
- a sensor group can be marked absent per sample (`group_present`), which zeroes that group's
  fusion branch output, so the prediction does not depend on the (zero-filled) absent channels;
- the location MLP uses LayerNorm instead of BatchNorm (works with batches of one).
"""

from __future__ import annotations

import math

import torch
from timm.layers import resample_abs_pos_embed, trunc_normal_
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from glaciermap.config.models import GlaViTUConfig

_SLOPE = 0.2  # LeakyReLU negative slope


class ConvBNAct(nn.Sequential):
    """3x3 convolution, batch norm, LeakyReLU."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3):
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(cout),
            nn.LeakyReLU(_SLOPE, inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two ConvBNAct, then spatial dropout (whole channels)."""

    def __init__(self, cin: int, cout: int, dropout: float):
        super().__init__(ConvBNAct(cin, cout), ConvBNAct(cout, cout), nn.Dropout2d(dropout))


class ResBlock(nn.Module):
    """DoubleConv with a residual connection (1x1 projection when the width changes)."""

    def __init__(self, cin: int, cout: int, dropout: float):
        super().__init__()
        self.body = DoubleConv(cin, cout, dropout)
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class FusionBranch(nn.Module):
    """One sensor group → `width` channels: DoubleConv then a squeeze-and-excitation channel gate."""

    def __init__(self, cin: int, width: int, dropout: float):
        super().__init__()
        self.conv = DoubleConv(cin, width, dropout)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(width, width), nn.LeakyReLU(_SLOPE, inplace=True),
            nn.Linear(width, width), nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return y * self.gate(y)[:, :, None, None]


class FusionBlock(nn.Module):
    """Sum of one FusionBranch per sensor group; absent groups contribute zero."""

    def __init__(self, groups: dict[str, int], width: int, dropout: float):
        super().__init__()
        self.group_names = list(groups)
        self.splits = list(groups.values())
        self.branches = nn.ModuleDict({g: FusionBranch(c, width, dropout) for g, c in groups.items()})

    def forward(self, x: Tensor, group_present: Tensor | None = None) -> Tensor:
        out = None
        for i, (name, xi) in enumerate(zip(self.group_names, torch.split(x, self.splits, dim=1))):
            y = self.branches[name](xi)
            if group_present is not None:
                y = y * group_present[:, i].to(y.dtype)[:, None, None, None]
            out = y if out is None else out + y
        return out


def location_features(location: Tensor) -> Tensor:
    """(B, 2) lon, lat in degrees → (B, 4) sin/cos features (continuous across the date line)."""
    rad = torch.deg2rad(location.float())
    lon, lat = rad[:, 0], rad[:, 1]
    return torch.stack([torch.sin(lon), torch.cos(lon), torch.sin(lat), torch.cos(lat)], dim=1)


class LocationEncoder(nn.Module):
    """Small MLP of the location features, giving a per-sample bias of `width` channels."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(4, width), nn.LayerNorm(width), nn.LeakyReLU(_SLOPE, inplace=True),
            nn.Linear(width, width), nn.LayerNorm(width), nn.LeakyReLU(_SLOPE, inplace=True),
            nn.Dropout(dropout),
        )

    def forward(self, location: Tensor) -> Tensor:
        return self.mlp(location_features(location))


class SETR(nn.Module):
    """ViT encoder on non-overlapping patches + progressive-upsampling (PUP) decoder.

    Input and output are (B, width, H, W); H and W must be multiples of the patch size.
    """

    def __init__(self, width: int, cfg: GlaViTUConfig):
        super().__init__()
        p, e = cfg.patch_size, cfg.embed_dim
        self.patch_size = p
        self.grid = cfg.pos_embed_size // p  # positional embedding is laid out on grid x grid tokens
        self.patch_embed = nn.Conv2d(width, e, kernel_size=p, stride=p)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, e))
        self.pos_drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.Sequential(*[
            Block(e, cfg.heads, mlp_ratio=cfg.mlp_dim / e, qkv_bias=True, proj_drop=cfg.dropout)
            for _ in range(cfg.depth)
        ])
        self.norm = nn.LayerNorm(e)
        # PUP decoder: log2(p) stages of conv + x2 bilinear upsampling, back to full resolution
        stages, cin = [], e
        for _ in range(cfg.n_upsamplings):
            stages += [ConvBNAct(cin, width), nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)]
            cin = width
        self.decoder = nn.Sequential(*stages, nn.Conv2d(width, width, 1))
        trunc_normal_(self.pos_embed, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def position_embedding(self, h: int, w: int) -> Tensor:
        """The learned embedding for an h x w token grid (interpolated unless h = w = grid)."""
        if (h, w) == (self.grid, self.grid):
            return self.pos_embed
        return resample_abs_pos_embed(self.pos_embed, new_size=[h, w], old_size=[self.grid, self.grid],
                                      num_prefix_tokens=0)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(x)  # (B, E, h, w)
        b, e, h, w = tokens.shape
        tokens = tokens.flatten(2).transpose(1, 2)  # (B, h*w, E)
        tokens = self.pos_drop(tokens + self.position_embedding(h, w).to(tokens.dtype))
        tokens = self.norm(self.blocks(tokens))
        return self.decoder(tokens.transpose(1, 2).reshape(b, e, h, w))


class ResUNet(nn.Module):
    """Residual U-Net: ResBlocks at len(filters) levels with max pooling, a bottleneck, and
    transposed-convolution upsampling with skip concatenation; (B, width, H, W) in and out."""

    def __init__(self, width: int, filters: tuple[int, ...], bottleneck: int, dropout: float):
        super().__init__()
        self.down = nn.ModuleList()
        cin = width
        for f in filters:
            self.down.append(ResBlock(cin, f, dropout))
            cin = f
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ResBlock(cin, bottleneck, dropout)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        cin = bottleneck
        for f in reversed(filters):
            self.up.append(nn.Sequential(nn.ConvTranspose2d(cin, f, 2, stride=2, bias=False), nn.BatchNorm2d(f)))
            self.merge.append(ResBlock(2 * f, f, dropout))
            cin = f
        self.out = nn.Conv2d(cin, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.out(x)


class GlaViTU(nn.Module):
    """The network; `forward` returns (logits, aux_logits or None). Input checks are the caller's."""

    def __init__(self, groups: dict[str, int], num_classes: int = 1, cfg: GlaViTUConfig | None = None):
        super().__init__()
        cfg = cfg or GlaViTUConfig()
        self.cfg = cfg
        width = cfg.embed_dim
        self.fusion = FusionBlock(groups, width, cfg.dropout)
        self.location = LocationEncoder(width, cfg.dropout) if cfg.location_encoding else None
        self.setr = SETR(width, cfg)
        self.aux_head = nn.Conv2d(width, num_classes, 1) if cfg.aux_weight > 0 else None
        self.unet = ResUNet(width, cfg.unet_filters, cfg.bottleneck, cfg.dropout)
        self.head = nn.Conv2d(width, num_classes, 1)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return math.lcm(self.cfg.patch_size, 2 ** len(self.cfg.unet_filters))

    def forward(self, x: Tensor, location: Tensor | None = None, group_present: Tensor | None = None,
                with_aux: bool = True) -> tuple[Tensor, Tensor | None]:
        fused = self.fusion(x, group_present)
        if self.location is not None:
            if location is None:
                raise ValueError("this GlaViTU was built with location_encoding=True: pass location, "
                                 "a (B, 2) tensor of (lon, lat) in degrees")
            fused = fused + self.location(location).to(fused.dtype)[:, :, None, None]
        enc1 = self.setr(fused) + fused
        aux = self.aux_head(enc1) if with_aux and self.aux_head is not None else None
        enc2 = self.unet(enc1) + enc1
        return self.head(enc2), aux


__all__ = ["GlaViTU", "location_features"]
