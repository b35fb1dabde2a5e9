"""Tensor transforms for SR samples: mod-crop, joint flips, the DRN LR pyramid."""

from __future__ import annotations

import random

import torch
from torch import Tensor

from sr_adapt.ops.color import quantize
from sr_adapt.ops.resize import imresize

__all__ = [
    "mod_crop",
    "pyramid_factors",
    "draw_flip_transpose",
    "apply_flip_transpose",
    "random_flip_transpose",
    "lr_pyramid",
]

Rng = random.Random | torch.Generator | None


def mod_crop(img: Tensor, multiple: int) -> Tensor:
    """Crop ``(..., H, W)`` to ``(..., H - H % multiple, W - W % multiple)``, keeping the top-left."""
    if multiple < 1:
        raise ValueError(f"mod_crop: multiple must be >= 1, got {multiple}")
    h, w = img.shape[-2:]
    return img[..., : h - h % multiple, : w - w % multiple]


def pyramid_factors(scale: int) -> list[int]:
    """Downscale factors of the DRN LR levels, lowest resolution first: ``[s, s/2, ..., 2]``.

    Raises:
        ValueError: ``scale`` is not a power of two >= 2.
    """
    if scale < 2 or scale & (scale - 1):
        raise ValueError(f"DRN scales must be powers of two >= 2 (e.g. 4 or 8), got {scale}")
    factors = []
    f = scale
    while f >= 2:
        factors.append(f)
        f //= 2
    return factors


def draw_flip_transpose(rng: Rng = None) -> tuple[bool, bool, bool]:
    """Draw ``(hflip, vflip, transpose)``, each True with p = 0.5.

    ``rng``: a ``random.Random``, a ``torch.Generator``, or None for torch's global RNG.
    """
    if isinstance(rng, random.Random):
        return rng.random() < 0.5, rng.random() < 0.5, rng.random() < 0.5
    hflip, vflip, transpose = (torch.rand(3, generator=rng) < 0.5).tolist()
    return hflip, vflip, transpose


def apply_flip_transpose(img: Tensor, flags: tuple[bool, bool, bool]) -> Tensor:
    """Apply ``(hflip, vflip, transpose)`` to the last two dims of ``(..., H, W)``."""
    hflip, vflip, transpose = flags
    if hflip:
        img = img.flip(-1)
    if vflip:
        img = img.flip(-2)
    if transpose:
        img = img.transpose(-2, -1)
    return img.contiguous()


def random_flip_transpose(tensors: list[Tensor], generator: Rng = None) -> list[Tensor]:
    """The 8 dihedral augmentations: one random choice applied to every tensor of a sample.

    Args:
        tensors: ``(..., H_i, W_i)`` tensors of one sample (HR and its LR levels).
        generator: ``random.Random`` or ``torch.Generator`` (None: torch's global RNG).

    Returns:
        the transformed tensors, in order (H and W swapped when transposed).
    """
    flags = draw_flip_transpose(generator)
    return [apply_flip_transpose(t, flags) for t in tensors]


def lr_pyramid(hr: Tensor, scale: int, quantize_levels: bool = True) -> list[Tensor]:
    """DRN's LR inputs ``[HR/s, HR/(s/2), ..., HR/2]`` (lowest resolution first).

    Each level is made directly from ``hr`` with MATLAB bicubic ``imresize(hr, 1/f)``,
    like the pre-made DIV2K ``LR_bicubic/X{f}`` files, and (``quantize_levels``) snapped
    to 8 bits as a saved PNG would be.

    Args:
        hr: ``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1]; H and W multiples of ``scale``
            (use :func:`mod_crop`).
        scale: 2, 4, 8, ...

    Returns:
        ``log2(scale)`` tensors ``(..., C, H/f, W/f)`` for f = s, s/2, ..., 2.
    """
    factors = pyramid_factors(scale)
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"lr_pyramid: H, W = {h}, {w} must be multiples of scale {scale}; mod_crop first")
    levels = []
    for f in factors:
        lr = imresize(hr, scale=1.0 / f)
        levels.append(quantize(lr) if quantize_levels else lr)
    return levels
