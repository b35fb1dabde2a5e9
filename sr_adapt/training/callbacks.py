"""Callbacks shared by every experiment."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import logging

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import RichProgressBar
from pytorch_lightning.utilities.exceptions import SIGTERMException

from sr_adapt.io.atomic import atomic_write_json

log = logging.getLogger("sr_adapt.training")

#: Exceptions that stop a run from outside (``docker stop``, schedulers, Ctrl-C): the run saves its state.
STOP_SIGNALS = (SIGTERMException, KeyboardInterrupt)


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

    def _write(self, trainer: pl.Trainer, finished: bool, stopped_by: str | None = None) -> None:
        if not trainer.is_global_zero:
            return
        data: dict[str, Any] = scalar_metrics(trainer.callback_metrics)
        data["global_step"] = trainer.global_step
        data["epoch"] = trainer.current_epoch
        data["finished"] = finished
        if stopped_by:
            data["stopped_by"] = stopped_by
        ckpt = trainer.checkpoint_callback
        if ckpt is not None and getattr(ckpt, "best_model_path", ""):
            data["best_ckpt"] = ckpt.best_model_path
        atomic_write_json(data, self.path)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._write(trainer, finished=False)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._write(trainer, finished=True)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        reason = "SIGTERM" if isinstance(exception, SIGTERMException) else type(exception).__name__
        self._write(trainer, finished=False, stopped_by=reason)


class LastCheckpoint(pl.Callback):
    """Keeps ``<dirpath>/last.ckpt`` at the latest step, whatever the validation metric did: every
    ``every_n_train_steps`` steps (0: never in between), at the end of training, and when the run is
    stopped from outside (SIGTERM, Ctrl-C). The best checkpoint by ``val/psnr`` is the separate
    ``model_checkpoint`` callback's."""

    def __init__(self, dirpath: str, every_n_train_steps: int = 0, filename: str = "last.ckpt") -> None:
        self.path = Path(dirpath) / filename
        self.every = int(every_n_train_steps)
        self._saved_step = -1

    def _save(self, trainer: pl.Trainer) -> None:
        if trainer.global_step == self._saved_step or trainer.global_step == 0:
            return
        trainer.save_checkpoint(self.path, weights_only=False)
        self._saved_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.every and trainer.global_step % self.every == 0:
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._save(trainer)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if isinstance(exception, STOP_SIGNALS):
            self._save(trainer)
            log.warning("stopped at step %d (%s): saved %s; resume with ckpt_path=%s", trainer.global_step,
                        "SIGTERM" if isinstance(exception, SIGTERMException) else type(exception).__name__,
                        self.path, self.path)


class RunProgressBar(RichProgressBar):
    """Lightning's rich progress bar over the whole run: steps done out of ``trainer.max_steps`` and the time
    left for the run (Lightning's counts the batches of one epoch, here a validation interval, and shows
    "Epoch 0/-2" for a run limited by steps). Without a step limit it is Lightning's bar."""

    @property
    def _by_steps(self) -> bool:
        return (self.trainer.max_steps or 0) > 0

    @property
    def total_train_batches(self) -> int | float:
        return self.trainer.max_steps if self._by_steps else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        if not self._by_steps:
            return super()._get_train_description(current_epoch)
        return f"{'Steps':{len(self.validation_description)}}"

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._by_steps or self.train_progress_bar_id is None:
            super().on_train_epoch_start(trainer, pl_module)  # the first epoch (or no step limit): Lightning's
            if self._by_steps:
                self._update(self.train_progress_bar_id, trainer.global_step)  # a resumed run starts where it is
        # later epochs: the run's bar goes on (no reset)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not self._by_steps:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()
        return None
