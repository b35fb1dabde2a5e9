"""The degradation record: what training and the benchmark take as "the target degradation".

A :class:`DegradationRecord` is one ordered list of stages (:mod:`.stages`: the kernel -- the linear
downscaler, :mod:`.kernels` convention --, noise from a bank of patches or Gaussian, 8-bit
quantisation, JPEG, H.264); it comes from an estimate on LR-only images
(:func:`sr_adapt.degradation.estimate.estimate_degradation`) or from a known synthetic degradation
(the benchmark's truth, :meth:`sr_adapt.degradation.synthetic.Degradation.record`). The synthetic
targets, the training pairs and the estimate's calibration all run :meth:`DegradationRecord.apply`.
Saved as ``degradation.pt`` (plain tensors and values: loads with ``weights_only=True``), shown as a
picture (kernel image and noise histogram).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sr_adapt.degradation.kernels import apply_kernel, kernel_moments
from sr_adapt.degradation.stages import (H264, MAX_OUTER_MASS, STAGES, Downscale, Jpeg, Noise, Stage,
                                         standard_chain)
from sr_adapt.errors import ConfigError, DataError
from sr_adapt.io.atomic import atomic_torch_save, show_path

__all__ = ["DegradationRecord", "load_degradation", "FORMAT", "MAX_OUTER_MASS"]

FORMAT = "sr_adapt.degradation/2"
FORMAT_V1 = "sr_adapt.degradation/1"  # fixed fields (kernel, noise, JPEG, H.264): still loads


@dataclass
class DegradationRecord:
    """One degradation HR -> LR at ``scale``: ``stages`` applied in order, the first a
    :class:`~.stages.Downscale`.

    Build one with :meth:`standard` (the canonical order) or from any list of stages. The read-only
    views ``kernel``, ``noise_sigma`` (per channel, 8-bit levels), ``noise_patches`` ((N, 3, n, n)
    zero-mean patches in [0,1] units or None), ``jpeg_quality`` (0: none) and ``video_qp`` (None:
    no codec stage) describe the stages they come from. ``meta``: how it was made (method, images,
    seconds, parameters); plain values. ``correction``: the input correction (m, m) fitted for this
    chain against the source domain's bicubic downscaler (:mod:`.correction`), or None.
    """

    scale: int
    stages: list[Stage]
    meta: dict[str, Any] = field(default_factory=dict)
    correction: Tensor | None = None

    @classmethod
    def standard(cls, scale: int, kernel: Tensor, noise_sigma: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 noise_patches: Tensor | None = None, jpeg_quality: int = 0, meta: dict[str, Any] | None = None,
                 video_qp: int | None = None) -> DegradationRecord:
        """Kernel, noise, 8 bit, JPEG, H.264 (:func:`~.stages.standard_chain`)."""
        return cls(int(scale), standard_chain(scale, kernel, noise_sigma, noise_patches, jpeg_quality, video_qp),
                   dict(meta or {}))

    def _stage(self, kind: type[Stage]) -> Any:
        return next((s for s in self.stages if isinstance(s, kind)), None)

    @property
    def kernel(self) -> Tensor:
        return self._stage(Downscale).kernel

    @property
    def noise_sigma(self) -> tuple[float, float, float]:
        stage = self._stage(Noise)
        return (0.0, 0.0, 0.0) if stage is None else stage.sigma

    @property
    def noise_patches(self) -> Tensor | None:
        stage = self._stage(Noise)
        return None if stage is None else stage.patches

    @property
    def jpeg_quality(self) -> int:
        stage = self._stage(Jpeg)
        return 0 if stage is None else stage.quality

    @property
    def video_qp(self) -> int | None:
        stage = self._stage(H264)
        return None if stage is None else stage.qp

    def with_kernel(self, kernel: Tensor) -> DegradationRecord:
        """The same chain with another kernel (a trained target dual's, a peer's estimate)."""
        stages = [Downscale(kernel, self.scale) if isinstance(s, Downscale) else s for s in self.stages]
        return DegradationRecord(self.scale, stages, dict(self.meta))  # a correction fitted for the old kernel is dropped

    # --- synthesis ------------------------------------------------------------------
    def downscale(self, hr: Tensor) -> Tensor:
        """The linear part (differentiable): (B, 3, H, W) -> (B, 3, H/s, W/s)."""
        return apply_kernel(hr, self.kernel, self.scale)

    def noise(self, shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
        """A noise field (B, 3, h, w) in [0,1] units of the noise stage (zeros without one)."""
        stage = self._stage(Noise)
        return torch.zeros(tuple(shape)) if stage is None else stage.field(shape, generator)

    def apply(self, hr: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """HR (B, 3, H, W) in [0,1], H and W multiples of the scale -> LR (B, 3, H/s, W/s), every stage in order."""
        x = hr
        for stage in self.stages:
            x = stage.apply(x, generator)
        return x

    # --- description ----------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        m = kernel_moments(self.kernel, self.scale)
        return {"scale": self.scale, "kernel_size": int(self.kernel.shape[-1]),
                **{k: round(v, 3) for k, v in m.items()},
                "noise_sigma": [round(float(v), 3) for v in self.noise_sigma],
                "noise_patches": 0 if self.noise_patches is None else len(self.noise_patches),
                "jpeg_quality": self.jpeg_quality, "video_qp": self.video_qp, "method": self.meta.get("method", "?")}

    def describe(self) -> str:
        """One line: the stages in order (8-bit rounding left out)."""
        return ", ".join(st.describe() for st in self.stages if st.name != "quantize")

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
        obj = {"format": FORMAT, "scale": int(self.scale), "meta": dict(self.meta),
               "stages": [{"stage": st.name, **st.state()} for st in self.stages],
               "correction": None if self.correction is None else self.correction.float().contiguous()}
        atomic_torch_save(obj, path)
        return Path(path)

    def check(self, where: str, expect_scale: int | None = None) -> None:
        """Raises :class:`ConfigError` naming ``where`` if the record cannot be a degradation at this scale."""
        s = self.scale
        if expect_scale is not None and s != expect_scale:
            raise ConfigError(f"{where} is a x{s} degradation but this run is x{expect_scale}: estimate one at x{expect_scale} "
                              "(delete it to re-estimate) or set scale to match")
        if not self.stages or not isinstance(self.stages[0], Downscale):
            raise ConfigError(f"{where}: a degradation starts with its kernel stage, got "
                              f"{[st.name for st in self.stages]}")
        for stage in self.stages:
            stage.check(where, s)
        c = self.correction
        if c is not None and (c.dim() != 2 or c.shape[0] != c.shape[1] or c.shape[0] % 2 == 0
                              or not torch.isfinite(c).all()):
            raise ConfigError(f"{where}: its input correction of shape {tuple(c.shape)} is not an odd square filter "
                              "of finite values: delete the file to re-estimate it")


def _stages_v1(obj: dict[str, Any]) -> list[Stage]:
    """The stages of a version-1 file (fixed fields, the canonical order)."""
    return standard_chain(int(obj["scale"]), obj["kernel"].float(), tuple(float(v) for v in obj["noise_sigma"]),
                          None if obj.get("noise_patches") is None else obj["noise_patches"].float(),
                          int(obj.get("jpeg_quality", 0)), None if obj.get("video_qp") is None else int(obj["video_qp"]))


def _stages_v2(obj: dict[str, Any], where: str) -> list[Stage]:
    stages = []
    for state in obj["stages"]:
        kind = STAGES.get(str(state.get("stage")))
        if kind is None:
            raise DataError(f"{where}: unknown degradation stage {state.get('stage')!r} (this version knows "
                            f"{', '.join(STAGES)}); re-estimate it or update sr_adapt")
        stages.append(kind.from_state(state))
    return stages


def load_degradation(path: str | os.PathLike, key: str = "degradation_file", scale: int | None = None) -> DegradationRecord:
    """Reads and checks a ``degradation.pt`` (this version's, or the fixed-field files of version 1);
    every error names the file and ``key``."""
    path = Path(path).expanduser()
    where = f"{key}={show_path(path)}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist: give a degradation.pt written by an estimate, or {key}=null to estimate one")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise DataError(f"{where} is not a readable degradation file ({type(e).__name__}); re-estimate it") from None
    version = obj.get("format") if isinstance(obj, dict) else None
    if not isinstance(version, str) or not version.startswith("sr_adapt.degradation/"):
        raise DataError(f"{where} is not a degradation file (format {FORMAT!r} expected); re-estimate it")
    if version not in (FORMAT, FORMAT_V1):
        raise DataError(f"{where} is a degradation file of format {version!r}, which this version of sr_adapt does not "
                        f"read ({FORMAT!r} and {FORMAT_V1!r}): re-estimate it or update sr_adapt")
    try:
        stages = _stages_v1(obj) if version == FORMAT_V1 else _stages_v2(obj, where)
        correction = obj.get("correction")
        rec = DegradationRecord(int(obj["scale"]), stages, dict(obj.get("meta") or {}),
                                None if correction is None else correction.float())
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{where} is incomplete ({e}); re-estimate it") from None
    rec.check(where, scale)
    return rec
