"""Studio-swing ITU-R BT.601 colour conversions (MATLAB ``rgb2ycbcr``) and 8-bit quantization."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["rgb_to_y", "rgb_to_ycbcr", "ycbcr_to_rgb", "quantize", "to_uint8", "from_uint8"]

# MATLAB rgb2ycbcr for RGB in [0, 1] and YCbCr in 0..255: ycc = offset + M @ rgb.
_M = torch.tensor(
    [
        [65.481, 128.553, 24.966],
        [-37.797, -74.203, 112.0],
        [112.0, -93.786, -18.214],
    ],
    dtype=torch.float64,
)
_OFFSET = torch.tensor([16.0, 128.0, 128.0], dtype=torch.float64)

# Everything below works in [0, 1] units on both sides: ycc = _FWD @ rgb + _BIAS.
_FWD = _M / 255.0
_BIAS = _OFFSET / 255.0
_INV = torch.linalg.inv(_FWD)


def _check_rgb(x: Tensor, name: str) -> None:
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name} expects (..., 3, H, W), got shape {tuple(x.shape)}")


def _apply(x: Tensor, mat: Tensor, bias_before: Tensor | None, bias_after: Tensor | None) -> Tensor:
    """``mat @ (x - bias_before) + bias_after`` over the channel dim ``-3``."""
    dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    x = x.to(dtype)
    mat = mat.to(device=x.device, dtype=dtype)
    if bias_before is not None:
        x = x - bias_before.to(device=x.device, dtype=dtype)[:, None, None]
    y = torch.einsum("ij,...jhw->...ihw", mat, x)
    if bias_after is not None:
        y = y + bias_after.to(device=x.device, dtype=dtype)[:, None, None]
    return y


def rgb_to_y(x: Tensor) -> Tensor:
    """Luma of MATLAB ``rgb2ycbcr`` (BT.601 studio swing), not rounded.

    Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255.

    Args:
        x: ``(..., 3, H, W)`` RGB in [0, 1].

    Returns:
        ``(..., 1, H, W)`` Y in [16/255, 235/255] for inputs in [0, 1].
    """
    _check_rgb(x, "rgb_to_y")
    return _apply(x, _FWD[:1], None, _BIAS[:1])


def rgb_to_ycbcr(x: Tensor) -> Tensor:
    """MATLAB ``rgb2ycbcr`` (BT.601 studio swing) in [0, 1] units, not rounded.

    Args:
        x: ``(..., 3, H, W)`` RGB in [0, 1].

    Returns:
        ``(..., 3, H, W)`` YCbCr: Y in [16/255, 235/255], Cb/Cr in [16/255, 240/255].
    """
    _check_rgb(x, "rgb_to_ycbcr")
    return _apply(x, _FWD, None, _BIAS)


def ycbcr_to_rgb(x: Tensor) -> Tensor:
    """Exact inverse of :func:`rgb_to_ycbcr` (MATLAB ``ycbcr2rgb``), not clamped.

    Args:
        x: ``(..., 3, H, W)`` YCbCr in [0, 1] units (studio swing).

    Returns:
        ``(..., 3, H, W)`` RGB, in [0, 1] for valid studio-swing input; may leave that
        range for arbitrary YCbCr (e.g. a model's Y combined with bicubic Cb/Cr).
    """
    _check_rgb(x, "ycbcr_to_rgb")
    return _apply(x, _INV, _BIAS, None)


def quantize(x: Tensor) -> Tensor:
    """Clamp to [0, 1] and snap to the 8-bit grid (k/255), as saving a PNG would.

    Ties round half up (MATLAB's ``uint8`` conversion), not to even.

    Args:
        x: tensor of any shape, nominally in [0, 1].

    Returns:
        tensor of the same shape and dtype with values in {0, 1/255, ..., 1}.
    """
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + 0.5) / 255.0


def to_uint8(x: Tensor) -> Tensor:
    """Float image values nominally in [0, 1] -> uint8 0..255 with :func:`quantize`'s rounding.

    Same shape (callers permute to ``(H, W, 3)`` for image libraries); NaN becomes 0, values
    outside [0, 1] are clamped. ``from_uint8(to_uint8(x)) == quantize(x)`` exactly.
    """
    x = torch.nan_to_num(x.detach().float(), nan=0.0)
    return torch.floor(x.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)


def from_uint8(x: Tensor | np.ndarray) -> Tensor:
    """uint8 0..255 (tensor or array, any shape) -> float32 in [0, 1] (divided, so values are exactly k/255)."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if t.dtype != torch.uint8:
        raise TypeError(f"from_uint8 expects uint8 values, got {t.dtype}")
    return t.to(torch.float32).div_(255.0)
