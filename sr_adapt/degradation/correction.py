"""The input correction: a linear LR filter that maps the target degradation onto the source model's
bicubic one, so that a bicubic-trained network sees what it was trained on.

For the target chain ``D`` (:class:`~sr_adapt.degradation.record.DegradationRecord`: kernel, noise,
8 bit, JPEG, codec) and the source downscaler ``B`` (MATLAB bicubic, 1/s), the filter ``f`` (m x m LR
px, one for the three channels) minimises over clean reference HR images ``x``::

    mean_x || f * D(x) - B(x) ||^2 + ridge * ||f||^2   (images in [0,1], mean over LR pixels)

a least-squares (Wiener) filter: where the target kernel is wider than bicubic it sharpens as far as
the images' statistics and the chain's noise allow; where it is narrower it blurs. It is fitted on
the same reference images the estimate is calibrated on (the run's paired HR set), in a few seconds.
Measured (BENCHMARKS.md, "A higher ceiling"): with the true DIV2KRK kernel, the shipped model behind
this filter gains about 2.7 dB on Set5 before any fine-tuning.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from sr_adapt.degradation.record import DegradationRecord
from sr_adapt.errors import DataError
from sr_adapt.ops.resize import imresize

__all__ = ["correction_filter", "apply_lr_filter", "CORRECTION_SIZE", "CORRECTION_RIDGE"]

CORRECTION_SIZE = 13  # LR px: support of the filter (the widest DIV2KRK kernel spans ~6 LR px)
CORRECTION_RIDGE = 1e-6  # keeps 8-bit rounding (and a kernel estimated too wide) from being amplified


def apply_lr_filter(x: Tensor, f: Tensor) -> Tensor:
    """(B, C, h, w) filtered per channel by ``f`` (m, m), reflect-padded (m odd) -> same shape."""
    m = f.shape[-1]
    r = m // 2
    b, c, h, w = x.shape
    y = F.conv2d(F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode="reflect"), f.to(x)[None, None])
    return y.reshape(b, c, h, w)


def correction_filter(record: DegradationRecord, reference_hr: Sequence[Tensor], size: int = CORRECTION_SIZE,
                      ridge: float = CORRECTION_RIDGE, seed: int = 0, key: str = "correction") -> Tensor:
    """The least-squares filter (size, size) float32 (module docstring) from ``reference_hr`` ((3, H, W) in
    [0,1], any size; each is mod-cropped to the scale), degraded by the whole ``record`` chain.

    Raises:
        DataError: naming ``key``, when the references give fewer equations than the filter has taps.
    """
    if size % 2 != 1:
        raise ValueError(f"correction filter size must be odd, got {size}")
    s, r = record.scale, size // 2
    taps = size * size
    gram = torch.zeros(taps, taps, dtype=torch.float64)
    rhs = torch.zeros(taps, dtype=torch.float64)
    n = 0
    g = torch.Generator().manual_seed(seed)
    for hr in reference_hr:
        h, w = hr.shape[-2:]
        hr = hr[..., : h - h % s, : w - w % s]
        if min(hr.shape[-2:]) // s <= size:
            continue
        x = record.apply(hr[None].float(), g)[0].double()
        y = imresize(hr[None].float(), scale=1.0 / s)[0].double()
        cols = F.unfold(x[:, None], size).permute(0, 2, 1).reshape(-1, taps)  # (C * valid pixels, taps)
        target = y[:, r:-r, r:-r].reshape(-1)
        gram += cols.T @ cols
        rhs += cols.T @ target
        n += len(target)
    if n < 10 * taps:
        raise DataError(f"{key}: the reference images give {n} LR pixels, too few to fit a {size}x{size} correction "
                        f"(need {10 * taps}): give larger or more paired HR images")
    gram /= n
    rhs /= n
    f = torch.linalg.solve(gram + ridge * torch.eye(taps, dtype=torch.float64), rhs)
    return f.reshape(size, size).float()
