"""What every sr_adapt LightningModule shares: validation with the paper protocol, freezing,
channels_last / compile, optimizer + scheduler factories and checkpoint metadata.

Subclasses implement ``training_step`` and ``param_groups`` (and may add modules such as
DRN's dual models). Validation runs every set of the datamodule at its own scale
(``hr / lr`` size ratio), so a multi-scale model (DRRN) is validated at x2, x3 and x4 in one
pass; the first set is the one monitored as ``val/psnr``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric

from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.errors import CheckpointError, ConfigError
from sr_adapt.evaluation.protocol import protocol_pair
from sr_adapt.models.base import SRModel
from sr_adapt.ops.metrics import psnr, ssim
from sr_adapt.training.rng_state import rng_states, set_rng_states


class SRLitModule(pl.LightningModule):
    """Base of the training modules.

    Args:
        net: the network trained (an :class:`SRModel`), saved under ``net.*``.
        optimizer: partial optimizer, called with ``params=self.param_groups()``.
        scheduler: partial LR scheduler (or None), stepped every ``scheduler_interval``.
        scheduler_interval: ``"step"`` or ``"epoch"``.
        channels_last: convert the model and 4-D batch tensors to channels_last; None: on (faster
            convolutions on CUDA and, with oneDNN, on a CPU: 1.1-1.9x per step, BENCHMARKS.md).
        compile: wrap the training forward in ``torch.compile``.
    """

    def __init__(
        self,
        net: SRModel,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        scheduler_interval: str = "step",
        channels_last: bool | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if scheduler_interval not in ("step", "epoch"):
            raise ConfigError(f"model.scheduler_interval={scheduler_interval!r}: use 'step' or 'epoch'")
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.scheduler_interval = scheduler_interval
        self.use_channels_last = channels_last
        self.use_compile = compile
        self.net = net
        self._forward: Callable[[Tensor], Any] = net
        self.val_psnr = nn.ModuleList()
        self.val_ssim = nn.ModuleList()
        self.val_names: list[str] = []

    def forward(self, x: Tensor) -> Any:
        return self._forward(x)

    def param_groups(self) -> list[dict[str, Any]]:
        return [{"params": [p for p in self.net.parameters() if p.requires_grad], "name": "net"}]

    def freeze_prefixes(self, prefixes: list[str]) -> None:
        """Keep parameters whose name starts with one of ``prefixes`` fixed (``model.freeze``)."""
        names = dict(self.named_parameters())
        for prefix in prefixes:
            hits = [n for n in names if n == prefix or n.startswith(prefix + ".")]
            if not hits:
                top = sorted({".".join(n.split(".")[:2]) for n in names})
                raise ConfigError(f"model.freeze: {prefix!r} matches no parameter; prefixes look like {top[:8]}")
            for n in hits:
                names[n].requires_grad_(False)
        if prefixes and not any(p.requires_grad for p in names.values()):
            raise ConfigError(f"model.freeze={prefixes} leaves no parameter to train: freeze less (training only the "
                              "input correction, net.input_filter, needs model.correct_input=true)")

    # --- setup -----------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.use_channels_last is None:
            self.use_channels_last = True
        if self.use_channels_last:
            self.to(memory_format=torch.channels_last)
        if self.use_compile and stage == "fit":
            self._forward = torch.compile(self.net)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        names = list(getattr(dm, "val_names", []) or [])
        if names and names != self.val_names:
            self.val_names = names
            self.val_psnr = nn.ModuleList(MeanMetric() for _ in names)
            self.val_ssim = nn.ModuleList(MeanMetric() for _ in names)

    def memory_format(self, batch: dict[str, Any]) -> dict[str, Any]:
        if not self.use_channels_last:
            return batch
        return map_tensors(batch, lambda t: t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t)

    # --- validation --------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        batch = self.memory_format(batch)
        lr, hr = batch["lr"], batch["hr"]
        scale = hr.shape[-1] // lr.shape[-1]
        if scale != self.net.scale:
            self.net.set_scale(scale)
        pred, target = protocol_pair(self.net, lr, hr.float())
        self.val_psnr[dataloader_idx].update(psnr(pred, target, shave=scale))
        self.val_ssim[dataloader_idx].update(ssim(pred, target, shave=scale))

    def on_validation_epoch_end(self) -> None:
        for i, name in enumerate(self.val_names):
            if not self.val_psnr[i].update_count:
                continue
            p, s = self.val_psnr[i].compute(), self.val_ssim[i].compute()
            self.log(f"val/{name}/psnr", p, sync_dist=False)
            self.log(f"val/{name}/ssim", s, sync_dist=False)
            if i == 0:  # the first validation set is the one monitored
                self.log("val/psnr", p, prog_bar=True, sync_dist=False)
                self.log("val/ssim", s, prog_bar=True, sync_dist=False)
            self.val_psnr[i].reset()
            self.val_ssim[i].reset()

    # --- optimisation ------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.param_groups())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": self.scheduler_interval}}

    def on_train_start(self) -> None:
        """After a resume: the optimizer and scheduler state come from the checkpoint. Values of this
        run's config that differ (a longer ``trainer.max_steps``, a new ``model.optimizer.lr``, other
        scheduler keys) are applied from here on, the rate re-derived in closed form, and named."""
        if self.trainer.ckpt_path is None:
            return
        lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        keys = dict(getattr(self.scheduler_factory, "keywords", {}) or {})
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            changed = []
            if lr is not None:
                for i, base in enumerate(getattr(sched, "base_lrs", [])):
                    if abs(base - lr) > 1e-12 * max(abs(lr), 1.0):
                        sched.base_lrs[i] = lr
                        sched.optimizer.param_groups[i]["initial_lr"] = lr
                        changed.append(f"model.optimizer.lr {base:g} -> {lr:g}")
            for key, value in keys.items():
                old = getattr(sched, key, None)
                if isinstance(old, (int, float)) and isinstance(value, (int, float)) and old != value:
                    setattr(sched, key, value)
                    changed.append(f"model.scheduler.{key} {old:g} -> {value:g}")
            if changed and hasattr(sched, "_get_closed_form_lr"):
                for group, value in zip(sched.optimizer.param_groups, sched._get_closed_form_lr()):
                    group["lr"] = value
                sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]
            if changed:
                warnings.warn(f"resumed from {self.trainer.ckpt_path} with a changed config: {'; '.join(changed)} "
                              f"(applied from step {self.trainer.global_step}; rate now "
                              f"{sched.optimizer.param_groups[0]['lr']:.3g})", stacklevel=1)

    # --- checkpoints ---------------------------------------------------------------
    def checkpoint_extras(self) -> dict[str, Any]:
        """Training state besides the weights, stored in ``checkpoint["sr_adapt"]`` (plain values)."""
        return {}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sr_adapt"] = {"arch": self.net.arch, "hparams": self.net.hparams(), **self.checkpoint_extras()}
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "rng_states" in checkpoint:  # resume: this process continues the saved random streams
            set_rng_states(checkpoint["rng_states"])


def load_init_from(path: str, expect: dict[str, Any], dual_path: str | None = None) -> Any:
    """The weights of ``model.init_from`` (see :func:`sr_adapt.checkpoints.load_checkpoint`); errors name the key."""
    try:
        return load_checkpoint(path, dual_path=dual_path, expect=expect)
    except CheckpointError as e:
        raise type(e)(f"model.init_from={path}: {e}") from None


def map_tensors(obj: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Apply ``fn`` to every tensor in nested dicts / lists / tuples."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj
