"""Many cubes on many devices: Lightning's `Trainer.predict` with DDP over a list of cubes.

No home-made scheduler: the cube list is a Dataset, Lightning's distributed sampler deals it out
(each cube to exactly one rank), and each rank runs `fn(item, device)` on its share, which writes
its own outputs (rasters). Nothing is gathered: the caller reads what the ranks wrote.

    map_cubes(fn, items, accelerator="cpu", devices=2, strategy="ddp_spawn")   # tests: gloo on CPU
    map_cubes(fn, items, accelerator="gpu", devices=8, num_nodes=2, strategy="ddp")  # a cluster

`fn` must be picklable (a module-level function or a functools.partial of one) for spawned ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, Dataset


class Items(Dataset):
    """The work list as a dataset: item i is passed to `fn` as it is (no collation)."""

    def __init__(self, items: Sequence[Any]):
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        return self.items[i]


class MapModule(L.LightningModule):
    """Runs `fn(item, device)` for each item of its rank (fn moves what it needs to the device)."""

    def __init__(self, fn: Callable[[Any, torch.device], Any]):
        super().__init__()
        self.fn = fn

    def predict_step(self, item: Any, batch_idx: int) -> None:
        self.fn(item, self.device)


def map_cubes(fn: Callable[[Any, torch.device], Any], items: Sequence[Any], *, accelerator: str = "auto",
              devices: int | str = "auto", num_nodes: int = 1, strategy: str = "auto",
              progress: bool = False) -> bool:
    """Call `fn(item, device)` once for every item, spread over the ranks of a Lightning Trainer.

    Returns whether this process is the global rank 0 (under `ddp` every rank runs the caller's
    code: only rank 0 should go on to write what depends on all the ranks' outputs)."""
    if not items:
        return True
    trainer = L.Trainer(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy,
                        logger=False, enable_checkpointing=False, enable_progress_bar=progress,
                        enable_model_summary=False, precision="32-true")
    loader = DataLoader(Items(items), batch_size=None, shuffle=False, num_workers=0)
    trainer.predict(MapModule(fn), dataloaders=loader, return_predictions=False)
    return trainer.is_global_zero
