"""Free-form blur kernels on the downscaler grid (:mod:`.kernels` convention: K = scale + 2*pad, centre
of mass on the LR pixel's block centre): the DIV2KRK draw, motion lines, defocus disks, and the random
family the learned kernel estimator is trained on (:func:`random_kernel`).

DIV2KRK (the field's benchmark for blind SR; recipe of assafshocher/BlindSR_dataset_generator, as
summarised in KernelGAN's issues): covariance ``Q diag(l1, l2) Q^T`` with variances ``l1, l2 ~ U(0.175 s,
2.5 s)`` HR px^2 and ``theta ~ U(0, pi)``; ``k = exp(-z^T Sigma^-1 z / 2) (1 + n)`` with per-pixel
multiplicative noise ``n ~ U(-0.4, 0.4)``; the centre of mass moved to the grid's centre; normalised.
We draw at the scale asked directly (the generator's way; the published x4 set was made from x2
kernels) on a grid of :func:`kernel_grid` pixels, then decimate (:func:`~.kernels.apply_kernel`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from sr_adapt.degradation.kernels import kernel_covariance  # noqa: F401  (re-exported: the families' measure)

__all__ = ["kernel_grid", "gaussian_cov_kernel", "centre_kernel", "div2krk_kernel", "line_kernel", "disk_kernel",
           "random_kernel", "kernel_covariance", "compose_kernels"]


def kernel_grid(scale: int) -> int:
    """The grid of free-form kernels at ``scale``: scale + 2*pad HR px, pad = 2.5 * scale (24 px at x4,
    12 at x2): room for DIV2KRK's widest Gaussian (sigma sqrt(2.5 s)) beyond 3.5 sigma."""
    return int(scale + 2 * math.ceil(2.5 * scale))


def _coords(size: int) -> tuple[Tensor, Tensor]:
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return yy, xx


def gaussian_cov_kernel(cov: np.ndarray | Tensor, size: int) -> Tensor:
    """Gaussian (size, size) float64 of covariance ``cov`` ((2, 2), HR px^2, [[xx, xy], [xy, yy]]), centred, sum 1."""
    inv = torch.linalg.inv(torch.as_tensor(cov, dtype=torch.float64))
    yy, xx = _coords(size)
    k = torch.exp(-0.5 * (inv[0, 0] * xx**2 + 2 * inv[0, 1] * xx * yy + inv[1, 1] * yy**2))
    return k / k.sum()


def centre_kernel(k: Tensor, clamp: bool = True) -> Tensor:
    """``k`` (size, size) shifted (Fourier, sub-pixel) so that its centre of mass is the grid's centre,
    normalised to sum 1 (negative values clipped first when ``clamp``)."""
    k = k.double()
    k = k / k.sum()
    size = k.shape[-1]
    yy, xx = _coords(size)
    my, mx = float((k * yy).sum()), float((k * xx).sum())
    fy = torch.fft.fftfreq(size, dtype=torch.float64)[:, None]
    fx = torch.fft.fftfreq(size, dtype=torch.float64)[None, :]
    k = torch.fft.ifft2(torch.fft.fft2(k) * torch.exp(2j * math.pi * (fy * my + fx * mx))).real
    if clamp:
        k = k.clamp(min=0)
    return k / k.sum()


def _random_cov(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    l1, l2 = rng.uniform(low, high, 2)
    theta = rng.uniform(0.0, math.pi)
    c, s = math.cos(theta), math.sin(theta)
    q = np.array([[c, -s], [s, c]])
    return q @ np.diag([l1, l2]) @ q.T


def div2krk_kernel(rng: np.random.Generator, scale: int, size: int | None = None) -> Tensor:
    """One DIV2KRK kernel (size, size) float32 at ``scale`` (module docstring)."""
    size = size or kernel_grid(scale)
    k = gaussian_cov_kernel(_random_cov(rng, 0.175 * scale, 2.5 * scale), size)
    k = k * torch.from_numpy(1.0 + rng.uniform(-0.4, 0.4, (size, size)))
    return centre_kernel(k).float()


def compose_kernels(a: Tensor, b: Tensor) -> Tensor:
    """The kernel of blurring by ``a`` then by ``b`` (both (size, size), centred), on the same grid."""
    size = a.shape[-1]
    fa, fb = torch.fft.rfft2(a.double(), s=(2 * size, 2 * size)), torch.fft.rfft2(b.double(), s=(2 * size, 2 * size))
    full = torch.fft.irfft2(fa * fb, s=(2 * size, 2 * size))
    start = (size - 1) // 2  # on an even grid the result is half a pixel off: centre_kernel it
    return full[start : start + size, start : start + size]


def line_kernel(length: float, angle_deg: float, size: int, width: float = 0.5) -> Tensor:
    """A straight motion blur of ``length`` HR px at ``angle_deg`` (x right, y down), anti-aliased over
    ``width`` px across, centred, sum 1: (size, size) float32."""
    yy, xx = _coords(size)
    t = math.radians(angle_deg)
    along = (xx * math.cos(t) + yy * math.sin(t)).abs()
    across = (-xx * math.sin(t) + yy * math.cos(t)).abs()
    k = (1 - (along - length / 2).clamp(0, 1)) * (1 - (across - width).clamp(0, 1))
    return centre_kernel(k.clamp(min=0)).float()


def disk_kernel(radius: float, size: int) -> Tensor:
    """A defocus disk of ``radius`` HR px, anti-aliased edge, sum 1: (size, size) float32."""
    yy, xx = _coords(size)
    k = (radius + 0.5 - (xx**2 + yy**2).sqrt()).clamp(0, 1)
    return centre_kernel(k).float()


def random_kernel(rng: np.random.Generator, scale: int, size: int | None = None,
                  bicubic: Tensor | None = None) -> Tensor:
    """A kernel of the family the learned estimator is trained on (float32, (size, size), sum 1):

    - 45%: anisotropic Gaussians, variances U(0.06 s, 3 s) HR px^2 (wider than DIV2KRK's range on both
      sides), with multiplicative noise of a random strength up to DIV2KRK's 0.4;
    - 15%: ``bicubic`` (the MATLAB bicubic downscaler's kernel, when given) after an anisotropic Gaussian
      of variances U(0, 0.75 s): software-downscaled footage;
    - 15%: motion lines of 1.5..3 s HR px, blurred by a small Gaussian;
    - 10%: defocus disks of radius 0.25..1.1 s HR px, blurred by a small Gaussian;
    - 15%: isotropic Gaussians, sigma U(0.3, 0.8 s) HR px.
    """
    size = size or kernel_grid(scale)
    u = rng.random()
    small = gaussian_cov_kernel(np.eye(2) * rng.uniform(0.15, 0.25 * scale) ** 2, size)
    if u < 0.45:
        k = gaussian_cov_kernel(_random_cov(rng, 0.0625 * scale, 3.0 * scale), size)
        k = k * torch.from_numpy(1.0 + rng.uniform(-0.4, 0.4, (size, size)) * rng.uniform(0.0, 1.0))
    elif u < 0.6 and bicubic is not None:
        blur = gaussian_cov_kernel(_random_cov(rng, 1e-3, 0.75 * scale), size)
        return centre_kernel(compose_kernels(bicubic.double(), blur), clamp=False).float()
    elif u < 0.75:
        k = compose_kernels(line_kernel(rng.uniform(1.5, 3.0) * scale, rng.uniform(0, 180), size).double(), small)
    elif u < 0.85:
        k = compose_kernels(disk_kernel(rng.uniform(0.25, 1.1) * scale, size).double(), small)
    else:
        k = gaussian_cov_kernel(np.eye(2) * rng.uniform(0.3, 0.8 * scale) ** 2, size)
    return centre_kernel(k.clamp(min=0)).float()


