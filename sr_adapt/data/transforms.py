"""Tensor transforms for SR samples: mod-crop, joint flips, the LR levels (DRN's pyramid)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import Tensor

from sr_adapt.models.drn import pyramid_factors
from sr_adapt.ops.color import quantize
from sr_adapt.ops.resize import imresize

__all__ = [
    "mod_crop",
    "pyramid_factors",
    "draw_flip_transpose",
    "apply_flip_transpose",
    "random_flip_transpose",
    "lr_levels",
    "lr_pyramid",
]

Rng = random.Random | torch.Generator | None


def mod_crop(img: Tensor, multiple: int) -> Tensor:
    """Crop ``(..., H, W)`` to ``(..., H - H % multiple, W - W % multiple)``, keeping the top-left."""
    if multiple < 1:
        raise ValueError(f"mod_crop: multiple must be >= 1, got {multiple}")
    h, w = img.shape[-2:]
    return img[..., : h - h % multiple, : w - w % multiple]


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


def lr_levels(hr: Tensor, factors: Sequence[int], quantize_levels: bool = True) -> list[Tensor]:
    """The LR images ``HR/f`` for each of ``factors`` (lowest resolution first: ``factors[0]`` is the scale).

    Each level is made directly from ``hr`` with MATLAB bicubic ``imresize(hr, 1/f)``,
    like the pre-made DIV2K ``LR_bicubic/X{f}`` files, and (``quantize_levels``) snapped
    to 8 bits as a saved PNG would be.

    Args:
        hr: ``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1]; H and W multiples of ``factors[0]``
            (use :func:`mod_crop`).
        factors: ``[s]`` for a single-output network, DRN's ``pyramid_factors(s)``.

    Returns:
        one tensor ``(..., C, H/f, W/f)`` per factor.
    """
    h, w = hr.shape[-2:]
    if h % factors[0] or w % factors[0]:
        raise ValueError(f"lr_levels: H, W = {h}, {w} must be multiples of scale {factors[0]}; mod_crop first")
    levels = []
    for f in factors:
        lr = imresize(hr, scale=1.0 / f)
        levels.append(quantize(lr) if quantize_levels else lr)
    return levels


def lr_pyramid(hr: Tensor, scale: int, quantize_levels: bool = True) -> list[Tensor]:
    """DRN's LR inputs ``[HR/s, HR/(s/2), ..., HR/2]``: :func:`lr_levels` at :func:`pyramid_factors`."""
    return lr_levels(hr, pyramid_factors(scale), quantize_levels)
