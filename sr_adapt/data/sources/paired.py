"""Paired training sources for DRN: HR images with pre-made LR files, or HR images alone.

Training samples (``PairedFolderDataset``, ``HRFolderDataset``) are dicts::

    {"lr": (3, P/s, P/s), "lr_levels": [HR/s, HR/(s/2), ..., HR/2], "hr": (3, P, P),
     "paired": tensor(True), "name": str}

all float32 in [0, 1], ``lr is lr_levels[0]``, P the HR patch size, s the scale. The
default collate turns ``lr_levels`` into a list of ``(B, 3, P/f, P/f)`` batches.

Config keys, problem reports, ``skip_bad`` and randomness: :mod:`sr_adapt.data.sources.base`.
``cache=True`` decodes every image at construction (small sets such as T91, not DIV2K).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr_adapt.errors import DataError
from sr_adapt.io.atomic import show_path
from sr_adapt.io.images import array_to_tensor, image_size, list_images, load_image_array
from sr_adapt.data.samples import Sample, paired_sample
from sr_adapt.data.sources.base import FolderSource, Problem, target_degradation, wh
from sr_adapt.data.transforms import (apply_flip_transpose, draw_flip_transpose, lr_levels,
                                      random_flip_transpose)

__all__ = ["PairedFolderDataset", "HRFolderDataset", "DegradedHRDataset", "find_level_dir"]

# Headers and advice per problem kind; "{k}" is the config key prefix.
_FIXES = {
    "unreadable": "Unreadable images (replace or delete them)",
    "missing_lr": (
        "Missing LR files (create them by MATLAB-bicubic downscaling of the HR images, "
        "check {k}.lr_dir and the file name template {template!r}, or remove the HR images)"
    ),
    "size": (
        "HR/LR size mismatch (each LR file must be floor(HR size / factor); regenerate it "
        "from its HR image or point {k}.lr_dir at the matching LR folder)"
    ),
    "small": "Images smaller than the patch size {patch} (lower {patch_key} or remove them)",
}


def find_level_dir(lr_dir: Path, factor: int, config_key: str, factors: Sequence[int]) -> Path:
    """The ``X{factor}`` (or ``x{factor}``) subfolder of a DIV2K-style ``LR_bicubic`` folder.

    Raises:
        DataError: no such subfolder (names ``lr_dir`` and ``config_key``).
    """
    for name in (f"X{factor}", f"x{factor}"):
        if (lr_dir / name).is_dir():
            return lr_dir / name
    needed = ", ".join(f"X{f}" for f in factors)
    raise DataError(
        f"{config_key}: LR folder {show_path(lr_dir)} has no subfolder X{factor} (or x{factor}). "
        f"At scale {factors[0]} this network needs {needed}, DIV2K layout: <lr_dir>/X{factor}/0001x{factor}.png. "
        f"Point {config_key} at the LR_bicubic folder that holds them, or create the missing folder."
    )


def _aligned_corner(rng: random.Random, h: int, w: int, p: int, s: int) -> tuple[int, int]:
    """Top-left of a random p x p HR patch on the LR grid (multiples of s)."""
    return rng.randrange((h - p) // s + 1) * s, rng.randrange((w - p) // s + 1) * s


class PairedFolderDataset(FolderSource):
    """Random aligned patches from HR images and pre-made DIV2K-style LR files.

    Layout: ``hr_dir/0001.png`` and ``lr_dir/X{f}/0001x{f}.png`` for f = s, s/2, ..., 2
    (``lr_dir`` is ``LR_bicubic``; ``x4`` folder names accepted). LR files must be
    ``floor(HR size / f)``. The HR patch's top-left corner is a multiple of ``scale``, so
    the same region is cut exactly from every level; flips/transposes hit all alike.

    Samples: see :mod:`sr_adapt.data.samples`; ``hr`` is ``(3, P, P)``, ``lr_levels[k]`` is
    ``(3, P/f, P/f)``, float32 in [0, 1].
    """

    def __init__(
        self,
        hr_dir: str | os.PathLike,
        lr_dir: str | os.PathLike,
        scale: int,
        patch_size: int,
        augment: bool = True,
        repeat: int = 1,
        filename_template: str = "{stem}x{factor}{ext}",
        config_key: str | None = None,
        skip_bad: bool = False,
        seed: int | None = None,
        cache: bool = False,
        patch_size_key: str = "data.patch_size",
        lr_factors: Sequence[int] | None = None,
    ) -> None:
        super().__init__(config_key, skip_bad, seed, repeat, patch_size_key)
        self.check_scale_patch(scale, patch_size, lr_factors)
        self.scale = scale
        self.patch_size = patch_size
        self.augment = augment
        self.hr_dir = Path(hr_dir).expanduser()
        self.lr_dir = Path(lr_dir).expanduser()
        self.filename_template = filename_template

        hr_files = list_images(self.hr_dir, self.key("hr_dir"))
        lr_key = self.key("lr_dir")
        if not self.lr_dir.is_dir():
            raise DataError(
                f"{lr_key}: LR folder {show_path(self.lr_dir)} does not exist or is not a folder. "
                f"Set {lr_key} to the DIV2K-style LR_bicubic folder (with X2/X4/... subfolders)."
            )
        level_dirs = [find_level_dir(self.lr_dir, f, lr_key, self.factors) for f in self.factors]
        present = [{p.name for p in d.iterdir()} for d in level_dirs]

        problems: list[Problem] = []
        items: list[tuple[Path, list[Path]]] = []
        for hr in hr_files:
            try:
                names = [filename_template.format(stem=hr.stem, factor=f, ext=hr.suffix) for f in self.factors]
            except (KeyError, IndexError, ValueError) as e:
                raise DataError(
                    f"{self.key('filename_template')}: bad LR file name template {filename_template!r} ({e}); "
                    "use the fields {stem}, {factor} and {ext}, e.g. '{stem}x{factor}{ext}'."
                ) from None
            lr_paths = [d / n for d, n in zip(level_dirs, names)]
            missing = [str(p) for p, names_in_dir in zip(lr_paths, present) if p.name not in names_in_dir]
            if missing:
                problems.append(Problem(hr, "missing_lr", f"{hr.name}: missing {', '.join(missing)}"))
                continue
            problem = self._check_sizes(hr, lr_paths)
            if problem is not None:
                problems.append(problem)
                continue
            items.append((hr, lr_paths))

        dropped = self.report_problems(
            problems, len(hr_files), show_path(self.hr_dir), _FIXES, template=filename_template, patch=patch_size
        )
        items = [it for it in items if it[0] not in dropped]
        self.files = [it[0] for it in items]
        self.lr_files = [it[1] for it in items]  # per image: one path per level, lowest first
        if cache:
            self.fill_cache(lambda i: (load_image_array(self.files[i]), [load_image_array(q) for q in self.lr_files[i]]),
                            self.hr_dir)

    def keep(self, indices) -> None:
        indices = list(indices)
        super().keep(indices)
        self.lr_files = [self.lr_files[i] for i in indices]

    def _check_sizes(self, hr: Path, lr_paths: list[Path]) -> Problem | None:
        try:
            hr_size = image_size(hr)
        except DataError as e:
            return Problem(hr, "unreadable", str(e))
        p = self.patch_size
        if hr_size[0] < p or hr_size[1] < p:
            return Problem(hr, "small", f"{hr} is {wh(hr_size)} (WxH), smaller than {p}x{p}")
        for f, lr in zip(self.factors, lr_paths):
            try:
                lr_size = image_size(lr)
            except DataError as e:
                return Problem(hr, "unreadable", str(e))
            want = (hr_size[0] // f, hr_size[1] // f)
            if lr_size != want:
                return Problem(
                    hr, "size",
                    f"HR {hr} is {wh(hr_size)} (WxH) but its x{f} LR file {lr} is {wh(lr_size)}, expected {wh(want)}",
                )
        return None

    def _arrays(self, item: int) -> tuple[np.ndarray, list[np.ndarray]]:
        if self.cache is not None:
            return self.cache[item]
        return load_image_array(self.files[item]), [load_image_array(p) for p in self.lr_files[item]]

    def make_sample(self, item: int, rng: random.Random) -> Sample:
        hr_arr, lr_arrs = self._arrays(item)
        s, p = self.scale, self.patch_size
        y, x = _aligned_corner(rng, hr_arr.shape[0], hr_arr.shape[1], p, s)
        hr = array_to_tensor(hr_arr[y : y + p, x : x + p])
        levels = [
            array_to_tensor(lr[y // f : (y + p) // f, x // f : (x + p) // f]) for f, lr in zip(self.factors, lr_arrs)
        ]
        if self.augment:
            hr, *levels = random_flip_transpose([hr, *levels], rng)
        return paired_sample(levels, hr, self.files[item].stem)


class HRFolderDataset(FolderSource):
    """Random HR patches with their LR levels made on the fly (:func:`lr_levels`; DRN: its pyramid).

    Images are mod-cropped to ``scale`` first. Border handling: the bicubic kernel of a
    x f downscale reaches 2f HR pixels around each LR pixel, so resizing just the patch
    would make its edge pixels differ from a downscale of the whole image. Instead an HR
    region with a margin of m = 2*s pixels on each side (clipped at the image border,
    where the image itself ends anyway) is resized, and the centre is cut from every
    level (m/f is a whole number at every level). The LR patch then equals the same crop
    of ``lr_levels(whole image)``, i.e. what pre-made LR files would give.

    ``quantize_lr`` snaps the levels to 8 bits like saved PNGs (default, as DIV2K files).
    """

    def __init__(
        self,
        hr_dir: str | os.PathLike,
        scale: int,
        patch_size: int,
        augment: bool = True,
        repeat: int = 1,
        config_key: str | None = None,
        skip_bad: bool = False,
        seed: int | None = None,
        cache: bool = False,
        quantize_lr: bool = True,
        patch_size_key: str = "data.patch_size",
        lr_factors: Sequence[int] | None = None,
    ) -> None:
        super().__init__(config_key, skip_bad, seed, repeat, patch_size_key)
        self.check_scale_patch(scale, patch_size, lr_factors)
        self.scale = scale
        self.patch_size = patch_size
        self.augment = augment
        self.quantize_lr = quantize_lr
        self.hr_dir = Path(hr_dir).expanduser()

        def too_small(h: int, w: int) -> str | None:
            if h - h % scale < patch_size or w - w % scale < patch_size:
                return f"smaller than {patch_size}x{patch_size}"
            return None

        self.prepare_files(list_images(self.hr_dir, self.key("hr_dir")), self.hr_dir, too_small, cache, patch=patch_size)

    def hr_patch(self, item: int, rng: random.Random, margin: int | None = None) -> tuple[torch.Tensor, int, int, torch.Tensor]:
        """A random HR patch with context: ``(region, oy, ox, hr)`` where ``hr`` is the ``P x P``
        patch at ``(oy, ox)`` (multiples of the scale) of ``region``, which extends it by up to
        ``margin`` (default 2 * scale, a multiple of the scale) HR pixels on every side (clipped at
        the image border)."""
        arr = self.array(item)
        s, p = self.scale, self.patch_size
        h, w = arr.shape[0] - arr.shape[0] % s, arr.shape[1] - arr.shape[1] % s  # mod-crop
        y, x = _aligned_corner(rng, h, w, p, s)
        m = 2 * s if margin is None else margin
        y0, y1 = max(0, y - m), min(h, y + p + m)
        x0, x1 = max(0, x - m), min(w, x + p + m)
        region = array_to_tensor(arr[y0:y1, x0:x1])
        oy, ox = y - y0, x - x0
        return region, oy, ox, region[:, oy : oy + p, ox : ox + p].contiguous()

    def make_sample(self, item: int, rng: random.Random) -> Sample:
        region, oy, ox, hr = self.hr_patch(item, rng)
        p = self.patch_size
        levels = [
            lvl[:, oy // f : (oy + p) // f, ox // f : (ox + p) // f].contiguous()
            for f, lvl in zip(self.factors, lr_levels(region, self.factors, self.quantize_lr))
        ]
        if self.augment:
            hr, *levels = random_flip_transpose([hr, *levels], rng)
        return paired_sample(levels, hr, self.files[item].stem)


class DegradedHRDataset(HRFolderDataset):
    """Target-domain pairs: source HR patches whose LR input is made by the *target* degradation
    (an estimate from the target's LR-only images, :class:`~sr_adapt.degradation.DegradationRecord`:
    kernel, harvested noise, JPEG), as RealSR builds its training pairs.

    The network input ``lr`` is ``degradation.apply(HR region)``, cut from a region whose margin
    covers the kernel's support; ``lr_levels`` stay the clean bicubic pyramid (the primal net's
    targets below HR, level 0 included, and the paired duals' domain): an adapted network that
    corrects its input is asked for what the source model produces, not for the blur. Samples are
    marked ``target``.

    Args:
        degradation: a ``degradation.pt`` path or a record; checked against ``scale``.
        (the rest as :class:`HRFolderDataset`.)
    """

    target = True

    def __init__(self, hr_dir: str | os.PathLike, scale: int, patch_size: int, degradation: Any,
                 config_key: str | None = None, **kwargs: Any) -> None:
        super().__init__(hr_dir, scale, patch_size, config_key=config_key, **kwargs)
        self.degradation = target_degradation(degradation, self.key("degradation"), scale, "target pairs")
        pad = (self.degradation.kernel.shape[-1] - scale) // 2
        self.margin = max(2 * scale, -(-(pad + scale) // scale) * scale)

    def make_sample(self, item: int, rng: random.Random) -> Sample:
        region, oy, ox, _ = self.hr_patch(item, rng, self.margin)
        s, p = self.scale, self.patch_size
        if self.augment:  # flip the HR before degrading it: a flipped LR would be the flipped kernel's
            region, oy, ox = _flip_region(region, oy, ox, p, draw_flip_transpose(rng))
        hr = region[:, oy : oy + p, ox : ox + p].contiguous()
        generator = torch.Generator().manual_seed(rng.getrandbits(62))
        lr = self.degradation.apply(region[None], generator)[0][:, oy // s : (oy + p) // s, ox // s : (ox + p) // s]
        levels = [lvl[:, oy // f : (oy + p) // f, ox // f : (ox + p) // f].contiguous()
                  for f, lvl in zip(self.factors, lr_levels(region, self.factors, self.quantize_lr))]
        return paired_sample(levels, hr, self.files[item].stem, target=True, lr=lr.contiguous())


def _flip_region(region: torch.Tensor, oy: int, ox: int, p: int, flags: tuple[bool, bool, bool]) -> tuple[torch.Tensor, int, int]:
    """``region`` flipped / transposed by ``flags``, and where the ``p`` x ``p`` patch at ``(oy, ox)`` went."""
    hflip, vflip, transpose = flags
    h, w = region.shape[-2:]
    ox = w - ox - p if hflip else ox
    oy = h - oy - p if vflip else oy
    region = apply_flip_transpose(region, flags)
    return (region, ox, oy) if transpose else (region, oy, ox)
