"""Synthetic degradations that make "real-world-like" LR images from HR images (known truth).

Used to build a target domain with known HR (to *measure* adaptation). A :class:`Degradation` is a
config (blur, downscaling, noise, JPEG, H.264) that builds the degradation chain
(:meth:`Degradation.record`, :mod:`.stages`) and runs it: the same chain that training pairs and the
estimate's calibration run. ``kernel=div2krk`` draws the field's benchmark kernel per image instead of
one blur for the whole set (:mod:`.kernel_family`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sr_adapt.degradation.kernel_family import div2krk_kernel, kernel_grid
from sr_adapt.degradation.kernels import gaussian_kernel, kernel_of
from sr_adapt.degradation.record import DegradationRecord
from sr_adapt.degradation.stages import h264, jpeg
from sr_adapt.errors import ConfigError
from sr_adapt.ops.resize import imresize

__all__ = ["Degradation", "KERNEL_DRAWS", "bicubic_kernel", "jpeg", "h264"]

KERNEL_DRAWS = ("div2krk",)  # kernels drawn per image


def bicubic_kernel(scale: int, size: int | None = None) -> Tensor:
    """The kernel of MATLAB's bicubic ``imresize(x, 1/scale)`` on a (size, size) grid (default: the
    free-form grid, :func:`~.kernel_family.kernel_grid`)."""
    size = size or kernel_grid(scale)
    return kernel_of(lambda x: imresize(x, scale=1.0 / scale), scale, (size - scale) // 2)


@dataclass
class Degradation:
    """HR (B, 3, H, W) in [0,1] (H, W multiples of ``scale``) -> LR (B, 3, H/s, W/s), 8-bit values.

    Args:
        scale: downscaling factor.
        blur_sigma: Gaussian blur sigma in HR pixels (0: none); ``blur_sigma_y``/``blur_theta``
            (degrees) make it anisotropic.
        downsample: ``bicubic`` (MATLAB imresize, antialiased) or ``decimate`` (keep every s-th
            pixel after the blur: the classical s-fold downsampler).
        kernel: None (the blur above) or ``div2krk``: a DIV2KRK kernel drawn per image from
            ``(seed, image index)`` (then ``decimate`` and no blur parameters).
        noise_sigma: additive Gaussian noise, in 8-bit levels (0..255 units).
        jpeg_quality: JPEG quality 1..100 (0: no compression).
        video_qp: H.264 (libx264) quantizer 0..51 of a last codec stage (None: none).
        seed: noise and kernel seed (the target set is the same on every run).
    """

    scale: int = 4
    blur_sigma: float = 0.0
    blur_sigma_y: float | None = None
    blur_theta: float = 0.0
    downsample: str = "bicubic"
    noise_sigma: float = 0.0
    jpeg_quality: int = 0
    video_qp: int | None = None
    seed: int = 0
    kernel_draw: str | None = None
    _kernel: Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.downsample not in ("bicubic", "decimate"):
            raise ConfigError(f"degradation.downsample must be 'bicubic' or 'decimate', got {self.downsample!r}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ConfigError(f"degradation.jpeg_quality must be in 0..100, got {self.jpeg_quality}")
        if self.video_qp is not None and not 0 <= self.video_qp <= 51:
            raise ConfigError(f"degradation.video_qp must be an H.264 quantizer 0..51 (or null), got {self.video_qp}")
        if self.kernel_draw is not None:
            if self.kernel_draw not in KERNEL_DRAWS:
                raise ConfigError(f"degradation.kernel_draw={self.kernel_draw!r}: choose null or one of {', '.join(KERNEL_DRAWS)}")
            if self.blur_sigma or self.downsample != "decimate":
                raise ConfigError(f"degradation.kernel_draw={self.kernel_draw} draws the whole kernel and decimates: set "
                                  "degradation.blur_sigma=0 and degradation.downsample=decimate")

    @property
    def per_image(self) -> bool:
        """True when every image has its own kernel (adapt per image)."""
        return self.kernel_draw is not None

    def linear(self, hr: Tensor) -> Tensor:
        """The parametric blur and downscale alone, as MATLAB/decimation do it: (B, C, H, W) -> (B, C, H/s, W/s).
        Measured into the chain's kernel (:meth:`kernel`); not used to synthesise."""
        x = hr
        if self.blur_sigma > 0:
            k = gaussian_kernel(self.blur_sigma, self.blur_sigma_y, math.radians(self.blur_theta)).to(x)
            r = k.shape[-1] // 2
            b, c, h, w = x.shape
            x = F.conv2d(F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode="reflect"), k[None, None])
            x = x.reshape(b, c, h, w)
        if self.downsample == "bicubic":
            return imresize(x, scale=1.0 / self.scale)
        return x[..., self.scale // 2 :: self.scale, self.scale // 2 :: self.scale]

    def kernel(self, index: int = 0) -> Tensor:
        """The blur + downscale of image ``index`` as one kernel (:mod:`sr_adapt.degradation.kernels` convention)."""
        if self.kernel_draw == "div2krk":
            return div2krk_kernel(np.random.default_rng([int(self.seed), int(index)]), self.scale)
        if self._kernel is None:
            sigma = max(self.blur_sigma, self.blur_sigma_y or 0.0)
            self._kernel = kernel_of(self.linear, self.scale, 2 * self.scale + math.ceil(3 * sigma))
        return self._kernel

    def record(self, index: int = 0) -> DegradationRecord:
        """The chain of image ``index`` (the same for every image unless the kernel is drawn per image)."""
        n = float(self.noise_sigma)
        return DegradationRecord.standard(self.scale, self.kernel(index), (n, n, n), None, int(self.jpeg_quality),
                                          {"method": "truth", "describe": self.describe()}, self.video_qp)

    def __call__(self, hr: Tensor, index: int = 0, generator: torch.Generator | None = None) -> Tensor:
        """``index`` varies the noise (and a drawn kernel) between images of a set (same set on every
        run); a ``generator`` replaces the noise seeding (training pairs drawn on the fly)."""
        g = generator or torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return self.record(index).apply(hr, g)

    def describe(self) -> str:
        parts = []
        if self.kernel_draw == "div2krk":
            parts.append(f"DIV2KRK kernel per image (seed {self.seed})")
        elif self.blur_sigma > 0:
            if self.blur_sigma_y is not None and self.blur_sigma_y != self.blur_sigma:
                parts.append(f"aniso blur ({self.blur_sigma}, {self.blur_sigma_y}, {self.blur_theta} deg)")
            else:
                parts.append(f"blur sigma {self.blur_sigma}")
        parts.append(f"x{self.scale} {self.downsample}")
        if self.noise_sigma:
            parts.append(f"noise {self.noise_sigma}/255")
        if self.jpeg_quality:
            parts.append(f"JPEG q{self.jpeg_quality}")
        if self.video_qp is not None:
            parts.append(f"H.264 qp {self.video_qp}")
        return " + ".join(parts)
