"""The LightningModule for binary glacier segmentation."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as L
import torch
from torch import Tensor

from glaciermap.config.models import ModelConfig
from glaciermap.errors import GlaciermapError
from glaciermap.metrics import ConfusionCounts, metric_target, scores
from glaciermap.models import build_model
from glaciermap.training.losses import LOSSES


class NonFiniteLossError(GlaciermapError):
    """Training produced NaN/inf: stop at once and say where."""


class SegmentationTask(L.LightningModule):
    """Binary glacier segmentation with a masked loss, AdamW and torchmetrics."""

    def __init__(self, model: dict[str, Any], groups: dict[str, int], loss: str = "bce", lr: float = 1e-3,
                 weight_decay: float = 1e-4, scheduler: str = "cosine", max_epochs: int = 20):
        super().__init__()
        self.save_hyperparameters(logger=False)  # in checkpoints; MLflow gets tracking.run_params once
        self.model = build_model(ModelConfig.model_validate(model), groups)
        self.loss_fn = LOSSES[loss]
        self.val_counts = ConfusionCounts()
        self.test_counts = ConfusionCounts()

    @property
    def channels_last(self) -> bool:
        """The model's preference (the CNNs: the same values, faster convolutions on CPU and GPU)."""
        return getattr(self.model, "prefers_channels_last", False)

    def on_fit_start(self) -> None:
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    def _image(self, batch: dict[str, Tensor]) -> Tensor:
        x = batch["image"]
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(self._image(batch), batch.get("location"), batch.get("group_present"))

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        logits, aux = self.model.forward_with_aux(self._image(batch), batch.get("location"),
                                                  batch.get("group_present"))
        loss = self.loss_fn(logits, batch["target"], batch["valid"])
        for weight, aux_logits in aux:
            loss = loss + weight * self.loss_fn(aux_logits, batch["target"], batch["valid"])
        return loss, logits

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, _ = self._loss(batch)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss.item()} at epoch {self.current_epoch}, batch {batch_idx}",
                hint="lower train.lr, check the inputs for extreme values, or use precision 32-true")
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True,
                 batch_size=batch["image"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, logits = self._loss(batch)
        self.val_counts.update(torch.sigmoid(logits), metric_target(batch["target"], batch["valid"]))
        self.log("val_loss", loss, on_epoch=True, batch_size=batch["image"].shape[0])

    def on_validation_epoch_end(self) -> None:
        metrics = self._scores(self.val_counts, "val_")
        iou = metrics.pop("val_iou")
        self.log_dict(metrics)
        self.log("val_iou", iou, prog_bar=True)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_counts.update(torch.sigmoid(self(batch)), metric_target(batch["target"], batch["valid"]))

    def on_test_epoch_end(self) -> None:
        self.log_dict(self._scores(self.test_counts, "test_"))

    @staticmethod
    def _scores(counts: ConfusionCounts, prefix: str) -> dict[str, float]:
        """The epoch's scores (glaciermap.metrics; 0 where undefined: monitors need a number) and how
        many valid pixels they count (summed over DDP ranks, like the counts)."""
        c = counts.compute()
        counts.reset()
        out = {f"{prefix}{k}": v for k, v in scores(c.tolist(), zero_division=0.0).items()}
        return {**out, f"{prefix}pixels": float(c.sum())}

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.hparams.max_epochs)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if self.hparams.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=2)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_iou"}}
        return opt
