"""Blur kernels and the linear downscaler they define.

Convention (one for the whole package): a downscaling kernel ``k`` of size ``K = s + 2p``
(HR pixels) maps HR to LR by::

    lr[i, j] = sum_{u,v} k[u, v] * hr[s*i + u - p, s*j + v - p]

with the HR image reflect-padded. The kernel's centre ``(K-1)/2`` then sits at HR
coordinate ``s*i + (s-1)/2``, the centre of LR pixel ``i``'s HR block: the grid of MATLAB's
``imresize(..., 1/s)``. Every linear shift-invariant downscaler (blur + bicubic, blur +
decimation, a learned linear one) is such a kernel (:func:`kernel_of`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sr_adapt.errors import ConfigError
from sr_adapt.ops.metrics import psnr

__all__ = ["apply_kernel", "gaussian_kernel", "kernel_covariance", "kernel_moments", "kernel_of", "kernel_size",
           "lr_agreement"]


def gaussian_kernel(sigma_x: float, sigma_y: float | None = None, theta: float = 0.0, size: int | None = None) -> Tensor:
    """Normalised 2-D Gaussian (size, size), centred; anisotropic when ``sigma_y`` differs, its x axis
    rotated by ``theta`` (radians). ``size`` defaults to the odd ``2*ceil(3*sigma_max)+1``."""
    sigma_y = sigma_x if sigma_y is None else sigma_y
    if sigma_x <= 0 or sigma_y <= 0:
        raise ConfigError(f"degradation blur sigmas must be > 0, got ({sigma_x}, {sigma_y})")
    size = size or 2 * math.ceil(3 * max(sigma_x, sigma_y)) + 1
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * xx + s * yy, -s * xx + c * yy
    k = torch.exp(-0.5 * ((u / sigma_x) ** 2 + (v / sigma_y) ** 2))
    return (k / k.sum()).float()


def kernel_size(scale: int, pad: int) -> int:
    return scale + 2 * pad


def apply_kernel(hr: Tensor, kernel: Tensor, scale: int) -> Tensor:
    """Downscale ``hr`` (B, C, H, W) by ``kernel`` (K, K) with the module's convention -> (B, C, H/s, W/s).

    Differentiable in both ``hr`` and ``kernel``. ``H``, ``W`` must be multiples of ``scale``.
    """
    k = kernel.shape[-1]
    pad = (k - scale) // 2
    if k != kernel.shape[-2] or (k - scale) % 2 or pad < 0:
        raise ConfigError(f"a x{scale} kernel must be square with size scale + 2*pad, got {tuple(kernel.shape)}")
    b, c, h, w = hr.shape
    x = F.pad(hr.reshape(b * c, 1, h, w), (pad, pad + scale, pad, pad + scale), mode="reflect")
    out = F.conv2d(x, kernel.to(hr)[None, None], stride=scale)
    return out[..., : h // scale, : w // scale].reshape(b, c, h // scale, w // scale)


def kernel_of(op: Callable[[Tensor], Tensor], scale: int, pad: int) -> Tensor:
    """The kernel (K, K) of a linear shift-invariant downscaler ``op``: (N, 1, H, W) -> (N, 1, H/s, W/s).

    Measured with impulses, one image per sub-pixel phase (s*s images): an HR impulse at ``q``
    reaches every LR pixel ``i`` with ``q = s*i + u - p``, which gives ``k[u]`` for all ``u`` of
    that phase at once (far from the border).
    """
    k = kernel_size(scale, pad)
    reach = math.ceil(k / scale) + 1
    n_lr = 2 * reach + 3
    c = scale * (n_lr // 2)  # impulse base position: a multiple of s near the centre
    imp = torch.zeros(scale * scale, 1, n_lr * scale, n_lr * scale, dtype=torch.float64)
    phases = [(a, b) for a in range(scale) for b in range(scale)]
    for n, (a, b) in enumerate(phases):
        imp[n, 0, c + a, c + b] = 1.0
    resp = op(imp)[:, 0]
    out = torch.zeros(k, k, dtype=torch.float64)
    i = torch.arange(n_lr)
    for n, (a, b) in enumerate(phases):
        u, v = c + a - scale * i + pad, c + b - scale * i + pad  # kernel index of each LR row / column
        ok_u, ok_v = (u >= 0) & (u < k), (v >= 0) & (v < k)
        out[u[ok_u][:, None], v[ok_v][None, :]] = resp[n][i[ok_u]][:, i[ok_v]]
    return out.float()


def kernel_covariance(k: Tensor) -> np.ndarray:
    """Second moments (2, 2) of a kernel about its centre of mass, HR px^2, [[xx, xy], [xy, yy]]."""
    return _moments(k)[1]


def _moments(kernel: Tensor) -> tuple[tuple[float, float], np.ndarray]:
    """Centre of mass (x, y) from the grid's centre and the covariance about it."""
    k = kernel.double() / kernel.sum()
    n = k.shape[-1]
    r = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    my, mx = float((k * yy).sum()), float((k * xx).sum())
    cyy = float((k * (yy - my) ** 2).sum())
    cxx = float((k * (xx - mx) ** 2).sum())
    cxy = float((k * (xx - mx) * (yy - my)).sum())
    return (mx, my), np.array([[cxx, cxy], [cxy, cyy]])


def kernel_moments(kernel: Tensor, scale: int) -> dict[str, float]:
    """Centre offset (HR px, from the LR pixel's block centre) and the covariance's principal
    sigmas (HR px) and angle (degrees) of a kernel; for plots and error reports."""
    (mx, my), c = _moments(kernel)
    cxx, cxy, cyy = float(c[0, 0]), float(c[0, 1]), float(c[1, 1])
    tr, det = cxx + cyy, cxx * cyy - cxy**2
    disc = math.sqrt(max(tr**2 / 4 - det, 0.0))
    l1, l2 = tr / 2 + disc, max(tr / 2 - disc, 0.0)
    theta = 0.5 * math.degrees(math.atan2(2 * cxy, cxx - cyy))
    return {"offset_x": mx, "offset_y": my, "sigma_major": math.sqrt(l1), "sigma_minor": math.sqrt(l2), "theta_deg": theta}


MAX_AGREEMENT_DB = 100.0  # identical kernels (PSNR infinite): a finite number for reports and means


def lr_agreement(a: Tensor, b: Tensor, scale: int, images: list[Tensor], shave: int = 2) -> float:
    """How alike two kernels are, as DualSR scores kernel estimates: the Y-PSNR (dB) between the LR images
    they make of the same HR ``images`` ((3, H, W) or (1, 3, H, W) in [0,1]; each cropped to the scale),
    averaged over the images; at most :data:`MAX_AGREEMENT_DB`."""
    values = []
    for hr in images:
        hr = hr if hr.dim() == 4 else hr[None]
        h, w = hr.shape[-2:]
        hr = hr[..., : h - h % scale, : w - w % scale].float()
        values.append(min(float(psnr(apply_kernel(hr, a, scale), apply_kernel(hr, b, scale), shave=shave).mean()),
                          MAX_AGREEMENT_DB))
    return float(np.mean(values))
