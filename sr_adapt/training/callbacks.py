"""Callbacks shared by every experiment."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from sr_adapt.io.atomic import atomic_write_json


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Lightning's callback_metrics as plain floats (non-finite values become None in JSON)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                continue
            value = value.item()
        if isinstance(value, (int, float)):
            out[key] = float(value) if math.isfinite(value) else None
    return out


class MetricsJson(pl.Callback):
    """Writes the latest logged scalars to ``path`` (JSON) after each validation and at the end.

    An offline W&B run has no summary file and a CSV log is per step: this file is the
    run's result contract (``val/psnr``, ``val/ssim``, ``global_step``, ...).
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def _write(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        data = scalar_metrics(trainer.callback_metrics)
        data["global_step"] = trainer.global_step
        data["epoch"] = trainer.current_epoch
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and getattr(ckpt, "best_model_path", ""):
            data["best_ckpt"] = ckpt.best_model_path
        atomic_write_json(data, self.path)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(trainer)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer)
