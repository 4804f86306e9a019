"""Patches for training and evaluation, served by a LightningDataModule.

Training patches are centred on random glacier pixels (Diaconu & Bamber 2023); evaluation
patches tile each cube on a regular overlapping grid. Every sample carries a `valid` mask
(no data, cloud and cloud shadow are invalid) so losses and metrics can ignore those pixels.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from glaciermap.config import PatchesConfig
from glaciermap.data.cubes import read_cube, read_index
from glaciermap.data.folds import Fold
from glaciermap.errors import ConfigError


@dataclass
class PreparedCube:
    """A cube reduced to what the model eats: normalised bands, masks, group presence."""

    image: np.ndarray  # (C, H, W) float32, normalised, NaN kept (zeroed per patch)
    target: np.ndarray  # (H, W) uint8, all-glacier mask
    glacier: np.ndarray  # (H, W) uint8, this glacier
    valid: np.ndarray  # (H, W) bool
    location: np.ndarray  # (2,) lon, lat
    glacier_pixels: np.ndarray  # (N, 2) row/col of this glacier's pixels


def prepare_cube(path: Path, groups: dict[str, list[str]], stats: dict[str, dict[str, float]]) -> PreparedCube:
    """Load a cube, select the sensor set's bands in order and normalise them."""
    cube = read_cube(path)
    bands = [b for bs in groups.values() for b in bs]
    missing = [b for b in bands if b not in stats]
    if missing:
        raise ConfigError(f"no normalisation statistics for band(s) {missing}",
                          hint="the sensor set asks for bands the training cubes lack")
    img = cube.select(bands)
    mean = np.array([stats[b]["mean"] for b in bands], np.float32)[:, None, None]
    std = np.array([stats[b]["std"] for b in bands], np.float32)[:, None, None]
    img = (img - mean) / std
    return PreparedCube(
        image=img, target=cube.mask_all, glacier=cube.mask_glacier,
        valid=cube.mask_invalid == 0,
        location=np.array([cube.attrs.get("lon", 0.0), cube.attrs.get("lat", 0.0)], np.float32),
        glacier_pixels=np.argwhere(cube.mask_glacier == 1),
    )


class CubeCache:
    """Per-process LRU cache of prepared cubes (cubes are small; whole regions never are)."""

    def __init__(self, groups: dict[str, list[str]], stats: dict, max_items: int = 128):
        self.groups, self.stats, self.max_items = groups, stats, max_items
        self._items: OrderedDict[Path, PreparedCube] = OrderedDict()

    def __getitem__(self, path: Path) -> PreparedCube:
        if path in self._items:
            self._items.move_to_end(path)
            return self._items[path]
        cube = prepare_cube(path, self.groups, self.stats)
        self._items[path] = cube
        if len(self._items) > self.max_items:
            self._items.popitem(last=False)
        return cube


def crop(cube: PreparedCube, groups: dict[str, list[str]], y0: int, x0: int, size: int) -> dict[str, torch.Tensor]:
    """A size x size window at (y0, x0), padded as no data where it leaves the cube."""
    c, h, w = cube.image.shape
    img = np.full((c, size, size), np.nan, np.float32)
    tgt = np.zeros((size, size), np.float32)
    gla = np.zeros((size, size), np.float32)
    val = np.zeros((size, size), bool)
    ys, xs = max(y0, 0), max(x0, 0)
    ye, xe = min(y0 + size, h), min(x0 + size, w)
    if ye > ys and xe > xs:
        dst = (slice(ys - y0, ye - y0), slice(xs - x0, xe - x0))
        img[(slice(None), *dst)] = cube.image[:, ys:ye, xs:xe]
        tgt[dst] = cube.target[ys:ye, xs:xe]
        gla[dst] = cube.glacier[ys:ye, xs:xe]
        val[dst] = cube.valid[ys:ye, xs:xe]
    present, start = [], 0
    for bands in groups.values():
        present.append(bool(np.isfinite(img[start:start + len(bands)]).any()))
        start += len(bands)
    return {
        "image": torch.from_numpy(np.nan_to_num(img, nan=0.0)),
        "target": torch.from_numpy(tgt)[None],
        "glacier": torch.from_numpy(gla)[None],
        "valid": torch.from_numpy(val)[None],
        "group_present": torch.tensor(present),
        "location": torch.from_numpy(cube.location),
    }


def augment(sample: dict[str, torch.Tensor], gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random flips and 90-degree rotations, applied alike to image and masks."""
    k = int(torch.randint(4, (1,), generator=gen))
    flip = bool(torch.randint(2, (1,), generator=gen))
    out = dict(sample)
    for key in ("image", "target", "glacier", "valid"):
        t = torch.rot90(sample[key], k, dims=(-2, -1))
        out[key] = torch.flip(t, dims=(-1,)) if flip else t
    return out


class GlacierPatches(Dataset):
    """Training patches: a random glacier, a random pixel of it as the centre, then augment."""

    def __init__(self, paths: list[Path], groups: dict[str, list[str]], stats: dict, size: int,
                 length: int, augment: bool = True, seed: int = 0):
        if not paths:
            raise ConfigError("no training cubes for this fold")
        self.paths, self.groups, self.size, self.length = paths, groups, size, length
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.cache = CubeCache(groups, stats)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) % 2**63)
        path = self.paths[int(torch.randint(len(self.paths), (1,), generator=gen))]
        cube = self.cache[path]
        if len(cube.glacier_pixels):
            cy, cx = cube.glacier_pixels[int(torch.randint(len(cube.glacier_pixels), (1,), generator=gen))]
        else:  # glacier too small to hold a pixel centre: take the cube centre
            cy, cx = cube.target.shape[0] // 2, cube.target.shape[1] // 2
        sample = crop(cube, self.groups, int(cy) - self.size // 2, int(cx) - self.size // 2, self.size)
        return augment(sample, gen) if self.augment else sample


class EpochSampler(Sampler[int]):
    """Sequential indices; Lightning's per-epoch `set_epoch` reaches the dataset, so every epoch
    draws new (but reproducible) patches, in the main process and in fresh workers alike."""

    def __init__(self, dataset: GlacierPatches):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        return iter(range(len(self.dataset)))

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


def grid_offsets(length: int, size: int, stride: int) -> list[int]:
    """Window starts covering [0, length) with windows of `size` every `stride` (last one flush)."""
    if length <= size:
        return [0]
    stride = min(stride, size)  # a stride above the window size would leave pixels uncovered
    starts = list(range(0, length - size, stride))
    return starts + [length - size]


class GridPatches(Dataset):
    """Evaluation patches: each cube tiled by an overlapping regular grid."""

    def __init__(self, paths: list[Path], groups: dict[str, list[str]], stats: dict, size: int, stride: int):
        self.groups, self.size = groups, size
        self.cache = CubeCache(groups, stats, max_items=8)
        self.items: list[tuple[Path, int, int]] = []
        for p in paths:
            h, w = self.cache[p].target.shape
            self.items += [(p, y, x) for y in grid_offsets(h, size, stride) for x in grid_offsets(w, size, stride)]

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

    def paths(self, glacier_ids: list[str], role: str = "inventory") -> list[Path]:
        """Cube paths of the given glaciers for one role (inventory or recent)."""
        if self.index is None:
            self.index = read_index(self.cubes_dir)
        rows = self.index[(self.index["role"] == role) & self.index["glacier_id"].isin(glacier_ids)]
        return [self.cubes_dir / p for p in rows["path"]]

    def setup(self, stage: str | None = None) -> None:
        stats = self.fold.stats
        if stage in (None, "fit"):
            self.train_set = GlacierPatches(self.paths(self.fold.train), self.groups, stats, self.cfg.size,
                                            self.cfg.samples_per_epoch, self.cfg.augment, self.seed)
            self.val_set = GridPatches(self.paths(self.fold.val), self.groups, stats, self.cfg.size,
                                       self.cfg.eval_stride)
        if stage in (None, "test"):
            self.test_set = GridPatches(self.paths(self.fold.test), self.groups, stats, self.cfg.size,
                                        self.cfg.eval_stride)

    def _loader(self, ds: Dataset, sampler: Sampler | None = None) -> DataLoader:
        # workers are not persistent: each epoch's fresh workers carry the dataset's new epoch
        return DataLoader(ds, batch_size=self.cfg.batch_size, sampler=sampler,
                          num_workers=self.cfg.num_workers, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, EpochSampler(self.train_set))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set)
