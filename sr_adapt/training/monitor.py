"""Watching an adaptation that has no ground truth: LR consistency, sharpness, image panels."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pytorch_lightning as pl
import torch
from kornia.filters import spatial_gradient
from torch import Tensor

from sr_adapt.errors import ConfigError, DataError
from sr_adapt.io.images import list_images, load_image, save_image
from sr_adapt.io.atomic import show_path
from sr_adapt.io.video import held_out_frames, probe_reason, read_frames, resolve_video_paths
from sr_adapt.models.base import SRModel
from sr_adapt.ops.color import quantize, rgb_to_y
from sr_adapt.ops.metrics import psnr
from sr_adapt.ops.resize import imresize

log = logging.getLogger("sr_adapt")


def gradient_energy(x: Tensor) -> Tensor:
    """Mean Sobel gradient magnitude of the Y channel: (B, 3, H, W) in [0,1] -> (B,)."""
    g = spatial_gradient(rgb_to_y(x), mode="sobel")  # (B, 1, 2, H, W)
    return g.pow(2).sum(2).sqrt().flatten(1).mean(1)


@runtime_checkable
class AdaptingModule(Protocol):
    """What the monitor needs from the module it watches (:class:`~sr_adapt.training.adapt_module.AdaptLitModule`)."""

    net: SRModel
    target_dual: Callable[[Tensor], Tensor] | None  # the target degradation's linear part, or None

    def loop_back(self, sr: Tensor) -> Tensor:
        """The SR output back at the LR size through the source loop (learned duals or bicubic)."""

    def degradation_picture(self) -> np.ndarray:
        """(H, W, 3) uint8 picture of the target degradation in use."""


@torch.no_grad()
def adaptation_stats(net: SRModel, loop_back: Callable[[Tensor], Tensor], lr: Tensor,
                     target_down: Callable[[Tensor], Tensor] | None = None) -> dict[str, Any]:
    """No-reference statistics of an SR network on real LR frames (B, 3, h, w) in [0,1].

    - ``lr_consistency_psnr``: Y-PSNR of D(P(x)) against x, D the source loop ``loop_back`` (the dual loss,
      as PSNR);
    - ``target_consistency_psnr`` (with ``target_down``, the estimated target degradation's linear
      part): Y-PSNR of the final output degraded back, against x;
    - ``bicubic_consistency_psnr``: the same for bicubic up then down (a reference level);
    - ``sharpness``: gradient energy of P(x) over that of the bicubic upscale (> 1: sharper).
    """
    scale = net.scale
    sr = net.super_resolve(lr)
    bicubic = imresize(lr, scale=scale)
    back = loop_back(sr)
    bic_back = imresize(bicubic, scale=1.0 / scale)
    shave = 2
    extra = {}
    if target_down is not None:
        extra["target_consistency_psnr"] = float(psnr(quantize(target_down(sr)), lr, shave=shave).mean())
    return {
        **extra,
        "lr_consistency_psnr": float(psnr(quantize(back), lr, shave=shave).mean()),
        "bicubic_consistency_psnr": float(psnr(quantize(bic_back), lr, shave=shave).mean()),
        "sharpness": float((gradient_energy(sr.clamp(0, 1)) / gradient_energy(bicubic.clamp(0, 1)).clamp_min(1e-8)).mean()),
        "sr": sr,
        "bicubic": bicubic,
    }


def panel(lr: Tensor, bicubic: Tensor, sr: Tensor, hr: Tensor | None = None) -> Tensor:
    """Side-by-side (3, H, k*W) image: LR (nearest upscale) | bicubic | SR [| HR]."""
    scale = sr.shape[-1] // lr.shape[-1]
    tiles = [lr.repeat_interleave(scale, -1).repeat_interleave(scale, -2), bicubic, sr]
    if hr is not None:
        tiles.append(hr[..., : sr.shape[-2], : sr.shape[-1]])
    return quantize(torch.cat([t[..., : sr.shape[-2], : sr.shape[-1]] for t in tiles], dim=-1))


class AdaptationMonitor(pl.Callback):
    """Logs ``adapt/*`` statistics and LR | bicubic | SR panels on held-out real frames,
    and an LR | bicubic | SR | HR panel of the first validation image.

    Args:
        video_paths: videos to take frames from: at ``times`` (seconds) if given, else three frames
            spread over the part of each video its training source holds out (``held_out``, the
            video source's fraction; 0: over the whole video).
        image_dir: alternatively, a folder of LR-only images.
        crop: centre crop of each frame (LR pixels) to bound the cost.
        every_n_steps: also log every N training steps (0: only after each validation).
        panel_dir: folder for panel PNGs (always written; also sent to W&B when it is a logger).
    """

    def __init__(
        self,
        video_paths: Sequence[str] = (),
        times: Sequence[float] | None = None,
        held_out: float = 0.0,
        image_dir: str | None = None,
        crop: int = 64,
        every_n_steps: int = 0,
        panel_dir: str | None = None,
        max_frames: int = 8,
    ) -> None:
        self.video_paths = list(video_paths)
        self.times = None if times is None else list(times)
        self.held_out = float(held_out)
        self.image_dir = image_dir
        self.crop = crop
        self.every_n_steps = every_n_steps
        self.panel_dir = Path(panel_dir) if panel_dir else None
        self.max_frames = max_frames
        self.frames: Tensor | None = None
        self._shown_degradation = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if (self.video_paths or self.image_dir) and not isinstance(pl_module, AdaptingModule):
            raise ConfigError(f"callbacks.adaptation_monitor: real frames are watched in an adaptation (model=adapt or a "
                              f"DRN model), not with {type(pl_module).__name__}: leave video_paths and image_dir empty")
        if self.frames is not None:
            return
        frames = []
        key = "callbacks.adaptation_monitor.video_paths"
        videos, problems = resolve_video_paths(self.video_paths, key) if self.video_paths else ([], [])
        if problems:
            raise DataError(f"{key}: " + "; ".join(text for _, text in problems))
        for path in videos:
            if self.times is None:
                info = probe_reason(path)
                if isinstance(info, str):
                    raise DataError(f"{key}: cannot read video {show_path(path)}: {info}")
                frames.extend(read_frames(path, indices=held_out_frames(info, self.held_out), config_key=key))
            else:
                frames.extend(read_frames(path, times=self.times, config_key=key))
        if self.image_dir:
            frames.extend(load_image(p) for p in list_images(self.image_dir, "callbacks.adaptation_monitor.image_dir"))
        frames = [self._centre_crop(f) for f in frames[: self.max_frames]]
        if frames:
            size = min(f.shape[-2] for f in frames), min(f.shape[-1] for f in frames)
            self.frames = torch.stack([f[..., : size[0], : size[1]] for f in frames])

    def _centre_crop(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        c = min(self.crop, h, w)
        top, left = (h - c) // 2, (w - c) // 2
        return x[..., top : top + c, left : left + c]

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.frames is None or trainer.sanity_checking:
            return
        was_training = pl_module.training
        pl_module.eval()
        target_down = pl_module.target_dual
        stats = adaptation_stats(pl_module.net, pl_module.loop_back, self.frames.to(pl_module.device), target_down)
        if was_training:
            pl_module.train()
        for key in ("lr_consistency_psnr", "bicubic_consistency_psnr", "sharpness", "target_consistency_psnr"):
            if key in stats:
                pl_module.log(f"adapt/{key}", stats[key], on_step=False, on_epoch=True, batch_size=1)
        if target_down is not None and not self._shown_degradation:
            self._shown_degradation = True
            picture = torch.from_numpy(pl_module.degradation_picture()).permute(2, 0, 1).float() / 255
            self._log_image(trainer, "adapt/degradation", picture, "target degradation: kernel | noise histogram")
        image = panel(self.frames[0], stats["bicubic"][0], stats["sr"][0].clamp(0, 1)).cpu()
        self._log_image(trainer, "adapt/panel", image, "LR | bicubic | SR (real frame, no HR)")

    def _log_image(self, trainer: pl.Trainer, key: str, image: Tensor, caption: str) -> None:
        if not trainer.is_global_zero:
            return
        if self.panel_dir is not None:
            save_image(image, self.panel_dir / f"{key.replace('/', '_')}_step{trainer.global_step:07d}.png")
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key=key, images=[image.permute(1, 2, 0).numpy()], caption=[caption], step=trainer.global_step)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._measure(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._measure(trainer, pl_module)

    @torch.no_grad()
    def on_validation_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Panel of the first image of the first validation set, with its HR."""
        if batch_idx or dataloader_idx or trainer.sanity_checking:
            return
        scale = pl_module.net.scale
        lr = self._centre_crop(batch["lr"][:1])
        h, w = lr.shape[-2:]
        top, left = (batch["lr"].shape[-2] - h) // 2, (batch["lr"].shape[-1] - w) // 2
        hr = batch["hr"][:1, :, top * scale : (top + h) * scale, left * scale : (left + w) * scale]
        sr = pl_module.net.super_resolve(lr).clamp(0, 1)
        image = panel(lr[0], imresize(lr, scale=scale)[0], sr[0], hr[0]).cpu()
        self._log_image(trainer, "val/panel", image, "LR | bicubic | SR | HR")
