"""The adaptation objective, for any SR network, as a LightningModule: primal + dual regression.

A network contributes what :class:`~sr_adapt.models.base.SRModel` declares for training: its outputs
(``training_outputs``: DRN every level, a single-output network its SR image), the clean LR levels a
sample carries for them (``lr_level_factors``) and learned dual models where it has them
(``build_duals``: DRN's). The rest (LR-only samples, target and internal pairs, the masks of a mixed
batch, the target loop) is the same for every network.

DRN's loss, following the official DRN trainer (L1 everywhere, images in [0,1]), bit-exact with it:

- levels k = 0..L (L = log2(scale)): level 0 is the LR input, level L the HR image;
  targets are ``lr_levels + [hr]`` with ``lr_levels = [HR/s, ..., HR/2]``;
- primal = sum_k L1(P(x)_k, target_k)            (final output and every intermediate one);
- dual   = sum_i L1(D_i(P(x)_{i+1}), lr_levels_i) (each dual model maps level i+1 to level i);
- total  = primal + dual_weight * dual.

A network without learned duals (RCAN, SwinIR, SPAN, ...): primal = L1(P(x), hr); its only loop is a fixed
degradation: ``dual = L1(bicubic_down(P(x)), x)`` (MATLAB bicubic, the source domain's), and for target
samples with a target dual the target degradation below.

LR-only samples (DRN-Adapt, mixed into batches at ratio rho by the datamodule) get only
``dual_weight * L1(D_0(P(x)_1), x)``: the closed loop needs no HR image.

Target dual (``target_dual``): with ``shared`` (the paper) target-domain samples go through the
same bicubic dual models as the source pairs, so the loop asks P for outputs that *bicubic*
downscale to the target's blurred, noisy x. With ``estimated`` the level-0 loop of every
target sample (LR-only frames and target-domain pairs) goes instead through the target
degradation estimated from the target frames (:mod:`sr_adapt.degradation`), applied to the *final*
output: ``target_weight * L1(k * P(x)_L downscaled, x)``; ``learnable`` starts that kernel at the
estimate and trains it (kept non-negative, summing to 1) with the loss.

Losses are on the [0,1] scale (the official code reports them on 0..255: x255).
A batch whose total loss exceeds ``skip_threshold`` x the previous epoch's mean loss is
skipped (no optimizer step), as in the official trainer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from sr_adapt.degradation import apply_kernel, load_degradation
from sr_adapt.errors import ConfigError
from sr_adapt.models.base import SRModel
from sr_adapt.ops.resize import imresize
from sr_adapt.training.base_module import SRLitModule, load_init_from

log = logging.getLogger("sr_adapt")


def _l1_per_sample(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute error of each sample: (B, ...) x2 -> (B,)."""
    return (a - b).abs().flatten(1).mean(1)


def bicubic_down(sr: Tensor, scale: int) -> Tensor:
    """The source domain's degradation, MATLAB bicubic ``imresize(sr, 1/scale)``: the loop of a network
    without learned duals. (B, 3, H, W) -> (B, 3, H/s, W/s), differentiable."""
    return imresize(sr, scale=1.0 / scale)


def source_loop(scale: int, duals: nn.ModuleList | None) -> Callable[[Tensor], Tensor]:
    """The final SR output (B, 3, H, W) back to the LR size through the source domain's loop: every learned
    dual, ``D_0(...D_{L-1}(sr))``, or :func:`bicubic_down` for a network without them (None or empty)."""
    if not duals:
        return lambda sr: bicubic_down(sr, scale)

    def chain(sr: Tensor) -> Tensor:
        for dual in reversed(duals):
            sr = dual(sr)
        return sr

    return chain


def closed_loop_losses(
    sr: list[Tensor], duals: nn.ModuleList, lr_levels: list[Tensor], hr: Tensor, paired: Tensor | None = None,
    target: Tensor | None = None, target_down: Callable[[Tensor], Tensor] | None = None, lr: Tensor | None = None,
) -> dict[str, Tensor]:
    """Loss terms of one (mixed) batch, per sample: DRN (paired), DRN-Adapt, any network.

    Paired samples: primal L1 at every output + dual L1 at every level (official trainer).
    LR-only samples (``paired`` False): only the dual L1 at the level they have,
    ``L1(D_0(P(x)_1), x)``; their ``lr_levels[1:]`` and ``hr`` are placeholders. With no learned
    duals (an empty ``duals``), ``D_0`` is :func:`bicubic_down` of the final output.

    Args:
        sr: primal outputs, lowest resolution first, the last the SR image: DRN's level 0..L,
            (B, 3, h*2^k, w*2^k), or a single-output network's ``[P(x)]``; in [0,1].
        duals: L dual models, ``duals[i]`` maps level i+1 to level i; empty: bicubic.
        lr_levels: the LR targets, lowest resolution first (level 0 is the network input).
        hr: (B, 3, h*2^L, w*2^L) target of the last level.
        paired: (B,) bool; None means all paired.
        target: (B,) bool, samples of the target domain; None means none.
        target_down: the target degradation's linear part, HR (B, 3, H, W) -> LR; when given, the
            level-0 dual term of target samples is ``L1(target_down(sr[-1]), x)`` (``target_loop``)
            instead of ``L1(D_0(sr[1]), x)``.
        lr: the network input x (default ``lr_levels[0]``): the loop's target. Target pairs have their
            degraded input here and the clean bicubic pyramid in ``lr_levels``.
    Returns:
        ``primal`` (B,), ``dual`` (B,) per-sample sums over levels (zeros where not applicable),
        ``target_loop`` (B,) (zeros for source samples, or when no ``target_down``).
    """
    targets = [*lr_levels, hr][-len(sr):]
    scale = hr.shape[-1] // lr_levels[0].shape[-1]

    def level0(out: list[Tensor]) -> Tensor:  # the loop at the input's level
        return duals[0](out[1]) if len(duals) else bicubic_down(out[-1], scale)

    n, dev = sr[0].shape[0], sr[0].device
    mask = torch.ones(n, dtype=torch.bool, device=dev) if paired is None else paired.bool()
    tmask = torch.zeros(n, dtype=torch.bool, device=dev) if target is None else target.bool()
    through_target = target_down is not None and bool(tmask.any())
    if bool(mask.all()) and not through_target:
        primal = sum(_l1_per_sample(out, tgt) for out, tgt in zip(sr, targets, strict=True))
        dual = _l1_per_sample(level0(sr), lr_levels[0])
        for i in range(1, len(duals)):
            dual = dual + _l1_per_sample(duals[i](sr[i + 1]), lr_levels[i])
        return {"primal": primal, "dual": dual, "target_loop": torch.zeros_like(primal)}
    weight = mask.to(sr[0].dtype)
    primal = sum(_l1_per_sample(out, tgt) for out, tgt in zip(sr, targets, strict=True)) * weight
    # level 0 (the input itself) is a target for every sample -- through the bicubic dual D_0, except for
    # target samples when there is a target dual; higher levels (clean bicubic) only for paired ones
    dual = _l1_per_sample(level0(sr), lr_levels[0])
    if through_target:
        dual = dual * (~tmask).to(sr[0].dtype)
    for i in range(1, len(duals)):
        dual = dual + _l1_per_sample(duals[i](sr[i + 1]), lr_levels[i]) * weight
    loop = torch.zeros_like(primal)
    if through_target:
        x = lr_levels[0] if lr is None else lr
        loop[tmask] = _l1_per_sample(target_down(sr[-1][tmask]), x[tmask])
    return {"primal": primal, "dual": dual, "target_loop": loop}


TARGET_DUALS = ("shared", "estimated", "learnable")


class TargetDual(nn.Module):
    """The target degradation's linear part as a dual model: HR (B, 3, H, W) -> (B, 3, H/s, W/s).

    ``learnable``: the kernel is a parameter started at the estimate; the one applied is its
    non-negative part renormalised to sum to 1 (a downscaler cannot gain or lose brightness)."""

    def __init__(self, kernel: Tensor, scale: int, learnable: bool) -> None:
        super().__init__()
        self.scale = scale
        if learnable:
            self.kernel = nn.Parameter(kernel.clone().float())
        else:
            self.register_buffer("kernel", kernel.clone().float())

    def effective_kernel(self) -> Tensor:
        k = self.kernel.clamp(min=0) if isinstance(self.kernel, nn.Parameter) else self.kernel
        return k / k.sum().clamp(min=1e-8)

    def forward(self, hr: Tensor) -> Tensor:
        return apply_kernel(hr, self.effective_kernel(), self.scale)


class AdaptLitModule(SRLitModule):
    """Trains a primal network and its dual models (DRN's, where it has them) jointly.

    Args:
        net: the primal network; its ``build_duals()`` gives the learned dual models (DRN: one per 2x step).
        optimizer: partial optimizer, called with the parameter groups (primal and duals).
        scheduler: partial LR scheduler (stepped every optimizer step), or None.
        dual_weight: weight of the dual loss (paper: 0.1).
        skip_threshold: skip a batch whose loss > threshold x previous epoch mean (official: 1e6).
        channels_last: channels_last memory format (None: on, CPU and CUDA).
        compile: wrap the forward in ``torch.compile``.
        init_from: start from these weights (fine-tuning): our ``.ckpt``, an official DRN ``.pt``, a
            PaddleGAN ``.pdparams`` or community weights (spandrel); must match ``net``'s architecture and scale.
        init_dual_from: official dual-model list file (``dual_model_*.pt``) to go with ``init_from``.
        freeze: parameter-name prefixes to keep fixed, e.g. ``[duals]`` or ``[net.head, net.down]``.
        target_dual: ``shared`` (paper: target samples use the bicubic duals; without learned duals,
            :func:`bicubic_down`), ``estimated`` (their
            loop goes through the target degradation of ``degradation_file``, fixed) or ``learnable``
            (started there, trained).
        degradation_file: the target degradation (``degradation.pt``); needed unless ``shared`` and
            ``correct_input`` is off.
        target_weight: weight of the target loop term (None: ``dual_weight``).
        correct_input: put the degradation's input correction (:mod:`sr_adapt.degradation.correction`:
            the filter that maps the target degradation onto bicubic) in front of the network as its
            input filter (``net.input_filter``, trained with the rest unless frozen); the adapted
            model then expects target-domain LR input, so every training sample should be a target one.
    """

    def __init__(
        self,
        net: SRModel,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        dual_weight: float = 0.1,
        skip_threshold: float = 1e6,
        channels_last: bool | None = None,
        compile: bool = False,
        init_from: str | None = None,
        init_dual_from: str | None = None,
        freeze: list[str] | tuple[str, ...] = (),
        target_dual: str = "shared",
        degradation_file: str | None = None,
        target_weight: float | None = None,
        correct_input: bool = False,
    ) -> None:
        super().__init__(net, optimizer, scheduler, "step", channels_last, compile)
        # Only plain values go into checkpoints (they load with weights_only=True).
        freeze = [str(p) for p in (freeze or ())]  # plain list (not a ListConfig) for the checkpoint
        self.save_hyperparameters(logger=False, ignore=["net", "optimizer", "scheduler"])
        self.duals = net.build_duals() or nn.ModuleList()  # empty: the loop runs through bicubic_down
        self._training_outputs: Callable[[Tensor], list[Tensor]] = net.training_outputs
        if target_dual not in TARGET_DUALS:
            raise ConfigError(f"model.target_dual={target_dual!r} must be one of {', '.join(TARGET_DUALS)}")
        self.target_dual: TargetDual | None = None
        if target_dual != "shared" or correct_input:
            if not degradation_file:
                what = f"model.target_dual={target_dual}" if target_dual != "shared" else "model.correct_input=true"
                raise ConfigError(f"{what} needs the target degradation: set degradation_file "
                                  "(a degradation.pt), or leave it null with LR-only training data to estimate one")
            self.degradation = load_degradation(degradation_file, "degradation_file", net.scale)
        if target_dual != "shared":
            self.target_dual = TargetDual(self.degradation.kernel, net.scale, learnable=target_dual == "learnable")
        self.error_last = float("inf")  # previous epoch's mean loss (official starts at 1e8)
        self.train_loss_epoch = MeanMetric()
        if init_from:
            self._init_weights(init_from, init_dual_from)
        if correct_input:
            if self.degradation.correction is None:
                raise ConfigError(f"model.correct_input=true but degradation_file={degradation_file} has no input "
                                  "correction: let the training task fit one (it does before training), or estimate anew")
            self.net.set_input_filter(self.degradation.correction)
        self.freeze_prefixes(freeze)

    @property
    def lr_factors(self) -> list[int]:
        """The LR levels every training sample carries for this network (the datamodule asks)."""
        return self.net.lr_level_factors()

    def forward(self, x: Tensor) -> list[Tensor]:
        """The network's training outputs (:meth:`~sr_adapt.models.base.SRModel.training_outputs`)."""
        return self._training_outputs(x)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.use_compile and stage == "fit":
            self._training_outputs = torch.compile(self.net.training_outputs)

    def loop_back(self, sr: Tensor) -> Tensor:
        """The final output (B, 3, H, W) taken back to the LR size by the source loop (:func:`source_loop`)."""
        return source_loop(self.net.scale, self.duals)(sr)

    def degradation_picture(self) -> np.ndarray:
        """(H, W, 3) uint8: the target degradation in use (kernel as trained so far | noise histogram)."""
        return self.degradation.with_kernel(self.target_dual.effective_kernel().detach().float().cpu()).picture()

    def _init_weights(self, path: str, dual_path: str | None) -> None:
        if dual_path and not len(self.duals):
            raise ConfigError(f"model.init_dual_from={dual_path}: the network of model.init_from={path} has no learned "
                              "dual models (DRN's); leave model.init_dual_from null")
        loaded = load_init_from(path, {"arch": self.net.arch, **self.net.hparams()}, dual_path)
        self.net.load_state_dict(loaded.net.state_dict())
        if len(self.duals) and loaded.duals is not None:
            self.duals.load_state_dict(loaded.duals.state_dict())
        elif len(self.duals):
            log.warning("model.init_from=%s has no dual models: they start from scratch (see model.init_dual_from)", path)
        log.info("initialised from %s (%s)", path, loaded.meta.get("variant", loaded.source))
        if getattr(self.net, "likely_gan_trained", False):
            log.warning("model.init_from=%s is a %s, usually GAN-trained (Real-ESRGAN and kin): this objective is L1 and "
                        "takes such weights to the smooth PSNR optimum (measured: 300 steps leave a GAN-trained "
                        "SRVGGNet as smooth as an adapted PSNR-trained one). To keep the GAN's texture, train only "
                        "the input correction: model.freeze=[net.model] (README: Adapt the network you already use)",
                        path, self.net.architecture)

    # --- training ----------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        batch = self.memory_format(batch)
        if len(batch["lr_levels"]) != len(self.lr_factors):
            raise ConfigError(f"training samples carry {len(batch['lr_levels'])} LR level(s), {self.net.arch} needs "
                              f"{self.lr_factors}: build the data with lr_factors=module.lr_factors (the datamodule "
                              "takes them from the module it trains)")
        sr = self(batch["lr"])
        paired = batch.get("paired")
        target = batch.get("target")
        terms = closed_loop_losses(sr, self.duals, batch["lr_levels"], batch["hr"], paired, target, self.target_dual,
                                   batch["lr"])
        # Paper objective: mean over the batch of 1_paired * L_P + lambda * L_D (+ the target loop).
        lam = self.hparams.dual_weight
        lam_t = lam if self.hparams.target_weight is None else self.hparams.target_weight
        loss = (terms["primal"] + lam * terms["dual"] + lam_t * terms["target_loop"]).mean()
        n = batch["lr"].shape[0]
        logs = {"train/loss": loss}
        mask = torch.ones(n, dtype=torch.bool, device=loss.device) if paired is None else paired.bool()
        if mask.any():
            logs["train/primal"] = terms["primal"][mask].mean()
            logs["train/dual_paired"] = terms["dual"][mask].mean()
        if not mask.all() and self.target_dual is None:  # with a target dual, LR-only samples have no bicubic dual term
            logs["train/dual_unpaired"] = terms["dual"][~mask].mean()
        if self.target_dual is not None and target is not None and target.any():
            logs["train/target_loop"] = terms["target_loop"][target.bool()].mean()
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
        ] + ([{"params": [p for p in self.duals.parameters() if p.requires_grad], "name": "dual"}] if len(self.duals)
             else []) + ([{"params": [self.target_dual.kernel], "name": "target_dual"}]
             if self.target_dual is not None and isinstance(self.target_dual.kernel, nn.Parameter) else [])

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"error_last": self.error_last}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.error_last = checkpoint.get("sr_adapt", {}).get("error_last", self.error_last)
