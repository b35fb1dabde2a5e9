"""The stages of a degradation HR -> LR, applied in order: one list that the synthetic targets, the
degradation file and the estimate's calibration all run (:class:`~sr_adapt.degradation.record.DegradationRecord`).

A stage maps (B, 3, H, W) in [0,1] to the next image; only :class:`Downscale` changes the size.
Each stage knows how to apply itself (``generator``: the random stream of the noise), check itself,
describe itself, and store itself as plain values and tensors (``state`` / ``from_state``: a file
loads with ``weights_only=True``). Adding a stage is one class here and its entry in :data:`STAGES`.

The canonical order (:func:`standard_chain`): kernel, noise, 8-bit quantisation, JPEG, H.264; the
classical model ``y = JPEG((x * k)↓s + n)`` followed by a video codec.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from sr_adapt.degradation.kernels import apply_kernel
from sr_adapt.errors import ConfigError
from sr_adapt.io.video_writer import codec_round_trip
from sr_adapt.ops.color import quantize

__all__ = ["Stage", "Downscale", "Noise", "Quantize", "Jpeg", "H264", "STAGES", "standard_chain", "jpeg", "h264",
           "MAX_OUTER_MASS"]

MAX_OUTER_MASS = 0.1  # kernel mass allowed in the outer ring (width = scale): more means a diverged estimate


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


class Stage:
    """One step of the chain. Subclasses are dataclasses with a unique ``name``."""

    name: ClassVar[str] = ""

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError

    def check(self, where: str, scale: int) -> None:
        """Raises :class:`ConfigError` naming ``where`` when the stage's values are not valid."""

    def describe(self) -> str:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """Plain values and tensors (saved in ``degradation.pt``)."""
        raise NotImplementedError

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Stage:
        raise NotImplementedError


@dataclass
class Downscale(Stage):
    """The linear downscaler as one kernel (K, K), K = scale + 2*pad (:mod:`.kernels` convention)."""

    kernel: Tensor
    scale: int
    name: ClassVar[str] = "kernel"

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return apply_kernel(x, self.kernel, self.scale)

    def check(self, where: str, scale: int) -> None:
        k, s = self.kernel, scale
        if k.dim() != 2 or k.shape[0] != k.shape[1] or (k.shape[0] - s) % 2 or k.shape[0] < s:
            raise ConfigError(f"{where}: kernel of shape {tuple(k.shape)} is not a x{s} kernel (square, size scale + 2*pad)")
        if not torch.isfinite(k).all():
            raise ConfigError(f"{where}: the degradation holds NaN/inf or negative values (a diverged estimate): re-estimate it")
        if abs(float(k.sum()) - 1.0) > 0.05:
            raise ConfigError(f"{where}: kernel sums to {float(k.sum()):.3f}, not 1: not a downscaling kernel")
        ring = torch.ones_like(k, dtype=torch.bool)
        ring[s:-s, s:-s] = False
        outer = float(k.abs()[ring].sum() / k.abs().sum())
        if outer > MAX_OUTER_MASS:
            raise ConfigError(f"{where}: {outer:.0%} of the kernel's mass lies at the border of its support "
                              f"(> {MAX_OUTER_MASS:.0%}): the estimate diverged or the kernel is cut off; re-estimate it")

    def describe(self) -> str:
        from sr_adapt.degradation.kernels import kernel_moments

        m = kernel_moments(self.kernel, self.scale)
        return (f"x{self.scale} kernel {self.kernel.shape[-1]}px (sigma {m['sigma_major']:.2f}/{m['sigma_minor']:.2f} "
                f"HR px, {m['theta_deg']:.0f} deg)")

    def state(self) -> dict[str, Any]:
        return {"kernel": self.kernel.float().contiguous(), "scale": int(self.scale)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Downscale:
        return cls(state["kernel"].float(), int(state["scale"]))


@dataclass
class Noise(Stage):
    """Additive noise: bank patches (N, 3, n, n) tiled at random (harvested from flat regions of the
    LR images, as RealSR injects them), or Gaussian of per-channel ``sigma`` (8-bit levels)."""

    sigma: tuple[float, float, float]
    patches: Tensor | None = None
    name: ClassVar[str] = "noise"

    def field(self, shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        """A noise field (B, 3, h, w) in [0,1] units."""
        b, c, h, w = shape
        if self.patches is None or not len(self.patches):
            sigma = torch.tensor(self.sigma, dtype=torch.float32).view(1, 3, 1, 1) / 255.0
            return torch.randn(tuple(shape), generator=generator) * sigma
        n = self.patches.shape[-1]
        gh, gw = math.ceil(h / n), math.ceil(w / n)
        idx = torch.randint(len(self.patches), (b, gh, gw), generator=generator)
        tiles = self.patches.float()[idx]  # (b, gh, gw, 3, n, n)
        return tiles.permute(0, 3, 1, 4, 2, 5).reshape(b, c, gh * n, gw * n)[..., :h, :w]

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return x + self.field(x.shape, generator).to(x)

    def check(self, where: str, scale: int) -> None:
        if not all(math.isfinite(v) and v >= 0 for v in self.sigma):
            raise ConfigError(f"{where}: the degradation holds NaN/inf or negative values (a diverged estimate): re-estimate it")
        if self.patches is not None and (self.patches.dim() != 4 or self.patches.shape[1] != 3):
            raise ConfigError(f"{where}: noise_patches of shape {tuple(self.patches.shape)}, expected (N, 3, n, n)")

    def describe(self) -> str:
        return f"noise {float(np.mean(self.sigma)):.2f}/255" + (f" ({len(self.patches)} patches)" if self.patches is not None else "")

    def state(self) -> dict[str, Any]:
        return {"sigma": [float(v) for v in self.sigma],
                "patches": None if self.patches is None else self.patches.half().contiguous()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Noise:
        patches = state.get("patches")
        return cls(tuple(float(v) for v in state["sigma"]), None if patches is None else patches.float())


@dataclass
class Quantize(Stage):
    """Rounding to 8-bit values (what a saved frame holds)."""

    name: ClassVar[str] = "quantize"

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return quantize(x)

    def describe(self) -> str:
        return "8 bit"

    def state(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Quantize:
        return cls()


@dataclass
class Jpeg(Stage):
    """A JPEG round trip at ``quality`` (1..100)."""

    quality: int
    name: ClassVar[str] = "jpeg"

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return jpeg(x, self.quality)

    def check(self, where: str, scale: int) -> None:
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"{where}: jpeg_quality {self.quality} is not in 1..100")

    def describe(self) -> str:
        return f"JPEG q{self.quality}"

    def state(self) -> dict[str, Any]:
        return {"quality": int(self.quality)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Jpeg:
        return cls(int(state["quality"]))


@dataclass
class H264(Stage):
    """An H.264 intra round trip at the constant quantizer ``qp`` (:func:`h264`), as read from a clip."""

    qp: int
    name: ClassVar[str] = "h264"

    def apply(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return h264(x, self.qp)

    def check(self, where: str, scale: int) -> None:
        if not 0 <= self.qp <= 51:
            raise ConfigError(f"{where}: video_qp {self.qp} is not an H.264 quantizer (0..51)")

    def describe(self) -> str:
        return f"H.264 qp {self.qp}"

    def state(self) -> dict[str, Any]:
        return {"qp": int(self.qp)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> H264:
        return cls(int(state["qp"]))


STAGES: dict[str, type[Stage]] = {cls.name: cls for cls in (Downscale, Noise, Quantize, Jpeg, H264)}


def standard_chain(scale: int, kernel: Tensor, noise_sigma: tuple[float, float, float] = (0.0, 0.0, 0.0),
                   noise_patches: Tensor | None = None, jpeg_quality: int = 0, video_qp: int | None = None) -> list[Stage]:
    """The canonical order: kernel, noise (when any), 8 bit, JPEG (quality > 0), H.264 (a quantizer given)."""
    stages: list[Stage] = [Downscale(kernel, int(scale))]
    if any(noise_sigma):
        stages.append(Noise(tuple(float(v) for v in noise_sigma), noise_patches))
    stages.append(Quantize())
    if jpeg_quality:
        stages.append(Jpeg(int(jpeg_quality)))
    if video_qp is not None:
        stages.append(H264(int(video_qp)))
    return stages
