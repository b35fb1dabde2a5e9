"""Training the learned kernel estimator (:class:`~sr_adapt.degradation.kernel_net.KernelEstimator`).

Each step draws ``batch_size`` HR crops of ``lr_patch * scale`` px from the HR folders (random
flips), a random kernel per crop from the training family (:func:`~sr_adapt.degradation.kernel_family.random_kernel`),
downscales, adds Gaussian noise to a share of the crops (``noise_share``, up to ``max_noise`` levels),
rounds to 8 bits and JPEG-compresses a share (``jpeg_share``, quality 50..95: compressed footage). The
estimator sees the LR luma; the loss is the L1 distance between the crop downscaled by the estimated
kernel and by the true one, plus ``kernel_weight`` times the L1 distance between the kernels (without
it the estimate hedges with a faint pedestal over the whole support). Adam, cosine decay. Every batch is a function
of ``(seed, step)``, and the state (weights, optimizer, step) is saved atomically every
``save_every`` steps next to the output, so a stopped run resumes where it was (``resume=true``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sr_adapt.degradation.kernel_family import random_kernel
from sr_adapt.degradation.kernel_net import KernelEstimator
from sr_adapt.degradation.stages import jpeg
from sr_adapt.degradation.synthetic import bicubic_kernel
from sr_adapt.errors import DataError
from sr_adapt.io.atomic import atomic_torch_save
from sr_adapt.io.images import list_images, load_image
from sr_adapt.ops.color import quantize, rgb_to_y

__all__ = ["downscale_each", "train_kernel_estimator", "TrainingImages"]

log = logging.getLogger("sr_adapt.training")


def downscale_each(hr: Tensor, kernels: Tensor, scale: int) -> Tensor:
    """Each HR image (B, C, H, W) downscaled by its own kernel (B, K, K) (:mod:`sr_adapt.degradation.kernels`
    convention, reflect-padded) -> (B, C, H/s, W/s); differentiable in both."""
    b, c, h, w = hr.shape
    k = kernels.shape[-1]
    pad = (k - scale) // 2
    x = F.pad(hr.reshape(1, b * c, h, w), (pad, pad + scale, pad, pad + scale), mode="reflect")
    out = F.conv2d(x, kernels.to(hr).repeat_interleave(c, 0)[:, None], stride=scale, groups=b * c)
    return out[..., : h // scale, : w // scale].reshape(b, c, h // scale, w // scale)


class TrainingImages:
    """HR images (uint8 tensors in memory) at least ``size`` px on each side, from ``folders``."""

    def __init__(self, folders: Sequence[str | os.PathLike], size: int, key: str = "hr_dirs") -> None:
        self.images = []
        for folder in folders:
            for path in list_images(Path(folder).expanduser(), key):
                img = load_image(path)
                if min(img.shape[-2:]) >= size:
                    self.images.append(img.mul(255).round().to(torch.uint8))
        if not self.images:
            raise DataError(f"{key}: no HR image of at least {size}x{size} px in {', '.join(map(str, folders))}")
        self.size = size

    def crops(self, rng: np.random.Generator, n: int) -> Tensor:
        out = []
        for _ in range(n):
            img = self.images[int(rng.integers(len(self.images)))]
            h, w = img.shape[-2:]
            y, x = int(rng.integers(h - self.size + 1)), int(rng.integers(w - self.size + 1))
            crop = img[:, y : y + self.size, x : x + self.size].float() / 255
            if rng.random() < 0.5:
                crop = crop.flip(-1)
            if rng.random() < 0.5:
                crop = crop.transpose(-1, -2)
            out.append(crop)
        return torch.stack(out)


def _batch(images: TrainingImages, rng: np.random.Generator, batch: int, scale: int, bicubic: Tensor,
           noise_share: float, max_noise: float, jpeg_share: float) -> tuple[Tensor, Tensor, Tensor]:
    hr = images.crops(rng, batch)
    kernels = torch.stack([random_kernel(rng, scale, bicubic=bicubic) for _ in range(batch)])
    lr = downscale_each(hr, kernels, scale)
    levels = rng.uniform(0, max_noise, batch) * (rng.random(batch) < noise_share)
    noise = torch.from_numpy(rng.standard_normal(lr.shape)).float() * torch.from_numpy(levels).float().view(-1, 1, 1, 1)
    lr = quantize(lr + noise / 255)
    for i in np.flatnonzero(rng.random(batch) < jpeg_share):
        lr[i] = jpeg(lr[i : i + 1], int(rng.integers(50, 96)))[0]
    return hr, kernels, lr


def train_kernel_estimator(out: str | os.PathLike, hr_dirs: Sequence[str | os.PathLike], scale: int = 4,
                           steps: int = 6000, batch_size: int = 32, lr_patch: int = 40, lr: float = 1e-3,
                           noise_share: float = 0.4, max_noise: float = 4.0, jpeg_share: float = 0.25,
                           kernel_weight: float = 0.02, seed: int = 0, save_every: int = 500, resume: bool = False,
                           net_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trains an estimator and writes it to ``out`` (:func:`~sr_adapt.degradation.kernel_net.load_kernel_estimator`
    reads it); returns a summary (steps, seconds, the last LR agreement in dB)."""
    out = Path(out)
    state_path = out.with_suffix(".state.pt")
    images = TrainingImages(hr_dirs, lr_patch * scale)
    torch.manual_seed(seed)
    net = KernelEstimator(scale, **(net_config or {}))
    opt = torch.optim.Adam(net.parameters(), lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, lr / 100)
    start = 0
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = int(state["step"])
        log.info("resuming the kernel estimator at step %d of %d", start, steps)
    bicubic = bicubic_kernel(scale).float()
    t0, agreement, running = time.perf_counter(), float("nan"), None
    for step in range(start, steps):
        rng = np.random.default_rng([seed, step])
        hr, kernels, lr_img = _batch(images, rng, batch_size, scale, bicubic, noise_share, max_noise, jpeg_share)
        estimate = net(rgb_to_y(lr_img))
        pred, target = downscale_each(hr, estimate, scale), downscale_each(hr, kernels, scale)
        loss = (pred - target).abs().mean() + kernel_weight * (estimate - kernels).abs().sum(dim=(1, 2)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            mse = (pred.detach() - target).pow(2).mean(dim=(1, 2, 3)).clamp(min=1e-12)
            agreement = float((-10 * torch.log10(mse)).mean())
            log.info("step %d/%d: loss %.5f, LR agreement %.1f dB, %.0f s", step + 1, steps, running, agreement,
                     time.perf_counter() - t0)
        if (step + 1) % save_every == 0 and step + 1 < steps:
            atomic_torch_save({"net": net.state_dict(), "optimizer": opt.state_dict(),
                               "scheduler": sched.state_dict(), "step": step + 1}, state_path)
    atomic_torch_save(net.state(), out)
    if state_path.is_file():
        state_path.unlink()
    return {"steps": steps, "seconds": round(time.perf_counter() - t0, 1), "lr_agreement_db": round(agreement, 2),
            "images": len(images.images), "out": str(out)}
