"""Synthetic degradations that make "real-world-like" LR images from HR images (known truth).

Used to build a target domain with known HR (to *measure* adaptation): blur (isotropic or
anisotropic Gaussian), downscaling, additive Gaussian noise, JPEG compression and an H.264 stage,
applied in that order (the classical degradation model y = JPEG((x * k)↓s + n), then a video codec).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from sr_adapt.errors import ConfigError
from sr_adapt.io.video_writer import codec_round_trip
from sr_adapt.ops.color import quantize
from sr_adapt.ops.resize import imresize
from sr_adapt.degradation.kernels import gaussian_kernel, kernel_of


def jpeg(x: Tensor, quality: int) -> Tensor:
    """Real JPEG round trip (Pillow, 4:2:0) of (B, 3, H, W) in [0,1] -> same shape, 8-bit values."""
    out = []
    for img in quantize(x).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255).to(x.device)


def h264(x: Tensor, qp: int) -> Tensor:
    """H.264 round trip of (B, 3, H, W) in [0,1], each image coded alone as one intra frame by
    libx264 at the constant quantizer ``qp`` (0..51; 4:2:0) -> same shape, 8-bit values.

    A constant QP, not a CRF: what a clip's blocks were quantized with can be read from any H.264
    file (:func:`sr_adapt.io.video.mean_qp`), and CRF alone does not fix it."""
    frames = quantize(x).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    params = f"qp={int(qp)}:ipratio=1.0"  # ipratio 1: the I frame gets the P frames' quantizer
    out = np.stack([codec_round_trip(f[None], x264_params=params)[0] for f in frames])
    return torch.from_numpy(out).permute(0, 3, 1, 2).float().div(255).to(x.device)


@dataclass
class Degradation:
    """HR (B, 3, H, W) in [0,1] (H, W multiples of ``scale``) -> LR (B, 3, H/s, W/s), 8-bit values.

    Args:
        scale: downscaling factor.
        blur_sigma: Gaussian blur sigma in HR pixels (0: none); ``blur_sigma_y``/``blur_theta``
            (degrees) make it anisotropic.
        downsample: ``bicubic`` (MATLAB imresize, antialiased) or ``decimate`` (keep every s-th
            pixel after the blur: the classical s-fold downsampler).
        noise_sigma: additive Gaussian noise, in 8-bit levels (0..255 units).
        jpeg_quality: JPEG quality 1..100 (0: no compression).
        video_qp: H.264 (libx264) quantizer 0..51 of a last codec stage (:func:`h264`; None: none).
        seed: noise seed (the target set is the same on every run).
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

    def __post_init__(self) -> None:
        if self.downsample not in ("bicubic", "decimate"):
            raise ConfigError(f"degradation.downsample must be 'bicubic' or 'decimate', got {self.downsample!r}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ConfigError(f"degradation.jpeg_quality must be in 0..100, got {self.jpeg_quality}")
        if self.video_qp is not None and not 0 <= self.video_qp <= 51:
            raise ConfigError(f"degradation.video_qp must be an H.264 quantizer 0..51 (or null), got {self.video_qp}")

    def linear(self, hr: Tensor) -> Tensor:
        """The blur and downscale alone: (B, C, H, W) -> (B, C, H/s, W/s), not quantized."""
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

    def kernel(self) -> Tensor:
        """The blur + downscale as one kernel (:mod:`sr_adapt.degradation.kernels` convention)."""
        sigma = max(self.blur_sigma, self.blur_sigma_y or 0.0)
        return kernel_of(self.linear, self.scale, 2 * self.scale + math.ceil(3 * sigma))

    def __call__(self, hr: Tensor, index: int = 0, generator: torch.Generator | None = None) -> Tensor:
        """``index`` varies the noise between images of a set (same set on every run); a
        ``generator`` replaces that seeding (training pairs drawn on the fly)."""
        x = self.linear(hr)
        if self.noise_sigma > 0:
            g = generator or torch.Generator().manual_seed(self.seed * 1_000_003 + index)
            x = x + torch.randn(x.shape, generator=g).to(x) * (self.noise_sigma / 255.0)
        x = quantize(x)
        if self.jpeg_quality:
            x = jpeg(x, self.jpeg_quality)
        if self.video_qp is not None:
            x = h264(x, self.video_qp)
        return x

    def describe(self) -> str:
        parts = []
        if self.blur_sigma > 0:
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
