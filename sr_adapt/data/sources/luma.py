"""Training patches for luma-only, same-size networks (DRRN, VDSR-style).

Each sample pairs the Y channel of the MATLAB-bicubic-upsampled LR image with the Y channel
of the HR image, both ``patch_size`` x ``patch_size`` (paper: 31), at a scale drawn per sample
from ``scales`` (paper: x2, x3 and x4 mixed in one model)::

    {"lr_up_y": (1, P, P), "hr_y": (1, P, P), "scale": tensor(s), "paired": tensor(True), "name": str}

float32 in [0, 1]. Conventions of the MATLAB data preparation: the HR image is mod-cropped to
the scale, the LR image is ``imresize(HR, 1/s)`` saved as 8 bit, its upsample
``imresize(LR, s)`` is 8 bit, and Y is MATLAB ``rgb2ycbcr`` on 8-bit RGB (rounded). Only a
region around the patch is resized, with a margin of 4*s HR pixels (2s for the downscale
kernel, 2 LR pixels for the upscale kernel), so a patch equals the same crop of the
whole-image pipeline.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import torch

from sr_adapt.data.samples import Sample
from sr_adapt.data.sources.base import FolderSource
from sr_adapt.data.transforms import random_flip_transpose
from sr_adapt.errors import DataError
from sr_adapt.io.images import array_to_tensor, list_images
from sr_adapt.ops.color import quantize, rgb_to_y
from sr_adapt.ops.resize import imresize

__all__ = ["UpsampledLumaDataset"]


class UpsampledLumaDataset(FolderSource):
    """Random (bicubic-upsampled Y, HR Y) patches from a folder of HR images.

    Args:
        hr_dir: folder of HR images (T91, BSD200, ...).
        scale: the datamodule's scale; used when ``scales`` is None.
        patch_size: side of the square input/target patch (paper: 31).
        scales: scales drawn uniformly per sample (paper: [2, 3, 4]).
        augment: random flips and transposes.
        cache: decode every image once at construction (small sets).
        Others: as :class:`~sr_adapt.data.sources.paired.HRFolderDataset`.
    """

    def __init__(
        self,
        hr_dir: str | os.PathLike,
        scale: int,
        patch_size: int,
        scales: list[int] | tuple[int, ...] | None = None,
        augment: bool = True,
        repeat: int = 1,
        config_key: str | None = None,
        skip_bad: bool = False,
        seed: int | None = None,
        cache: bool = False,
        patch_size_key: str = "data.patch_size",
    ) -> None:
        super().__init__(config_key, skip_bad, seed, repeat, patch_size_key)
        self.scales = [int(s) for s in (scales if scales is not None else [scale])]
        if not self.scales or any(s < 2 for s in self.scales):
            raise DataError(f"{self.key('scales')}: give integer scales >= 2, e.g. [2, 3, 4]; got {scales!r}.")
        if not isinstance(patch_size, int) or patch_size < 8:
            raise DataError(f"{patch_size_key}: the patch size must be an integer >= 8 (paper: 31), got {patch_size!r}.")
        self.patch_size = patch_size
        self.augment = augment
        self.hr_dir = Path(hr_dir).expanduser()
        hr_files = list_images(self.hr_dir, self.key("hr_dir"))
        need = patch_size + max(self.scales)  # room for the patch after mod-cropping to any scale

        def too_small(h: int, w: int) -> str | None:
            return f"smaller than {need}x{need}" if h < need or w < need else None

        self.prepare_files(hr_files, self.hr_dir, too_small, cache, patch=need)

    def make_sample(self, item: int, rng: random.Random) -> Sample:
        arr = self.array(item)
        s, p = rng.choice(self.scales), self.patch_size
        h, w = arr.shape[0] - arr.shape[0] % s, arr.shape[1] - arr.shape[1] % s  # mod-crop
        y, x = rng.randrange(h - p + 1), rng.randrange(w - p + 1)
        m = 4 * s
        # region aligned to the LR grid (multiples of s), clipped to the image
        y0, x0 = max(0, (y - m) // s * s), max(0, (x - m) // s * s)
        y1, x1 = min(h, -(-(y + p + m) // s) * s), min(w, -(-(x + p + m) // s) * s)
        region = array_to_tensor(arr[y0:y1, x0:x1])
        lr = quantize(imresize(region, scale=1.0 / s))
        up = quantize(imresize(lr, size=tuple(region.shape[-2:])))
        oy, ox = y - y0, x - x0
        lr_up_y = quantize(rgb_to_y(up[:, oy : oy + p, ox : ox + p]))
        hr_y = quantize(rgb_to_y(region[:, oy : oy + p, ox : ox + p]))
        if self.augment:
            lr_up_y, hr_y = random_flip_transpose([lr_up_y, hr_y], rng)
        return {
            "lr_up_y": lr_up_y.contiguous(),
            "hr_y": hr_y.contiguous(),
            "scale": torch.tensor(s),
            "paired": torch.tensor(True),
            "name": self.files[item].stem,
        }
