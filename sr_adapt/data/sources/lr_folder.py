"""LR-only training source: random patches from a folder of real low-resolution images (no HR)."""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from sr_adapt.data.samples import Sample, unpaired_sample
from sr_adapt.data.sources.base import FolderSource, wh
from sr_adapt.data.transforms import random_flip_transpose
from sr_adapt.errors import DataError
from sr_adapt.io.images import array_to_tensor, list_images

__all__ = ["LRFolderDataset"]


class LRFolderDataset(FolderSource):
    """Random LR patches (``patch_size // scale``) from a folder of LR-only images.

    Same sample format as the video source (``name`` is the file stem) and the same file
    handling, randomness and ``skip_bad`` behaviour as the paired folder sources: images smaller
    than the LR patch or with unreadable headers are reported at construction; ``len`` is the
    number of images times ``repeat``. ``cache=True`` decodes all images at construction.
    """

    paired = False

    def __init__(
        self,
        lr_dir: str | os.PathLike,
        scale: int,
        patch_size: int,
        augment: bool = True,
        repeat: int = 1,
        skip_bad: bool = False,
        config_key: str | None = None,
        seed: int | None = None,
        cache: bool = False,
        patch_size_key: str = "data.patch_size",
        lr_factors: Sequence[int] | None = None,
    ) -> None:
        super().__init__(config_key, skip_bad, seed, repeat, patch_size_key)
        self.check_scale_patch(scale, patch_size, lr_factors)
        self.scale = scale
        self.patch_size = patch_size
        self.lr_patch = patch_size // scale
        self.augment = augment
        self.lr_dir = Path(lr_dir).expanduser()
        p = self.lr_patch

        def too_small(h: int, w: int) -> str | None:
            return f"smaller than the LR patch {p}x{p}" if h < p or w < p else None

        self.prepare_files(list_images(self.lr_dir, self.key("lr_dir")), self.lr_dir, too_small, cache,
                           patch=f"{patch_size} (LR patch {p})")

    def estimation_images(self, n: int = 16) -> list[tuple[str, torch.Tensor]]:
        """Up to ``n`` whole images (3, H, W) in [0,1], spread over the folder, for estimating their degradation."""
        picks = sorted({int(i) for i in np.linspace(0, len(self.files) - 1, min(n, len(self.files))).round()})
        return [(self.files[i].name, array_to_tensor(self.array(i))) for i in picks]

    def make_sample(self, item: int, rng: random.Random) -> Sample:
        arr = self.array(item)
        p = self.lr_patch
        h, w = arr.shape[:2]
        if h < p or w < p:  # header and pixels disagree (rare); treated like an unreadable file
            raise DataError(f"image {self.files[item]} decodes to {wh((h, w))} (WxH), smaller than {p}x{p}.")
        y, x = rng.randrange(h - p + 1), rng.randrange(w - p + 1)
        lr = array_to_tensor(arr[y : y + p, x : x + p])
        if self.augment:
            (lr,) = random_flip_transpose([lr], rng)
        return unpaired_sample(lr, self.factors, self.files[item].stem)
