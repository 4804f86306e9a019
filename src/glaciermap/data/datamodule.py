"""Patches for training and evaluation, served by a LightningDataModule.

Training patches are centred on random glacier pixels (Diaconu & Bamber 2023), optionally more
often on debris-covered ice, on the outline's margin, on the ground around the glaciers and on the
ground of the context tiles beyond every glacier cube (`patches.debris_centres`, `margin_centres`,
`background_centres`, `context_centres`), then flipped,
rotated, optionally re-lit (`Photometric`) and stripped of one sensor group (`group_dropout`);
evaluation patches tile each cube on a regular overlapping grid. Every sample carries a `valid`
mask (no data, cloud and cloud shadow are invalid) so losses and metrics can ignore those pixels.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections import OrderedDict
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pandas as pd
import torch
from scipy import ndimage
from torch.utils.data import DataLoader, Dataset, Sampler

from glaciermap.config import PatchesConfig
from glaciermap.data.cubes import read_context, read_index
from glaciermap.data.folds import Fold
from glaciermap.device import loader_workers
from glaciermap.data.windows import PreparedCube, band_stats, crop, prepare_cube, window_starts
from glaciermap.errors import ConfigError


class CubeCache:
    """Per-process LRU cache of prepared cubes (cubes are small; whole regions never are)."""

    def __init__(self, groups: dict[str, list[str]], stats: dict, max_items: int = 128, neighbour_margin_px: int = 0,
                 neighbour_margin_of: str = "all"):
        self.groups, self.stats, self.max_items = groups, stats, max_items
        self.neighbour_margin = (neighbour_margin_px, neighbour_margin_of)
        self._warned_undated = False
        self._items: OrderedDict[Path, PreparedCube] = OrderedDict()

    def __getitem__(self, path: Path) -> PreparedCube:
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        cube = prepare_cube(path, self.groups, self.stats)
        width, of = self.neighbour_margin
        if width and of == "other_date" and cube.other_date is None and not self._warned_undated:
            self._warned_undated = True
            warnings.warn(f"{path}: no mask_other_date layer (cubes of a dataset adapter, or ingested without "
                          "data.mark_other_date_outlines), so no outline is known to be of another date: "
                          "patches.neighbour_margin_of: other_date leaves no label of such cubes out", stacklevel=2)
        cube = ignore_neighbour_margins(cube, width, of)
        self._items[path] = cube
        if len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return cube


def ignore_neighbour_margins(cube: PreparedCube, width: int, of: str = "all") -> PreparedCube:
    """The cube with its labels near the other glaciers' outlines left out of the loss (`valid`
    off within `width` pixels of them, inside or out, except on this glacier); unchanged for 0.
    `of` = "other_date": only near the outlines of another inventory epoch than the image
    (`cube.other_date`, the cube's mask_other_date layer; unchanged without it).

    A cube's image is of its own glacier's inventory date, and so is that glacier's outline; its
    neighbours' outlines may be of another date (inventories mix years, as RGI and the simulator
    do). Against a later image, an earlier neighbour outline labels the strip of ice lost since as
    glacier: training would teach that a fresh forefield beside the ice is ice, the halo that
    later maps keep at the retreated edge. Each glacier's margin is still learnt in its own cube."""
    outlines = cube.target if of == "all" else cube.other_date
    if not width or outlines is None:  # no layer: no outline known to be of another date
        return cube
    neighbours = (outlines == 1) & (cube.glacier == 0)
    if not neighbours.any():
        return cube
    return dataclasses.replace(cube, valid=cube.valid & ~(margin_band(neighbours, width) & (cube.glacier == 0)))


#: a compact batch's dtypes (half the image bytes, a quarter of the masks'): what crosses process
#: boundaries and the host-to-GPU link; `to_model_dtypes` restores float32 / bool on the device
COMPACT = {"image": torch.float16, "target": torch.uint8, "glacier": torch.uint8}


def compact(sample: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A sample with image in float16 (normalised values keep ~3 significant digits) and masks in uint8."""
    return {k: v.to(COMPACT[k]) if k in COMPACT else v for k, v in sample.items()}


def to_model_dtypes(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Undo `compact` (a no-op for full-precision batches): float32 image and masks."""
    return {k: v.float() if k in COMPACT and v.dtype != torch.float32 else v for k, v in batch.items()}


def augment(sample: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random flips and 90-degree rotations, applied alike to image and masks."""
    k = int(torch.randint(4, (1,), generator=gen))
    flip = bool(torch.randint(2, (1,), generator=gen))
    out = dict(sample)
    for key in ("image", "target", "glacier", "valid"):
        t = torch.rot90(sample[key], k, dims=(-2, -1))
        out[key] = torch.flip(t, dims=(-1,)) if flip else t
    return out


#: SAR backscatter bands (in dB) that `Photometric` offsets; coherence is a ratio and is left alone
BACKSCATTER_BANDS = ("VV", "VH", "HH", "HV")


class Photometric:
    """What topography does to one surface, drawn per training patch: the same debris is dark on a
    shaded slope and bright on a sunlit one, and its backscatter falls on slopes facing away from
    the radar, while its InSAR coherence and spectral shape stay. Per patch::

        g ~ exp(U(-illumination, illumination))    optical bands (the `optical` group):   x' = g * x
        d ~ U(-backscatter_db, backscatter_db)      backscatter bands (VV, VH, HH, HV):    x' = x + d

    applied to normalised values z = (x - mean) / std as z' = scale * z + shift
    (optical: scale g, shift (g - 1) * mean / std; backscatter: scale 1, shift d / std), the
    `affine` of `crop`. The model then has to tell debris from rock by what illumination does
    not change.
    """

    def __init__(self, groups: dict[str, list[str]], stats: dict, illumination: float, backscatter_db: float):
        bands = [b for bs in groups.values() for b in bs]
        mean, self.std = band_stats(bands, stats)
        self.optical = np.array([b in groups.get("optical", []) for b in bands])
        self.backscatter = np.array([b in BACKSCATTER_BANDS for b in bands])
        self.mean_over_std = mean / self.std
        self.illumination, self.backscatter_db = illumination, backscatter_db

    def __bool__(self) -> bool:
        return bool(self.illumination and self.optical.any()) or bool(self.backscatter_db and self.backscatter.any())

    def draw(self, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(scale, shift), each (C, 1, 1) float32, for one patch."""
        u = 2 * torch.rand(2, generator=gen, dtype=torch.float64).numpy() - 1
        gain, offset_db = float(np.exp(u[0] * self.illumination)), float(u[1] * self.backscatter_db)
        scale = np.where(self.optical, gain, 1.0).astype(np.float32)
        shift = (np.where(self.optical, (gain - 1.0) * self.mean_over_std, 0.0)
                 + np.where(self.backscatter, offset_db / self.std, 0.0)).astype(np.float32)
        return scale[:, None, None], shift[:, None, None]


def margin_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Boolean: the pixels within `width` pixels of the outline of `mask` (non-empty), inside or out."""
    mask = mask.astype(bool)
    inside = ndimage.distance_transform_edt(mask)  # distance to the nearest pixel off the mask
    outside = ndimage.distance_transform_edt(~mask)  # ... to the nearest pixel on it
    return (mask & (inside <= width)) | (~mask & (outside <= width))


def margin_pixels(glacier: np.ndarray, width: int) -> np.ndarray:
    """(N, 2) row/col of the pixels within `width` pixels of the glacier's outline, inside or out:
    the band where retreat happens and where boundaries (debris tongues, shadows) are missed."""
    if not glacier.any():
        return np.empty((0, 2), np.int64)
    return np.argwhere(margin_band(glacier, width))


class CentrePools:
    """A cube's candidate patch centres of one kind: `glacier` (every pixel of this glacier),
    `debris` (its debris-covered pixels; the glacier's where the cube has no debris truth),
    `margin` (`margin_pixels`) or `background` (the cube's valid pixels off every outline: the rock,
    forest, forefield and snow around the glaciers, which glacier-centred patches reach only near
    the ice; the glacier's pixels where the cube has none). Each kind is computed when first drawn
    and kept for the `max_items` most recently drawn (cube, kind) pairs, like `CubeCache` keeps
    cubes."""

    def __init__(self, margin_px: int, max_items: int = 256):
        self.margin_px, self.max_items = margin_px, max_items
        self._pools: OrderedDict[tuple[Path, str], np.ndarray] = OrderedDict()

    def __call__(self, path: Path, cube: PreparedCube, kind: str) -> np.ndarray:
        if kind == "glacier":
            return cube.glacier_pixels
        key = (path, kind)
        if key in self._pools:
            self._pools.move_to_end(key)
            return self._pools[key]
        if kind == "margin":
            pool = margin_pixels(cube.glacier, self.margin_px)
        elif kind == "background":
            off_ice = np.argwhere((cube.target == 0) & cube.valid)
            pool = off_ice if len(off_ice) else cube.glacier_pixels
        else:
            on_debris = (np.argwhere((cube.debris == 1) & (cube.glacier == 1)) if cube.debris is not None
                         else np.empty((0, 2), np.int64))
            pool = on_debris if len(on_debris) else cube.glacier_pixels
        self._pools[key] = pool
        if len(self._pools) > self.max_items:
            self._pools.popitem(last=False)
        return pool


class GlacierPatches(Dataset):
    """Training patches: a random glacier, a random centre on it, then augment.

    The centre is one of the glacier's pixels (Diaconu & Bamber 2023), or, for the shares
    `debris_centres`, `margin_centres` and `background_centres` of the samples, one of its
    debris-covered or margin pixels or of the ground off the ice (`CentrePools`): more of the patches
    then hold the surfaces and boundaries that are missed, and the terrain mistaken for ice. For the
    share `context_centres` the centre is the valid ground of a random context tile
    (`context_paths`, glaciermap.data.context): terrain no glacier cube reaches.
    Then `Photometric` re-lights it where that is on, `augment` flips and rotates it, and with
    probability `group_dropout` one of its sensor groups (drawn uniformly) is marked absent in
    `group_present`, as a missing sensor is: the models zero its channels (GlaViTU's fusion also
    skips it). A model that maps forest with glacier-like coherence as ice has let one group decide.
    """

    def __init__(self, paths: list[Path], groups: dict[str, list[str]], stats: dict, size: int,
                 length: int, augment: bool = True, seed: int = 0, compact: bool = False, *,
                 debris_centres: float = 0.0, margin_centres: float = 0.0, margin_px: int = 16,
                 background_centres: float = 0.0, illumination: float = 0.0, backscatter_db: float = 0.0,
                 group_dropout: float = 0.0, context_centres: float = 0.0, context_paths: list[Path] = (),
                 neighbour_margin_px: int = 0, neighbour_margin_of: str = "all"):
        if not paths:
            raise ConfigError("no training cubes for this fold")
        if context_centres and not context_paths:
            raise ConfigError(f"patches.context_centres is {context_centres} but the cubes hold no context tiles",
                              hint="set data.context_tile_m (e.g. 2560) and re-run `glaciermap ingest` (raw "
                                   "regions only), or set patches.context_centres: 0")
        self.paths, self.groups, self.size, self.length = paths, groups, size, length
        self.augment, self.seed, self.compact = augment, seed, compact
        self.shares = (("debris", debris_centres), ("margin", margin_centres), ("background", background_centres),
                       ("context", context_centres))
        self.context_paths = list(context_paths)
        self.cache = CubeCache(groups, stats, neighbour_margin_px=neighbour_margin_px,
                               neighbour_margin_of=neighbour_margin_of)
        self.pools = CentrePools(margin_px)
        self.photometric = Photometric(groups, stats, illumination, backscatter_db)
        self.group_dropout = group_dropout if len(groups) > 1 else 0.0

    def __len__(self) -> int:
        return self.length

    def centre_kind(self, gen: torch.Generator) -> str:
        """glacier, debris, margin, background or context, with the configured shares (no draw when all are 0:
        the default samples exactly the patches it always has)."""
        if not any(share for _, share in self.shares):
            return "glacier"
        u, edge = float(torch.rand((1,), generator=gen)), 0.0
        for kind, share in self.shares:
            edge += share
            if u < edge:
                return kind
        return "glacier"

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        """Sample `i` of epoch `e`, for key = e * len(self) + i (EpochSampler's indices)."""
        epoch, i = divmod(int(key), self.length)
        gen = torch.Generator().manual_seed(hash((self.seed, epoch, i)) % 2**63)
        path = self.paths[int(torch.randint(len(self.paths), (1,), generator=gen))]
        kind = self.centre_kind(gen)
        if kind == "context":  # the ground of a context tile (no draw unless context_centres > 0)
            path = self.context_paths[int(torch.randint(len(self.context_paths), (1,), generator=gen))]
            kind = "background"
        cube = self.cache[path]
        pool = self.pools(path, cube, kind)
        if len(pool):
            cy, cx = pool[int(torch.randint(len(pool), (1,), generator=gen))]
        else:  # glacier too small to hold a pixel centre: take the cube centre
            cy, cx = cube.target.shape[0] // 2, cube.target.shape[1] // 2
        affine = self.photometric.draw(gen) if self.photometric else None
        sample = crop(cube, self.groups, int(cy) - self.size // 2, int(cx) - self.size // 2, self.size, affine)
        sample = augment(sample, gen) if self.augment else sample
        if self.group_dropout and float(torch.rand((1,), generator=gen)) < self.group_dropout:  # no draw when off
            sample["group_present"][int(torch.randint(len(self.groups), (1,), generator=gen))] = False
        return compact(sample) if self.compact else sample


class EpochSampler(Sampler[int]):
    """Sequential indices that carry the epoch (e * len + i): every epoch draws new but reproducible
    patches, and the epoch reaches persistent workers too (Lightning calls `set_epoch` each epoch)."""

    def __init__(self, dataset: GlacierPatches):
        self.dataset, self.epoch = dataset, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        n = len(self.dataset)
        return iter(range(self.epoch * n, (self.epoch + 1) * n))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


class GridPatches(Dataset):
    """Evaluation patches: each cube tiled by an overlapping regular grid."""

    def __init__(self, paths: list[Path], groups: dict[str, list[str]], stats: dict, size: int, stride: int):
        self.groups, self.size = groups, size
        self.cache = CubeCache(groups, stats, max_items=8)
        self.items: list[tuple[Path, int, int]] = []
        for p in paths:
            h, w = self.cache[p].target.shape
            self.items += [(p, y, x) for y in window_starts(h, size, stride) for x in window_starts(w, size, stride)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        path, y, x = self.items[i]
        return crop(self.cache[path], self.groups, y, x, self.size)


class GlacierDataModule(L.LightningDataModule):
    """Patches of one fold for one sensor set."""

    def __init__(self, cubes_dir: str | Path, fold: Fold, groups: dict[str, list[str]],
                 patches: PatchesConfig, seed: int = 0):
        super().__init__()
        self.cubes_dir, self.fold, self.groups, self.cfg, self.seed = Path(cubes_dir), fold, groups, patches, seed
        self.index: pd.DataFrame | None = None
        # compact batches where a GPU is fed (the link and the workers' pipes are the bottleneck there)
        self.compact = patches.compact_batches == "on" or (patches.compact_batches == "auto"
                                                           and torch.cuda.is_available())

    def paths(self, glacier_ids: list[str], role: str = "inventory") -> list[Path]:
        """Cube paths of the given glaciers for one role (inventory or recent)."""
        if self.index is None:
            self.index = read_index(self.cubes_dir)
        rows = self.index[(self.index["role"] == role) & self.index["glacier_id"].isin(glacier_ids)]
        return [self.cubes_dir / p for p in rows["path"]]

    def context_paths(self) -> list[Path]:
        """Every context tile's cube (all folds train on all: no tile holds a glacier cube's pixel)."""
        return [self.cubes_dir / p for p in read_context(self.cubes_dir)["path"]]

    def setup(self, stage: str | None = None) -> None:
        stats = self.fold.stats
        if stage in (None, "fit"):
            self.train_set = GlacierPatches(self.paths(self.fold.train), self.groups, stats, self.cfg.size,
                                            self.cfg.samples_per_epoch, self.cfg.augment, self.seed,
                                            compact=self.compact, debris_centres=self.cfg.debris_centres,
                                            margin_centres=self.cfg.margin_centres, margin_px=self.cfg.margin_px,
                                            background_centres=self.cfg.background_centres,
                                            illumination=self.cfg.illumination,
                                            backscatter_db=self.cfg.backscatter_db,
                                            group_dropout=self.cfg.group_dropout,
                                            context_centres=self.cfg.context_centres,
                                            context_paths=self.context_paths() if self.cfg.context_centres else [],
                                            neighbour_margin_px=self.cfg.neighbour_margin_px,
                                            neighbour_margin_of=self.cfg.neighbour_margin_of)
            self.val_set = GridPatches(self.paths(self.fold.val), self.groups, stats, self.cfg.size,
                                       self.cfg.eval_stride)
        if stage in (None, "test"):
            self.test_set = GridPatches(self.paths(self.fold.test), self.groups, stats, self.cfg.size,
                                        self.cfg.eval_stride)

    def _loader(self, ds: Dataset, sampler: Sampler | None = None) -> DataLoader:
        workers = loader_workers(self.cfg.num_workers)
        return DataLoader(ds, batch_size=self.cfg.batch_size, sampler=sampler, num_workers=workers,
                          pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)

    def on_after_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        """Compact batches back to float32 on the device (after the cheap transfer)."""
        return to_model_dtypes(batch)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, EpochSampler(self.train_set))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)
