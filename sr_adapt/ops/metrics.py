"""PSNR / SSIM with the MATLAB conventions of the SR literature (Y channel, 0..255 scale)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from .color import rgb_to_y

__all__ = ["psnr", "ssim"]


def _prepare(sr: Tensor, hr: Tensor, shave: int, y_channel: bool) -> tuple[Tensor, Tensor]:
    """Align, shave, convert to Y and rescale to float64 in 0..255: ``(B, C', H', W')``."""
    if sr.dim() != 4 or hr.dim() != 4:
        raise ValueError(f"expected (B, C, H, W) tensors, got sr {tuple(sr.shape)} and hr {tuple(hr.shape)}")
    if sr.shape[:2] != hr.shape[:2]:
        raise ValueError(f"batch/channel mismatch: sr {tuple(sr.shape)} vs hr {tuple(hr.shape)}")
    h, w = hr.shape[-2:]
    if sr.shape[-2] < h or sr.shape[-1] < w:
        raise ValueError(f"sr is smaller than hr: sr {tuple(sr.shape)} vs hr {tuple(hr.shape)}")
    sr = sr[..., :h, :w]  # a model output a few pixels too large is cropped to hr
    if shave < 0:
        raise ValueError(f"shave must be >= 0, got {shave}")
    if shave > 0:
        if 2 * shave >= min(h, w):
            raise ValueError(f"shave={shave} leaves nothing of a {h}x{w} image")
        sr = sr[..., shave:-shave, shave:-shave]
        hr = hr[..., shave:-shave, shave:-shave]

    sr = sr.to(torch.float64)
    hr = hr.to(torch.float64)
    if y_channel and sr.shape[1] == 3:
        sr, hr = rgb_to_y(sr), rgb_to_y(hr)
    elif y_channel and sr.shape[1] != 1:
        raise ValueError(f"y_channel needs C = 3 (RGB) or C = 1 (Y), got C = {sr.shape[1]}")
    return sr * 255.0, hr * 255.0


def psnr(sr: Tensor, hr: Tensor, shave: int = 0, y_channel: bool = True) -> Tensor:
    """Per-image PSNR in dB with a peak of 255, computed in float64.

    Args:
        sr: ``(B, C, H', W')`` in [0, 1], C = 3 (RGB) or 1 (already Y). If it is larger
            than ``hr`` it is cropped to ``hr``'s size (top-left); smaller raises ValueError.
        hr: ``(B, C, H, W)`` in [0, 1].
        shave: pixels removed at every border before measuring (usually the scale).
        y_channel: measure on BT.601 studio-swing Y (:func:`rgb_to_y`) for RGB input;
            ``False`` uses the MSE over all channels.

    Returns:
        ``(B,)`` float64 PSNR; ``+inf`` for an identical pair (MSE = 0).
    """
    a, b = _prepare(sr, hr, shave, y_channel)
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(255.0**2 / mse)  # mse == 0 -> inf


def _gaussian_1d() -> Tensor:
    """11 taps, sigma 1.5, sum 1; its outer product is MATLAB ``fspecial('gaussian', 11, 1.5)``."""
    r = torch.arange(11, dtype=torch.float64) - 5.0
    g = torch.exp(-(r**2) / (2 * 1.5**2))
    return g / g.sum()


@functools.lru_cache(maxsize=16)
def _valid_filter_matrix(n: int, device: torch.device) -> Tensor:
    """``(n - 10, n)`` banded float64 matrix: 'valid' 1-D Gaussian filtering as a matmul.

    The 2-D window is separable, so ``G_h @ X @ G_w^T`` equals the 11x11 'valid'
    correlation while being far cheaper than a float64 conv2d on CPU.
    """
    g = _gaussian_1d()
    m = torch.zeros(n - 10, n, dtype=torch.float64)
    rows = torch.arange(n - 10)
    for k in range(11):  # 11 diagonals, not a loop over pixels
        m[rows, rows + k] = g[k]
    return m.to(device)


def ssim(sr: Tensor, hr: Tensor, shave: int = 0, y_channel: bool = True) -> Tensor:
    """Per-image SSIM of Wang et al. (2004) as in their MATLAB ``ssim_index``.

    Gaussian window 11x11 with sigma 1.5, 'valid' filtering (no padding), K1 = 0.01,
    K2 = 0.03, L = 255, float64 on the 0..255 scale; the score is the mean of the SSIM
    map. Inputs are aligned / shaved / converted like :func:`psnr`. For RGB input with
    ``y_channel=False`` the score is the mean over the three channels.

    Args:
        sr: ``(B, C, H', W')`` in [0, 1], C = 3 or 1; cropped to ``hr`` if larger.
        hr: ``(B, C, H, W)`` in [0, 1]; after shaving H and W must be >= 11.
        shave: pixels removed at every border first.
        y_channel: measure on studio-swing Y for RGB input.

    Returns:
        ``(B,)`` float64 SSIM, 1 for an identical pair.
    """
    a, b = _prepare(sr, hr, shave, y_channel)
    h, w = a.shape[-2:]
    if h < 11 or w < 11:
        raise ValueError(f"ssim needs at least 11x11 pixels after shaving, got {h}x{w}")
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2

    gh = _valid_filter_matrix(h, a.device)
    gw = _valid_filter_matrix(w, a.device)
    # filter the five maps at once: mu_a, mu_b, E[a^2], E[b^2], E[ab]
    stats = torch.stack([a, b, a * a, b * b, a * b])
    stats = torch.matmul(torch.matmul(gh, stats), gw.transpose(0, 1))
    mu_a, mu_b, e_aa, e_bb, e_ab = stats.unbind(dim=0)
    var_a = e_aa - mu_a**2
    var_b = e_bb - mu_b**2
    cov = e_ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    # mean over the map of each channel, then over the channels
    return (num / den).mean(dim=(-2, -1)).mean(dim=1)

