"""DRRN training with the paper recipe (Tai et al. 2017; the public PyTorch port's settings).

- input: Y of the MATLAB-bicubic-upsampled LR patch, target: Y of the HR patch, both in [0, 1]
  (``sr_adapt.data.luma.UpsampledLumaDataset``; x2/x3/x4 mixed per sample);
- loss: MSE; ``loss_reduction="sum"`` over the batch and pixels as in the port
  (``MSELoss(size_average=False)``), which the lr 0.1 / clipping recipe is tuned for; ``"mean"``
  for the per-pixel average;
- SGD lr 0.1, momentum 0.9, weight decay 1e-4, lr halved every N epochs (config);
- adjustable gradient clipping: the gradient norm is clipped to ``clip_theta / current lr``
  (theta 0.01), so the step size stays bounded while the lr is large.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sr_adapt.errors import ConfigError
from sr_adapt.training.base_module import SRLitModule, load_init_from
from sr_adapt.models.drrn import DRRN

log = logging.getLogger("sr_adapt")


class DRRNLitModule(SRLitModule):
    """Trains a :class:`~sr_adapt.models.drrn.DRRN` on (upsampled Y, HR Y) patches.

    Args:
        net: the DRRN.
        optimizer: partial optimizer (paper: SGD lr 0.1, momentum 0.9, weight decay 1e-4).
        scheduler: partial LR scheduler (paper: StepLR gamma 0.5), stepped per ``scheduler_interval``.
        scheduler_interval: ``"epoch"`` (paper) or ``"step"``.
        clip_theta: gradient-norm clip at ``clip_theta / lr``; None or 0 disables it.
        loss_reduction: ``"sum"`` (port) or ``"mean"``.
        init_from: start from these weights: our ``.ckpt``, the port's pickled-model file or a
            plain DRRN state_dict.
        freeze: parameter-name prefixes to keep fixed, e.g. ``[net.input]``.
    """

    def __init__(
        self,
        net: DRRN,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "epoch",
        clip_theta: float | None = 0.01,
        loss_reduction: str = "sum",
        channels_last: bool | None = None,
        compile: bool = False,
        init_from: str | None = None,
        freeze: list[str] | tuple[str, ...] = (),
    ) -> None:
        super().__init__(net, optimizer, scheduler, scheduler_interval, channels_last, compile)
        if loss_reduction not in ("sum", "mean"):
            raise ConfigError(f"model.loss_reduction={loss_reduction!r}: use 'sum' (port) or 'mean'")
        if clip_theta is not None and clip_theta < 0:
            raise ConfigError(f"model.clip_theta={clip_theta}: must be >= 0 (0 or null disables clipping)")
        freeze = [str(p) for p in (freeze or ())]
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer", "scheduler"])
        if init_from:
            loaded = load_init_from(init_from, {"arch": "drrn", **net.hparams()})
            self.net.load_state_dict(loaded.net.state_dict())
            log.info("initialised from %s (%s)", init_from, loaded.meta.get("variant", loaded.source))
        self.freeze_prefixes(freeze)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        batch = self.memory_format(batch)
        pred = self(batch["lr_up_y"])
        loss = F.mse_loss(pred, batch["hr_y"], reduction=self.hparams.loss_reduction)
        n = pred.shape[0]
        self.log_dict(
            {"train/loss": loss, "train/lr": self.optimizers().param_groups[0]["lr"]},
            on_step=True, on_epoch=False, batch_size=n,
        )
        self.log("train/loss_avg", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        theta = self.hparams.clip_theta
        if theta:
            lr = float(optimizer.param_groups[0]["lr"])
            self.clip_gradients(optimizer, gradient_clip_val=theta / lr, gradient_clip_algorithm="norm")
        elif gradient_clip_val:  # trainer.gradient_clip_val still works when theta is off
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
