"""The degradation record: what training and the benchmark take as "the target degradation".

A :class:`DegradationRecord` is a kernel (the linear downscaler, :mod:`.kernels` convention), a
noise level and a bank of noise patches, a JPEG quality and an H.264 stage; it comes from an estimate on LR-only
images (:func:`sr_adapt.degradation.estimate.estimate_degradation`) or from a known synthetic
degradation (the benchmark's oracle). Saved as ``degradation.pt`` (plain tensors and values:
loads with ``weights_only=True``), shown as a picture (kernel image and noise histogram).

Synthesis (:meth:`DegradationRecord.apply`): ``lr = H264(JPEG(quantize(k * hr downscaled + noise)))``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sr_adapt.degradation.kernels import apply_kernel, kernel_moments
from sr_adapt.degradation.synthetic import Degradation, h264, jpeg
from sr_adapt.errors import ConfigError, DataError
from sr_adapt.io.atomic import atomic_torch_save, show_path
from sr_adapt.ops.color import quantize

__all__ = ["DegradationRecord", "load_degradation", "FORMAT"]

FORMAT = "sr_adapt.degradation/1"
MAX_OUTER_MASS = 0.1  # kernel mass allowed in the outer ring (width = scale): more means a diverged estimate


@dataclass
class DegradationRecord:
    """One degradation HR -> LR at ``scale``.

    Attributes:
        scale: downscaling factor.
        kernel: (K, K) float32, sums to 1, K = scale + 2*pad (:mod:`.kernels` convention).
        noise_sigma: per-channel (R, G, B) standard deviation of the additive noise, 8-bit levels.
        noise_patches: (N, 3, n, n) zero-mean noise samples in [0,1] units (harvested from flat
            regions of the LR images), or None: Gaussian noise of ``noise_sigma`` is synthesised.
        jpeg_quality: JPEG quality (0: none).
        video_qp: H.264 quantizer of a codec stage applied last (None: none;
            :func:`~sr_adapt.degradation.synthetic.h264`), as read from a clip.
        meta: how it was made (method, images, seconds, parameters); plain values.
    """

    scale: int
    kernel: Tensor
    noise_sigma: tuple[float, float, float] = (0.0, 0.0, 0.0)
    noise_patches: Tensor | None = None
    jpeg_quality: int = 0
    meta: dict[str, Any] = field(default_factory=dict)
    video_qp: int | None = None

    @classmethod
    def from_synthetic(cls, deg: Degradation) -> DegradationRecord:
        """The exact record of a known synthetic degradation (the benchmark's oracle)."""
        n = float(deg.noise_sigma)
        return cls(deg.scale, deg.kernel(), (n, n, n), None, int(deg.jpeg_quality),
                   {"method": "truth", "describe": deg.describe()}, deg.video_qp)

    # --- synthesis ------------------------------------------------------------------
    def downscale(self, hr: Tensor) -> Tensor:
        """The linear part (differentiable): (B, 3, H, W) -> (B, 3, H/s, W/s)."""
        return apply_kernel(hr, self.kernel, self.scale)

    def noise(self, shape: torch.Size, generator: torch.Generator | None = None) -> Tensor:
        """A noise field (B, 3, h, w) in [0,1] units: bank patches tiled at random, or Gaussian."""
        b, c, h, w = shape
        if self.noise_patches is None or not len(self.noise_patches):
            sigma = torch.tensor(self.noise_sigma, dtype=torch.float32).view(1, 3, 1, 1) / 255.0
            return torch.randn(shape, generator=generator) * sigma
        n = self.noise_patches.shape[-1]
        gh, gw = math.ceil(h / n), math.ceil(w / n)
        idx = torch.randint(len(self.noise_patches), (b, gh, gw), generator=generator)
        tiles = self.noise_patches.float()[idx]  # (b, gh, gw, 3, n, n)
        field_ = tiles.permute(0, 3, 1, 4, 2, 5).reshape(b, c, gh * n, gw * n)
        return field_[..., :h, :w]

    def apply(self, hr: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """HR (B, 3, H, W) in [0,1], H and W multiples of the scale -> LR (B, 3, H/s, W/s), 8-bit values."""
        lr = self.downscale(hr)
        if any(self.noise_sigma):
            lr = lr + self.noise(lr.shape, generator).to(lr)
        lr = quantize(lr)
        if self.jpeg_quality:
            lr = jpeg(lr, self.jpeg_quality)
        return h264(lr, self.video_qp) if self.video_qp is not None else lr

    # --- description ----------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        m = kernel_moments(self.kernel, self.scale)
        return {"scale": self.scale, "kernel_size": int(self.kernel.shape[-1]),
                **{k: round(v, 3) for k, v in m.items()},
                "noise_sigma": [round(float(v), 3) for v in self.noise_sigma],
                "noise_patches": 0 if self.noise_patches is None else len(self.noise_patches),
                "jpeg_quality": self.jpeg_quality, "video_qp": self.video_qp, "method": self.meta.get("method", "?")}

    def describe(self) -> str:
        m = self.summary()
        text = (f"x{self.scale} kernel {m['kernel_size']}px (sigma {m['sigma_major']:.2f}/{m['sigma_minor']:.2f} HR px, "
                f"{m['theta_deg']:.0f} deg), noise {np.mean(m['noise_sigma']):.2f}/255")
        text += f", JPEG q{self.jpeg_quality}" if self.jpeg_quality else ""
        return text + (f", H.264 qp {self.video_qp}" if self.video_qp is not None else "")

    def picture(self, size: int = 192) -> np.ndarray:
        """(size, 2*size, 3) uint8: the kernel (left, max = white) and the noise histogram (right)."""
        k = self.kernel.clamp(min=0)
        k = (k / k.max().clamp(min=1e-12)).numpy()
        rep = max(size // k.shape[0], 1)
        img = np.kron(k, np.ones((rep, rep)))
        left = np.zeros((size, size), np.float64)
        h = min(img.shape[0], size)
        left[:h, :h] = img[:h, :h]
        right = np.zeros((size, size), np.float64)
        if self.noise_patches is not None and len(self.noise_patches):
            values = self.noise_patches.float().flatten().numpy() * 255.0
        else:
            values = np.random.default_rng(0).normal(0.0, max(float(np.mean(self.noise_sigma)), 1e-6), 20000)
        hist, _ = np.histogram(values, bins=size // 4, range=(-16, 16))
        hist = hist / max(hist.max(), 1)
        for i, v in enumerate(hist):
            right[size - int(round(v * (size - 1))) :, 4 * i : 4 * i + 3] = 1.0
        both = np.concatenate([left, right], axis=1)
        return (np.stack([both] * 3, axis=-1) * 255).round().astype(np.uint8)

    # --- files ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        obj = {"format": FORMAT, "scale": int(self.scale), "kernel": self.kernel.float().contiguous(),
               "noise_sigma": [float(v) for v in self.noise_sigma],
               "noise_patches": None if self.noise_patches is None else self.noise_patches.half().contiguous(),
               "jpeg_quality": int(self.jpeg_quality), "meta": dict(self.meta),
               "video_qp": None if self.video_qp is None else int(self.video_qp)}
        atomic_torch_save(obj, path)
        return Path(path)

    def check(self, where: str, expect_scale: int | None = None) -> None:
        """Raises :class:`ConfigError` naming ``where`` if the record cannot be a degradation at this scale."""
        k, s = self.kernel, self.scale
        if expect_scale is not None and s != expect_scale:
            raise ConfigError(f"{where} is a x{s} degradation but this run is x{expect_scale}: estimate one at x{expect_scale} "
                              "(delete it to re-estimate) or set scale to match")
        if k.dim() != 2 or k.shape[0] != k.shape[1] or (k.shape[0] - s) % 2 or k.shape[0] < s:
            raise ConfigError(f"{where}: kernel of shape {tuple(k.shape)} is not a x{s} kernel (square, size scale + 2*pad)")
        if not torch.isfinite(k).all() or not all(math.isfinite(v) and v >= 0 for v in self.noise_sigma):
            raise ConfigError(f"{where}: the degradation holds NaN/inf or negative values (a diverged estimate): re-estimate it")
        if abs(float(k.sum()) - 1.0) > 0.05:
            raise ConfigError(f"{where}: kernel sums to {float(k.sum()):.3f}, not 1: not a downscaling kernel")
        ring = torch.ones_like(k, dtype=torch.bool)
        ring[s:-s, s:-s] = False
        outer = float(k.abs()[ring].sum() / k.abs().sum())
        if outer > MAX_OUTER_MASS:
            raise ConfigError(f"{where}: {outer:.0%} of the kernel's mass lies at the border of its support "
                              f"(> {MAX_OUTER_MASS:.0%}): the estimate diverged or the kernel is cut off; re-estimate it")
        if not 0 <= self.jpeg_quality <= 100:
            raise ConfigError(f"{where}: jpeg_quality {self.jpeg_quality} is not in 0..100")
        if self.video_qp is not None and not 0 <= self.video_qp <= 51:
            raise ConfigError(f"{where}: video_qp {self.video_qp} is not an H.264 quantizer (0..51)")


def load_degradation(path: str | os.PathLike, key: str = "degradation_file", scale: int | None = None) -> DegradationRecord:
    """Reads and checks a ``degradation.pt``; every error names the file and ``key``."""
    path = Path(path).expanduser()
    where = f"{key}={show_path(path)}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist: give a degradation.pt written by an estimate, or {key}=null to estimate one")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise DataError(f"{where} is not a readable degradation file ({type(e).__name__}); re-estimate it") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise DataError(f"{where} is not a degradation file (format {FORMAT!r} expected); re-estimate it")
    try:
        rec = DegradationRecord(int(obj["scale"]), obj["kernel"].float(), tuple(float(v) for v in obj["noise_sigma"]),
                                obj.get("noise_patches"), int(obj.get("jpeg_quality", 0)), dict(obj.get("meta") or {}),
                                None if obj.get("video_qp") is None else int(obj["video_qp"]))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{where} is incomplete ({e}); re-estimate it") from None
    if rec.noise_patches is not None:
        rec.noise_patches = rec.noise_patches.float()
        if rec.noise_patches.dim() != 4 or rec.noise_patches.shape[1] != 3:
            raise ConfigError(f"{where}: noise_patches of shape {tuple(rec.noise_patches.shape)}, expected (N, 3, n, n)")
    rec.check(where, scale)
    return rec
