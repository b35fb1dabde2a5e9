"""The ``cross_scale`` blur estimate: a Gaussian kernel in a chosen family, from LR images' own cross-scale
statistics calibrated on clean reference HR images (used by :func:`.estimate.estimate_degradation`).

**Blur** (:func:`estimate_blur`, ``cross_scale``), from the images' own cross-scale statistics, KernelGAN's
principle (the right downscaler makes an image's patches look like the image's own) with a
parametric downscaler instead of a GAN: for an image ``x`` and a direction ``phi`` in {0, 45, 90,
135 deg} the *sharpness* ``S_phi(x) = E|x(t+1) - x(t)|^2 / E|x(t+2) - x(t)|^2`` (noise energy
subtracted) falls as the image gets blurrier. The x2 Gaussian downscaler ``sigma2_phi`` whose output
``y`` is as sharp as ``x`` itself (``S_phi(y) = S_phi(x)``) measures the blur of ``x`` in its
own pixels along ``phi``, independently of the image's content (power-law spectra are scale
invariant). That statistic is turned into a Gaussian blur in HR pixels by calibration: the same
statistic measured on *reference* HR images (the bicubic source domain the model was trained on)
blurred by known sigmas and downscaled. The statistic does not tell the downscaler's *family* apart
(a Gaussian of ~1.4 HR px then plain decimation is as sharp as bicubic), so the family is a prior: by
default blur + plain decimation (camera-like), the guess that costs least when it is wrong
(BENCHMARKS.md: -0.04 to -0.08 dB where the truth is bicubic, against -0.15 dB for bicubic where it is
decimation); ``bicubic`` makes the estimate the blur *in addition to* the source domain's bicubic
downscaling; ``auto`` keeps bicubic unless the target is sharper than the bicubic reference. The
kernel is that Gaussian followed by the downscaler
(:meth:`sr_adapt.degradation.synthetic.Degradation.kernel`); isotropic by default (the root mean
square of the four directional sigmas), anisotropic on request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sr_adapt.degradation.synthetic import Degradation
from sr_adapt.ops.color import rgb_to_y

__all__ = ["CALIBRATION_SIGMAS", "DEFAULT_DOWNSAMPLE", "DOWNSAMPLE_FAMILIES", "cross_scale_blur", "cross_scale_kernel",
           "degrade_reference", "estimate_blur", "lag_energy", "lumas", "sharpness_curve"]

DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))  # (dy, dx) of 0, 45, 90, 135 degrees
SIGMA2_GRID = torch.linspace(0.0, 3.0, 31)  # x2 probe blurs (LR pixels); 0 = plain decimation
CALIBRATION_SIGMAS = (0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.5, 3.0, 3.6, 4.4)  # extra HR blurs of the reference


def lag_energy(y: Tensor, direction: tuple[int, int], lag: int) -> float:
    """Mean squared difference of (N, 1, H, W) at ``lag`` along ``direction`` (dy, dx)."""
    dy, dx = direction[0] * lag, direction[1] * lag
    h, w = y.shape[-2:]
    a = y[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
    b = y[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
    return float(((a - b) ** 2).mean())


def _sharpness(lumas: Sequence[Tensor], noise_var: Sequence[float] = (0.0, 0.0)) -> Tensor:
    """(4,) pooled S_phi with the noise energies (lag 1, lag 2) subtracted."""
    out = []
    for d in DIRECTIONS:
        e1 = float(np.mean([lag_energy(y, d, 1) for y in lumas])) - noise_var[0]
        e2 = float(np.mean([lag_energy(y, d, 2) for y in lumas])) - noise_var[1]
        out.append(max(e1, 1e-12) / max(e2, 1e-12))
    return torch.tensor(out)


def _down2(y: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur (LR px) then keep every second pixel: (N, 1, H, W) -> (N, 1, H/2, W/2)."""
    if sigma > 0:
        r = math.ceil(3 * sigma)
        t = torch.arange(-r, r + 1, dtype=y.dtype)
        g = torch.exp(-0.5 * (t / sigma) ** 2)
        g = (g / g.sum()).to(y)
        y = F.conv2d(F.pad(y, (r, r, r, r), mode="reflect"), g.view(1, 1, 1, -1))
        y = F.conv2d(y, g.view(1, 1, -1, 1))
    return y[..., ::2, ::2]


def sharpness_curve(lumas: Sequence[Tensor], noise_std: float = 0.0) -> tuple[Tensor, Tensor]:
    """(S_phi(x) (4,), S_phi(down2(x, sigma2)) (G, 4) for sigma2 in :data:`SIGMA2_GRID`) with white noise
    of ``noise_std`` ([0,1] units) accounted for."""
    var = noise_std**2
    s_x = _sharpness(lumas, (2 * var, 2 * var))
    probe = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rows = []
    for s2 in SIGMA2_GRID.tolist():
        nz = _down2(probe, s2)
        nvar = [var * lag_energy(nz, (0, 1), 1), var * lag_energy(nz, (0, 1), 2)]
        rows.append(_sharpness([_down2(y, s2) for y in lumas], nvar))
    return s_x, torch.stack(rows)


def _invert(curve: Tensor, value: float) -> float:
    """sigma2 where the (decreasing) ``curve`` over :data:`SIGMA2_GRID` crosses ``value``."""
    c = torch.cummin(curve, 0).values.numpy()[::-1]  # increasing
    g = SIGMA2_GRID.numpy()[::-1]
    return float(np.interp(value, c, g))


def cross_scale_blur(lumas: Sequence[Tensor], noise_std: float = 0.0) -> Tensor:
    """(4,) directional x2 blurs sigma2_phi (LR px) that keep the images' sharpness across scales."""
    s_x, curve = sharpness_curve(lumas, noise_std)
    return torch.tensor([_invert(curve[:, i], float(s_x[i])) for i in range(len(DIRECTIONS))])


def degrade_reference(reference_hr: Sequence[Tensor], scale: int, blur: float, noise: float, quality: int,
                      downsample: str = "bicubic", seed: int = 0, video_qp: int | None = None) -> list[Tensor]:
    """Reference HR images (3, H, W) blurred (HR px), downscaled, noised (8-bit levels), JPEG'd, H.264'd."""
    deg = Degradation(scale=scale, blur_sigma=blur, downsample=downsample, noise_sigma=noise, jpeg_quality=quality,
                      video_qp=video_qp, seed=seed)
    out = []
    for i, hr in enumerate(reference_hr):
        h, w = hr.shape[-2:]
        out.append(deg(hr[None, :, : h - h % scale, : w - w % scale], index=i)[0])
    return out


def lumas(images: Sequence[Tensor]) -> list[Tensor]:
    """(3, H, W) images in [0,1] -> their luma (1, 1, H, W) float64, what the statistics are measured on."""
    return [rgb_to_y(im[None]).double() for im in images]


DOWNSAMPLE_FAMILIES = ("auto", "bicubic", "decimate")
DEFAULT_DOWNSAMPLE = "decimate"  # the prior that costs least when it is wrong (module docstring)


def estimate_blur(images_y: Sequence[Tensor], reference_hr: Sequence[Tensor], scale: int, noise: float, quality: int,
                  sigmas: Sequence[float] = CALIBRATION_SIGMAS, downsample: str = DEFAULT_DOWNSAMPLE,
                  video_qp: int | None = None) -> tuple[float, float, float, str, Tensor]:
    """(sigma_major, sigma_minor, theta_rad, downsample, directional sigmas (4,)) of the Gaussian blur in HR px.

    The target's cross-scale statistic is compared with that of the reference images degraded with the
    same noise, JPEG and codec and each calibration blur, then downscaled in the family ``downsample``
    (one curve, averaged over directions so that the reference's own orientations cancel).

    ``downsample``: ``decimate`` (blur + plain s-fold sampling), ``bicubic``, or ``auto`` (bicubic unless
    the target is sharper than the bicubic reference itself, then decimate). The statistic does not tell
    the families apart where the target is about as sharp as the bicubic reference (a Gaussian blur of
    ~1.3-1.5 HR px followed by decimation looks like bicubic there); measured (BENCHMARKS.md), the
    decimation prior loses 0.04-0.08 dB on bicubic-family targets and bicubic loses 0.15 dB on a
    decimation-family one, hence the default."""
    t = cross_scale_blur(images_y)

    def calibration(downsample: str) -> np.ndarray:
        curve = torch.stack([cross_scale_blur(lumas(degrade_reference(reference_hr, scale, s, noise, quality, downsample,
                                                                       video_qp=video_qp)))
                             for s in sigmas]).mean(1)
        return np.maximum.accumulate(curve.numpy())

    if downsample not in DOWNSAMPLE_FAMILIES:
        raise ValueError(f"downsample={downsample!r}: choose one of {', '.join(DOWNSAMPLE_FAMILIES)}")
    family = "bicubic" if downsample == "auto" else downsample
    c = calibration(family)
    if downsample == "auto" and float(t.mean()) < c[0] - 0.05:
        family = "decimate"
        c = calibration(family)
    downsample = family
    grid = np.asarray(sigmas, dtype=np.float64)
    dir_sigma = [float(np.interp(float(v), c, grid)) for v in t]
    v = np.square(dir_sigma)  # variances along 0, 45, 90, 135 degrees (x right, y down)
    # v0 = a, v90 = c, v45 = (a + c)/2 + b, v135 = (a + c)/2 - b  (least squares in a, b, c)
    m = np.array([[1, 0, 0], [0.5, 1, 0.5], [0, 0, 1], [0.5, -1, 0.5]])
    a, b, c2 = np.linalg.lstsq(m, v, rcond=None)[0]
    tr, det = a + c2, a * c2 - b * b
    disc = math.sqrt(max(tr * tr / 4 - det, 0.0))
    l1, l2 = max(tr / 2 + disc, 0.0), max(tr / 2 - disc, 0.0)
    theta = 0.5 * math.atan2(2 * b, a - c2)
    return math.sqrt(l1), math.sqrt(l2), theta, downsample, torch.tensor(dir_sigma)


def cross_scale_kernel(images_y: Sequence[Tensor], reference_hr: Sequence[Tensor], scale: int, noise: float,
                       quality: int, video_qp: int | None, downsample: str,
                       anisotropic: bool) -> tuple[Tensor, dict[str, Any]]:
    """The ``cross_scale`` method's kernel (a Gaussian in the ``downsample`` family) from the lumas of the LR
    images (:func:`lumas`), and what it found (for the record's meta)."""
    s_major, s_minor, theta, downsample, dir_sigma = estimate_blur(images_y, reference_hr, scale, noise, quality,
                                                                   downsample=downsample, video_qp=video_qp)
    if not anisotropic:
        s_major = s_minor = float(dir_sigma.square().mean().sqrt())
        theta = 0.0
    if s_major < 0.2 and downsample == "bicubic":
        kernel = Degradation(scale).kernel()  # no blur beyond the source domain's bicubic
    else:
        kernel = Degradation(scale, max(s_major, 0.3), max(s_minor, 0.3), math.degrees(theta), downsample).kernel()
    return kernel, {"method": "cross_scale", "blur_sigma": [round(s_major, 3), round(s_minor, 3),
                                                            round(math.degrees(theta), 1)],
                    "downsample": downsample, "directional_sigma": [round(float(v), 3) for v in dir_sigma]}
