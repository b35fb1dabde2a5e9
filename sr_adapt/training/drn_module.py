"""Closed-loop DRN training (primal + dual regression) as a LightningModule.

Loss, following the official DRN trainer (L1 everywhere, images in [0,1]):

- levels k = 0..L (L = log2(scale)): level 0 is the LR input, level L the HR image;
  targets are ``lr_levels + [hr]`` with ``lr_levels = [HR/s, ..., HR/2]``;
- primal = sum_k L1(P(x)_k, target_k)            (final output and every intermediate one);
- dual   = sum_i L1(D_i(P(x)_{i+1}), lr_levels_i) (each dual model maps level i+1 to level i);
- total  = primal + dual_weight * dual.

LR-only samples (DRN-Adapt, mixed into batches at ratio rho by the datamodule) get only
``dual_weight * L1(D_0(P(x)_1), x)``: the closed loop needs no HR image.

Losses are on the [0,1] scale (the official code reports them on 0..255: x255).
A batch whose total loss exceeds ``skip_threshold`` x the previous epoch's mean loss is
skipped (no optimizer step), as in the official trainer.
"""

from __future__ import annotations

from collections.abc import Callable
import logging
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.training.base_module import SRLitModule
from sr_adapt.models.drn import DRN, build_dual_models

log = logging.getLogger("sr_adapt")


def _l1_per_sample(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute error of each sample: (B, ...) x2 -> (B,)."""
    return (a - b).abs().flatten(1).mean(1)


def closed_loop_losses(
    sr: list[Tensor], duals: nn.ModuleList, lr_levels: list[Tensor], hr: Tensor, paired: Tensor | None = None
) -> dict[str, Tensor]:
    """DRN (paired) and DRN-Adapt (mixed) loss terms of one batch, per sample.

    Paired samples: primal L1 at every level + dual L1 at every level (official trainer).
    LR-only samples (``paired`` False): only the dual L1 at the level they have,
    ``L1(D_0(P(x)_1), x)``; their ``lr_levels[1:]`` and ``hr`` are placeholders.

    Args:
        sr: primal outputs, level 0..L, (B, 3, h*2^k, w*2^k) in [0,1].
        duals: L dual models, ``duals[i]`` maps level i+1 to level i.
        lr_levels: L tensors, level 0..L-1 targets (level 0 is the network input).
        hr: (B, 3, h*2^L, w*2^L) target of the last level.
        paired: (B,) bool; None means all paired.
    Returns:
        ``primal`` (B,), ``dual`` (B,) per-sample sums over levels (zeros where not applicable).
    """
    targets = [*lr_levels, hr]
    mask = torch.ones(sr[0].shape[0], dtype=torch.bool, device=sr[0].device) if paired is None else paired.bool()
    if bool(mask.all()):
        primal = sum(_l1_per_sample(out, tgt) for out, tgt in zip(sr, targets, strict=True))
        dual = sum(_l1_per_sample(d(sr[i + 1]), lr_levels[i]) for i, d in enumerate(duals))
        return {"primal": primal, "dual": dual}
    weight = mask.to(sr[0].dtype)
    primal = sum(_l1_per_sample(out, tgt) for out, tgt in zip(sr, targets, strict=True)) * weight
    # level 0 (the input itself) is a target for every sample; higher levels only for paired ones
    dual = _l1_per_sample(duals[0](sr[1]), lr_levels[0])
    for i in range(1, len(duals)):
        dual = dual + _l1_per_sample(duals[i](sr[i + 1]), lr_levels[i]) * weight
    return {"primal": primal, "dual": dual}


class DRNLitModule(SRLitModule):
    """Trains a primal DRN and its dual models jointly.

    Args:
        net: the primal network (its ``scale``/``n_feats`` size the dual models).
        optimizer: partial optimizer, called with the parameter groups (primal and duals).
        scheduler: partial LR scheduler (stepped every optimizer step), or None.
        dual_weight: weight of the dual loss (paper: 0.1).
        skip_threshold: skip a batch whose loss > threshold x previous epoch mean (official: 1e6).
        channels_last: channels_last memory format (None: on CUDA only).
        compile: wrap the forward in ``torch.compile``.
        init_from: start from these weights (fine-tuning): our ``.ckpt``, an official DRN ``.pt``
            or a PaddleGAN ``.pdparams``; must match ``net``'s variant and scale.
        init_dual_from: official dual-model list file (``dual_model_*.pt``) to go with ``init_from``.
        freeze: parameter-name prefixes to keep fixed, e.g. ``[duals]`` or ``[net.head, net.down]``.
    """

    def __init__(
        self,
        net: DRN,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        dual_weight: float = 0.1,
        skip_threshold: float = 1e6,
        channels_last: bool | None = None,
        compile: bool = False,
        init_from: str | None = None,
        init_dual_from: str | None = None,
        freeze: list[str] | tuple[str, ...] = (),
    ) -> None:
        super().__init__(net, optimizer, scheduler, "step", channels_last, compile)
        # Only plain values go into checkpoints (they load with weights_only=True).
        freeze = [str(p) for p in (freeze or ())]  # plain list (not a ListConfig) for the checkpoint
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer", "scheduler"])
        self.duals = build_dual_models(net.scale, net.config.n_feats, net.config.negval)
        self.error_last = float("inf")  # previous epoch's mean loss (official starts at 1e8)
        self.train_loss_epoch = MeanMetric()
        if init_from:
            self._init_weights(init_from, init_dual_from)
        self.freeze_prefixes(freeze)

    def _init_weights(self, path: str, dual_path: str | None) -> None:
        loaded = load_checkpoint(path, dual_path=dual_path, expect={"arch": self.net.arch, **self.net.hparams()})
        self.net.load_state_dict(loaded.net.state_dict())
        if loaded.duals is not None:
            self.duals.load_state_dict(loaded.duals.state_dict())
        else:
            log.warning("model.init_from=%s has no dual models: they start from scratch (see model.init_dual_from)", path)
        log.info("initialised from %s (%s)", path, loaded.meta.get("variant", loaded.source))

    # --- training ----------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        batch = self.memory_format(batch)
        sr = self(batch["lr"])
        paired = batch.get("paired")
        terms = closed_loop_losses(sr, self.duals, batch["lr_levels"], batch["hr"], paired)
        # Paper objective: mean over the batch of 1_paired * L_P + lambda * L_D.
        loss = (terms["primal"] + self.hparams.dual_weight * terms["dual"]).mean()
        n = batch["lr"].shape[0]
        logs = {"train/loss": loss}
        mask = torch.ones(n, dtype=torch.bool, device=loss.device) if paired is None else paired.bool()
        if mask.any():
            logs["train/primal"] = terms["primal"][mask].mean()
            logs["train/dual_paired"] = terms["dual"][mask].mean()
        if not mask.all():
            logs["train/dual_unpaired"] = terms["dual"][~mask].mean()
        logs["train/lr"] = self.optimizers().param_groups[0]["lr"]
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=n)
        self.log("train/loss_avg", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        # Same decision on every rank: compare the rank-averaged loss.
        mean_loss = self.trainer.strategy.reduce(loss.detach(), reduce_op="mean")
        if mean_loss.item() > self.hparams.skip_threshold * self.error_last or not torch.isfinite(mean_loss):
            self.log("train/skipped", 1.0, on_step=True, reduce_fx="sum", batch_size=n)
            return None
        self.train_loss_epoch.update(loss.detach())
        return loss

    def on_train_epoch_end(self) -> None:
        if self.train_loss_epoch.update_count:
            self.error_last = float(self.train_loss_epoch.compute())
        self.train_loss_epoch.reset()

    # --- optimisation / checkpoints ------------------------------------------------
    def param_groups(self) -> list[dict[str, Any]]:
        return [
            {"params": [p for p in self.net.parameters() if p.requires_grad], "name": "primal"},
            {"params": [p for p in self.duals.parameters() if p.requires_grad], "name": "dual"},
        ]

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"error_last": self.error_last}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.error_last = checkpoint.get("sr_adapt", {}).get("error_last", self.error_last)
