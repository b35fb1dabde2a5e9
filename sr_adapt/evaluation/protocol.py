"""The paper protocol: how a model is scored on a benchmark set (training validation uses it too).

Protocol (DRN / BasicSR / MATLAB): HR mod-cropped to the scale, LR = MATLAB bicubic
downscale quantized to 8 bit (or a given LR folder), SR output quantized to 8 bit,
PSNR and SSIM on the studio-swing Y channel with ``shave = scale`` pixels removed at
every border, dataset value = mean of the per-image values.

Luma-only models (DRRN) are scored on their own Y output (quantized to 8 bit) against the Y
of the HR image, so the RGB round trip of their saved images does not enter the numbers; the
HR Y is the same unrounded ``rgb_to_y`` of the 8-bit HR image as for RGB models (MATLAB's
``rgb2ycbcr`` on uint8 would round it: < 0.01 dB at these PSNRs).

``fixed_size=N`` is the deployment protocol of fixed-shape graphs: the network input is resized
(MATLAB bicubic, 8 bit) to N x N -- for a luma model the bicubic-upsampled Y, for an RGB model
the LR image -- and the ground truth to the output size, N x N or sN x sN.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sr_adapt.evaluation.benchmarks import BenchmarkFolderDataset
from sr_adapt.inference.ensemble import self_ensemble
from sr_adapt.inference.tiling import check_precision
from sr_adapt.io.images import save_image
from sr_adapt.models.base import SRModel
from sr_adapt.ops.color import quantize, rgb_to_y
from sr_adapt.ops.metrics import psnr, ssim
from sr_adapt.ops.resize import imresize

__all__ = ["protocol_pair", "evaluate_folder"]


@torch.no_grad()
def protocol_pair(
    net: SRModel, lr: Tensor, hr: Tensor, fixed_size: int | None = None, ensemble: bool = False
) -> tuple[Tensor, Tensor]:
    """(prediction, target) to score with :func:`psnr`/:func:`ssim` (``shave = net.scale``).

    Args:
        lr: (B, 3, h, w) RGB in [0, 1]; hr: (B, 3, h*s, w*s) RGB in [0, 1], s = ``net.scale``.
        fixed_size: resize the network input to this square size first (see module docstring).
        ensemble: x8 geometric self-ensemble (mean over flips / transpositions of the input).
    Returns:
        RGB models: quantized (B, 3, H, W) SR and ``hr``; luma models: quantized (B, 1, H, W) SR Y
        and the Y of ``hr``.
    """
    s = net.scale

    def run(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        return quantize((self_ensemble(fn, x) if ensemble else fn(x)).float())

    if fixed_size is None:
        if net.y_only:
            return run(net.super_resolve_y, lr), rgb_to_y(hr)
        return run(net.super_resolve, lr), hr
    size = (int(fixed_size), int(fixed_size))
    if net.y_only:
        y_up = quantize(net.upsample_input(lr)[:, :1])
        return run(net, quantize(imresize(y_up, size=size))), quantize(imresize(rgb_to_y(hr), size=size))
    return run(net.super_resolve, quantize(imresize(lr, size=size))), quantize(imresize(hr, size=(size[0] * s, size[1] * s)))


@torch.no_grad()
def evaluate_folder(
    net: SRModel, folder: Path, scale: int, device: torch.device, save_dir: Path | None = None,
    lr_dir: Path | None = None, fixed_size: int | None = None, ensemble: bool = False, precision: str = "fp32",
) -> dict[str, Any]:
    """PSNR/SSIM of ``net`` (set to ``scale``) on the HR images of ``folder``; optionally saves the SR PNGs.

    ``precision``: fp32, or bf16 / fp16 for a PyTorch model run under autocast (scored in float).

    LR inputs are the MATLAB-bicubic downscale of HR, or the files of ``lr_dir``
    (``lr_dir[/X{s}]/{stem}x{s}.png``: another degradation). Saved images are the RGB output of
    ``super_resolve`` (luma models: their Y with bicubic Cb/Cr), whatever ``fixed_size`` is.
    """
    net.set_scale(scale)
    dataset = BenchmarkFolderDataset(folder, scale, lr_dir=lr_dir)
    per_image: dict[str, dict[str, float]] = {}
    dtype = check_precision(precision, device)
    for item in dataset:
        lr = item["lr"].unsqueeze(0).to(device)
        hr = item["hr"].unsqueeze(0).to(device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            pred, target = protocol_pair(net, lr, hr, fixed_size, ensemble)
        per_image[item["name"]] = {
            "psnr": float(psnr(pred, target, shave=scale)[0]),
            "ssim": float(ssim(pred, target, shave=scale)[0]),
        }
        if save_dir is not None:
            if not net.y_only and fixed_size is None:
                sr = pred
            elif ensemble:
                sr = quantize(self_ensemble(net.super_resolve, lr).float())
            else:
                sr = quantize(net.super_resolve(lr).float())
            save_image(sr[0], save_dir / f"{item['name']}.png")  # PNG whatever the input format
    n = len(per_image)
    return {
        "psnr": sum(v["psnr"] for v in per_image.values()) / n,
        "ssim": sum(v["ssim"] for v in per_image.values()) / n,
        "images": n,
        "per_image": per_image,
    }
