"""Internal pairs: target-domain training pairs made from the LR-only footage itself (ZSSR's principle).

A patch of an LR frame is taken as HR and degraded by the target degradation (the estimate's chain:
kernel, noise, JPEG, codec) into an LR patch one scale down: a pair from the target domain with no
external image. The patch is cut with a margin that covers the kernel's support, degraded whole, and
the centre kept, so the LR patch has no border effect. The HR patch's LR levels (DRN's targets below
HR) are its clean bicubic levels, as for the external target pairs
(:class:`~sr_adapt.data.sources.paired.DegradedHRDataset`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch

from sr_adapt.data.samples import Sample, paired_sample
from sr_adapt.data.sources.base import Source, target_degradation
from sr_adapt.data.transforms import lr_levels
from sr_adapt.degradation import DegradationRecord
from sr_adapt.errors import DataError

__all__ = ["InternalPairsDataset", "kernel_margin"]


def kernel_margin(record: DegradationRecord) -> int:
    """HR px around a patch that the kernel reaches (its pad), rounded up to a multiple of the scale."""
    s = record.scale
    pad = (record.kernel.shape[-1] - s) // 2
    return -(-pad // s) * s


class InternalPairsDataset(Source):
    """Pairs (degraded frame patch -> frame patch) from an LR-only source (video frames, an LR folder).

    Args:
        source: the LR-only source to draw frames from, a partial constructor (the same config as
            ``data.train_sources.video`` / ``.target``); it is built here with a patch of
            ``patch_size + 2 * margin`` LR px, so its own checks (paths, flat or duplicate patches)
            apply to the patches taken as HR.
        scale, patch_size: as every source: the HR patch is ``patch_size`` px (of the LR frames).
        degradation: the target degradation (a ``degradation.pt`` path or a record).
        config_key: this source's key (messages).

    Samples are marked ``target`` (they go through the target dual like the other target samples).
    """

    target = True

    def __init__(self, source: Callable[..., Source], scale: int, patch_size: int, degradation: Any,
                 config_key: str | None = None, seed: int | None = None,
                 patch_size_key: str = "data.patch_size", lr_factors: Sequence[int] | None = None) -> None:
        super().__init__(config_key, False, seed, patch_size_key)
        self.check_scale_patch(scale, patch_size, lr_factors)
        self.degradation = target_degradation(degradation, self.key("degradation"), scale, "internal pairs")
        self.scale, self.patch_size = scale, patch_size
        self.margin = kernel_margin(self.degradation)
        region = patch_size + 2 * self.margin
        try:
            self.frames = source(scale=scale, patch_size=region * scale, config_key=self.key("source"),
                                 patch_size_key=patch_size_key)
        except DataError as e:
            if "smaller than" not in str(e):
                raise
            raise DataError(f"{self.config_key}: the LR-only frames must be at least {region}x{region} px to give internal "
                            f"pairs: each {patch_size} px patch ({patch_size_key}) is taken as HR, with a {self.margin} px "
                            f"margin for the kernel, and downscaled x{scale} once more. Give larger frames, lower "
                            f"{patch_size_key}, or drop the source ({self.config_key}=null)") from None
        if getattr(self.frames, "paired", True):
            raise DataError(f"{self.key('source')}: internal pairs are made from an LR-only source (video frames, an LR "
                            f"folder), got {type(self.frames).__name__}")

    def __len__(self) -> int:
        return len(self.frames)

    def new_batch(self) -> None:
        if hasattr(self.frames, "new_batch"):
            self.frames.new_batch()

    def draw(self, index: int, rng: random.Random) -> Sample:
        region = self.frames.draw(index % len(self.frames), rng)["lr"]  # (3, R, R), augmented by the source
        s, p, m = self.scale, self.patch_size, self.margin
        generator = torch.Generator().manual_seed(rng.getrandbits(62))
        lr = self.degradation.apply(region[None], generator)[0][:, m // s : (m + p) // s, m // s : (m + p) // s]
        levels = [lvl[:, m // f : (m + p) // f, m // f : (m + p) // f].contiguous()
                  for f, lvl in zip(self.factors, lr_levels(region, self.factors, quantize_levels=True))]
        hr = region[:, m : m + p, m : m + p].contiguous()
        return paired_sample(levels, hr, f"internal:{index}", target=True, lr=lr.contiguous())
