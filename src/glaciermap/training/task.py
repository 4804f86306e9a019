"""The LightningModule for binary glacier segmentation."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as L
import torch
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import (BinaryAccuracy, BinaryF1Score, BinaryJaccardIndex,
                                         BinaryPrecision, BinaryRecall)

from glaciermap.errors import GlaciermapError
from glaciermap.models import build_model
from glaciermap.models.config import ModelConfig
from glaciermap.training.losses import LOSSES

IGNORE = -1


def segmentation_metrics(prefix: str) -> MetricCollection:
    """IoU, precision, recall, F1 and accuracy over valid pixels (invalid ones carry IGNORE)."""
    kw = {"ignore_index": IGNORE}
    return MetricCollection({"iou": BinaryJaccardIndex(**kw), "precision": BinaryPrecision(**kw),
                             "recall": BinaryRecall(**kw), "f1": BinaryF1Score(**kw),
                             "accuracy": BinaryAccuracy(**kw)}, prefix=prefix)


def metric_target(batch: dict[str, Tensor]) -> Tensor:
    """Integer target with invalid pixels set to IGNORE."""
    t = batch["target"].long()
    return torch.where(batch["valid"], t, torch.full_like(t, IGNORE))


class NonFiniteLossError(GlaciermapError):
    """Training produced NaN/inf: stop at once and say where."""


class SegmentationTask(L.LightningModule):
    """Binary glacier segmentation with a masked loss, AdamW and torchmetrics."""

    def __init__(self, model: dict[str, Any], groups: dict[str, int], loss: str = "bce", lr: float = 1e-3,
                 weight_decay: float = 1e-4, scheduler: str = "cosine", max_epochs: int = 20):
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(ModelConfig.model_validate(model), groups)
        self.loss_fn = LOSSES[loss]
        self.val_metrics = segmentation_metrics("val_")
        self.test_metrics = segmentation_metrics("test_")

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.model(batch["image"], batch.get("location"), batch.get("group_present"))

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        logits, aux = self.model.forward_with_aux(batch["image"], batch.get("location"),
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
        self.val_metrics.update(torch.sigmoid(logits), metric_target(batch))
        self.log("val_loss", loss, on_epoch=True, batch_size=batch["image"].shape[0])

    def on_validation_epoch_end(self) -> None:
        metrics = self.val_metrics.compute()
        iou = metrics.pop("val_iou")
        self.log_dict(metrics)
        self.log("val_iou", iou, prog_bar=True)
        self.val_metrics.reset()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_metrics.update(torch.sigmoid(self(batch)), metric_target(batch))

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.test_metrics.reset()

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.hparams.max_epochs)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if self.hparams.scheduler == "plateau":
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=2)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_iou"}}
        return opt
