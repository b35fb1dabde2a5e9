"""Folder datasets of HR images (and pre-made LR files) for DRN training and evaluation.

Training samples (``PairedFolderDataset``, ``HRFolderDataset``) are dicts::

    {"lr": (3, P/s, P/s), "lr_levels": [HR/s, HR/(s/2), ..., HR/2], "hr": (3, P, P),
     "paired": tensor(True), "name": str}

all float32 in [0, 1], ``lr is lr_levels[0]``, P the HR patch size, s the scale. The
default collate turns ``lr_levels`` into a list of ``(B, 3, P/f, P/f)`` batches.

Config keys in messages: ``config_key`` is the prefix of the dataset's settings, so the
messages name ``{config_key}.hr_dir``, ``{config_key}.lr_dir``, ``{config_key}.skip_bad`` ...;
the patch size, shared by all training sources, is ``patch_size_key`` (``data.patch_size``).

Randomness: with ``seed=None`` (training) crops and flips come from torch's global RNG,
which DataLoader seeds differently per worker and per epoch (reproducible with
Lightning's ``seed_everything(..., workers=True)``). With an integer ``seed`` sample ``i``
is a fixed function of ``(seed, i)``: the same crop every time (tests, fixed val patches).

Unreadable files: with ``skip_bad=False`` a file that fails to decode raises
:class:`DataError` naming it (also from DataLoader workers, which re-raise it in the main
process). With ``skip_bad=True`` it is logged once and never decoded again, and every
sample that would have used it is replaced by another random image and counted in
``self.skipped``. Both are per process (each DataLoader worker has its own dataset
copy), so ``skipped`` is a diagnostic, not a global total. Files found invalid at
construction (header reads only: missing LR files, size mismatches, too small) are
dropped with one warning.

Datasets hold only paths and small metadata (plus, with ``cache=True``, decoded uint8
arrays), so they pickle for ``spawn``/``forkserver`` workers. The cache is filled
eagerly at construction (in the main process, so ``fork`` workers share it): meant for
small sets such as T91 or Set5, not DIV2K.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sr_adapt.data.errors import DataError
from sr_adapt.data.image_io import array_to_tensor, image_size, list_images, load_image_array, show_path
from sr_adapt.data.transforms import lr_pyramid, pyramid_factors, random_flip_transpose
from sr_adapt.ops.color import quantize
from sr_adapt.ops.resize import imresize

__all__ = ["PairedFolderDataset", "HRFolderDataset", "BenchmarkFolderDataset", "find_level_dir"]

logger = logging.getLogger(__name__)

_MAX_LISTED = 5  # file names quoted per problem kind in messages
_MAX_RETRIES = 20  # replacement draws per sample with skip_bad before giving up

Sample = dict[str, Any]


class _Problem(NamedTuple):
    hr: Path  # the HR image that becomes unusable
    kind: str  # key of _FIXES
    text: str  # one line naming the file(s)


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


def _listing(items: list[str]) -> str:
    lines = [f"  - {s}" for s in items[:_MAX_LISTED]]
    if len(items) > _MAX_LISTED:
        lines.append(f"  ... and {len(items) - _MAX_LISTED} more")
    return "\n".join(lines)


def _wh(size: tuple[int, int]) -> str:
    """``(H, W)`` as ``WxH`` text, the way image viewers show sizes."""
    return f"{size[1]}x{size[0]}"


def find_level_dir(lr_dir: Path, factor: int, config_key: str, scale: int) -> Path:
    """The ``X{factor}`` (or ``x{factor}``) subfolder of a DIV2K-style ``LR_bicubic`` folder.

    Raises:
        DataError: no such subfolder (names ``lr_dir`` and ``config_key``).
    """
    for name in (f"X{factor}", f"x{factor}"):
        if (lr_dir / name).is_dir():
            return lr_dir / name
    needed = ", ".join(f"X{f}" for f in pyramid_factors(scale))
    raise DataError(
        f"{config_key}: LR folder {show_path(lr_dir)} has no subfolder X{factor} (or x{factor}). "
        f"At scale {scale} it needs {needed}, DIV2K layout: <lr_dir>/X{factor}/0001x{factor}.png. "
        f"Point {config_key} at the LR_bicubic folder that holds them, or create the missing folder."
    )


class _FolderDataset(Dataset):
    """Shared plumbing: config keys, problem reports, per-sample RNG, skip_bad retries."""

    paired = True  # HR targets present (the datamodule separates LR-only sources by this)

    def __init__(
        self, config_key: str, skip_bad: bool, seed: int | None, repeat: int, patch_size_key: str = "data.patch_size"
    ) -> None:
        self.config_key = config_key
        self.patch_size_key = patch_size_key
        self.skip_bad = skip_bad
        self.seed = seed
        if not isinstance(repeat, int) or repeat < 1:
            raise DataError(f"{self._key('repeat')}: must be an integer >= 1, got {repeat!r}.")
        self.repeat = repeat
        self.skipped = 0  # per process: each DataLoader worker counts its own
        self._bad: set[int] = set()
        self._n_items = 0

    def _key(self, name: str) -> str:
        return f"{self.config_key}.{name}" if self.config_key else name

    def _check_scale_patch(self, scale: int, patch_size: int) -> None:
        if not isinstance(scale, int) or scale < 2 or scale & (scale - 1):
            raise DataError(f"{self.config_key}: DRN scales are powers of two >= 2 (4 or 8), got scale={scale!r}.")
        if not isinstance(patch_size, int) or patch_size < scale or patch_size % scale:
            hint = max(scale, patch_size // scale * scale) if isinstance(patch_size, int) else 48 * scale
            raise DataError(
                f"{self.patch_size_key}: the HR patch size {patch_size!r} must be a positive multiple "
                f"of the scale {scale} so every LR level gets a whole-pixel patch; "
                f"set {self.patch_size_key} to e.g. {hint} ({self.config_key})."
            )

    def _handle_problems(self, problems: list[_Problem], total: int, folder: Path, **fmt: Any) -> set[Path]:
        """Raise (or, with skip_bad, warn about) construction-time problems; returns the dropped HR paths."""
        if not problems:
            return set()
        dropped = {p.hr for p in problems}
        parts = [f"{self.config_key}: {len(dropped)} of {total} images in {show_path(folder)} cannot be used."]
        for kind, header in _FIXES.items():
            texts = [p.text for p in problems if p.kind == kind]
            if texts:
                header = header.format(k=self.config_key, patch_key=self.patch_size_key, **fmt)
                parts.append(f"{header}, {len(texts)} image(s):")
                parts.append(_listing(texts))
        if not self.skip_bad:
            parts.append(f"Or set {self._key('skip_bad')}=true to drop unusable images with a warning.")
            raise DataError("\n".join(parts))
        if len(dropped) == total:
            raise DataError("\n".join(parts + ["No usable image is left; fix the files above."]))
        logger.warning("%s\nDropped %d image(s) (%s=true).", "\n".join(parts), len(dropped), self._key("skip_bad"))
        return dropped

    def _usable_files(
        self, files: list[Path], folder: Path, too_small: Callable[[int, int], str | None], **fmt: Any
    ) -> list[Path]:
        """Header-reads ``files``; unreadable ones and those ``too_small(h, w)`` describes (text after
        "is WxH (WxH), ") are reported, or dropped with a warning under skip_bad."""
        problems: list[_Problem] = []
        for f in files:
            try:
                h, w = image_size(f)
            except DataError as e:
                problems.append(_Problem(f, "unreadable", str(e)))
                continue
            text = too_small(h, w)
            if text:
                problems.append(_Problem(f, "small", f"{f} is {_wh((h, w))} (WxH), {text}"))
        dropped = self._handle_problems(problems, len(files), folder, **fmt)
        return [f for f in files if f not in dropped]

    def _prepare_files(
        self, files: list[Path], folder: Path, too_small: Callable[[int, int], str | None], cache: bool, **fmt: Any
    ) -> tuple[list[Path], list[np.ndarray] | None]:
        """:meth:`_usable_files`, then with ``cache`` :meth:`_decode_all`; sets the item count.

        Returns the files kept and their decoded arrays (None without ``cache``).
        """
        kept = self._usable_files(files, folder, too_small, **fmt)
        arrays = None
        if cache:
            kept, arrays = self._decode_all(kept, folder)
        self._n_items = len(kept)
        return kept, arrays

    def _decode_all(self, files: list[Path], folder: Path) -> tuple[list[Path], list[np.ndarray]]:
        """Decodes every file (``cache=True``); returns the files kept and their uint8 arrays."""
        arrays: dict[Path, np.ndarray] = {}
        problems = []
        for f in files:
            try:
                arrays[f] = load_image_array(f)
            except DataError as e:
                problems.append(_Problem(f, "unreadable", str(e)))
        dropped = self._handle_problems(problems, len(files), folder)
        kept = [f for f in files if f not in dropped]
        return kept, [arrays[f] for f in kept]

    def _rng(self, index: int) -> random.Random:
        if self.seed is None:
            return random.Random(int(torch.randint(0, 2**62, (1,)).item()))
        return random.Random(f"{self.seed}:{index}")  # str seeds hash stably across processes

    def __len__(self) -> int:
        return self._n_items * self.repeat

    def _make_sample(self, item: int, rng: random.Random) -> Sample:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of length {len(self)}")
        rng = self._rng(index)
        item = index % self._n_items
        for _ in range(_MAX_RETRIES):
            if item not in self._bad:  # known-bad files (skip_bad) are not decoded again
                try:
                    return self._make_sample(item, rng)
                except DataError as e:
                    if not self.skip_bad:
                        raise DataError(
                            f"{self.config_key}: {e} Or set {self._key('skip_bad')}=true to skip unreadable "
                            "images with a warning."
                        ) from None
                    self._bad.add(item)
                    logger.warning("%s: skipping an unreadable image (this process): %s", self.config_key, e)
            self.skipped += 1
            good = [i for i in range(self._n_items) if i not in self._bad]
            if not good:
                raise DataError(f"{self.config_key}: every image failed to load; see the warnings above.")
            item = rng.choice(good)
        raise DataError(f"{self.config_key}: {_MAX_RETRIES} images in a row failed to load; check the data folder.")


class PairedFolderDataset(_FolderDataset):
    """Random aligned patches from HR images and pre-made DIV2K-style LR files.

    Layout: ``hr_dir/0001.png`` and ``lr_dir/X{f}/0001x{f}.png`` for f = s, s/2, ..., 2
    (``lr_dir`` is ``LR_bicubic``; ``x4`` folder names accepted). LR files must be
    ``floor(HR size / f)``. The HR patch's top-left corner is a multiple of ``scale``, so
    the same region is cut exactly from every level; flips/transposes hit all alike.

    Samples: see the module docstring; ``hr`` is ``(3, P, P)``, ``lr_levels[k]`` is
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
        config_key: str = "data.train",
        skip_bad: bool = False,
        seed: int | None = None,
        cache: bool = False,
        patch_size_key: str = "data.patch_size",
    ) -> None:
        super().__init__(config_key, skip_bad, seed, repeat, patch_size_key)
        self._check_scale_patch(scale, patch_size)
        self.scale = scale
        self.patch_size = patch_size
        self.augment = augment
        self.factors = pyramid_factors(scale)  # lowest resolution first
        self.hr_dir = Path(hr_dir).expanduser()
        self.lr_dir = Path(lr_dir).expanduser()
        self.filename_template = filename_template

        hr_files = list_images(self.hr_dir, self._key("hr_dir"))
        lr_key = self._key("lr_dir")
        if not self.lr_dir.is_dir():
            raise DataError(
                f"{lr_key}: LR folder {show_path(self.lr_dir)} does not exist or is not a folder. "
                f"Set {lr_key} to the DIV2K-style LR_bicubic folder (with X2/X4/... subfolders)."
            )
        level_dirs = [find_level_dir(self.lr_dir, f, lr_key, scale) for f in self.factors]
        present = [{p.name for p in d.iterdir()} for d in level_dirs]

        problems: list[_Problem] = []
        items: list[tuple[Path, list[Path]]] = []
        for hr in hr_files:
            try:
                names = [filename_template.format(stem=hr.stem, factor=f, ext=hr.suffix) for f in self.factors]
            except (KeyError, IndexError, ValueError) as e:
                raise DataError(
                    f"{self._key('filename_template')}: bad LR file name template {filename_template!r} ({e}); "
                    "use the fields {stem}, {factor} and {ext}, e.g. '{stem}x{factor}{ext}'."
                ) from None
            lr_paths = [d / n for d, n in zip(level_dirs, names)]
            missing = [str(p) for p, names_in_dir in zip(lr_paths, present) if p.name not in names_in_dir]
            if missing:
                problems.append(_Problem(hr, "missing_lr", f"{hr.name}: missing {', '.join(missing)}"))
                continue
            problem = self._check_sizes(hr, lr_paths)
            if problem is not None:
                problems.append(problem)
                continue
            items.append((hr, lr_paths))

        dropped = self._handle_problems(
            problems, len(hr_files), self.hr_dir, template=filename_template, patch=patch_size
        )
        items = [it for it in items if it[0] not in dropped]
        self.hr_files = [it[0] for it in items]
        self.lr_files = [it[1] for it in items]  # per image: one path per level, lowest first
        self._n_items = len(items)

        self._cache: list[tuple[np.ndarray, list[np.ndarray]]] | None = None
        if cache:
            self._fill_cache()

    def _check_sizes(self, hr: Path, lr_paths: list[Path]) -> _Problem | None:
        try:
            hr_size = image_size(hr)
        except DataError as e:
            return _Problem(hr, "unreadable", str(e))
        p = self.patch_size
        if hr_size[0] < p or hr_size[1] < p:
            return _Problem(hr, "small", f"{hr} is {_wh(hr_size)} (WxH), smaller than {p}x{p}")
        for f, lr in zip(self.factors, lr_paths):
            try:
                lr_size = image_size(lr)
            except DataError as e:
                return _Problem(hr, "unreadable", str(e))
            want = (hr_size[0] // f, hr_size[1] // f)
            if lr_size != want:
                return _Problem(
                    hr,
                    "size",
                    f"HR {hr} is {_wh(hr_size)} (WxH) but its x{f} LR file {lr} is {_wh(lr_size)}, "
                    f"expected {_wh(want)}",
                )
        return None

    def _fill_cache(self) -> None:
        decoded: dict[Path, tuple[np.ndarray, list[np.ndarray]]] = {}
        problems = []
        for hr, lrs in zip(self.hr_files, self.lr_files):
            try:
                decoded[hr] = (load_image_array(hr), [load_image_array(p) for p in lrs])
            except DataError as e:
                problems.append(_Problem(hr, "unreadable", str(e)))
        dropped = self._handle_problems(problems, len(self.hr_files), self.hr_dir)
        keep = [i for i, hr in enumerate(self.hr_files) if hr not in dropped]
        self.hr_files = [self.hr_files[i] for i in keep]
        self.lr_files = [self.lr_files[i] for i in keep]
        self._n_items = len(keep)
        self._cache = [decoded[hr] for hr in self.hr_files]

    def _arrays(self, item: int) -> tuple[np.ndarray, list[np.ndarray]]:
        if self._cache is not None:
            return self._cache[item]
        return load_image_array(self.hr_files[item]), [load_image_array(p) for p in self.lr_files[item]]

    def _make_sample(self, item: int, rng: random.Random) -> Sample:
        hr_arr, lr_arrs = self._arrays(item)
        s, p = self.scale, self.patch_size
        h, w = hr_arr.shape[:2]
        y = rng.randrange((h - p) // s + 1) * s
        x = rng.randrange((w - p) // s + 1) * s
        hr = array_to_tensor(hr_arr[y : y + p, x : x + p])
        levels = [
            array_to_tensor(lr[y // f : (y + p) // f, x // f : (x + p) // f]) for f, lr in zip(self.factors, lr_arrs)
        ]
        if self.augment:
            hr, *levels = random_flip_transpose([hr, *levels], rng)
        return {
            "lr": levels[0],
            "lr_levels": levels,
            "hr": hr,
            "paired": torch.tensor(True),
            "name": self.hr_files[item].stem,
        }


class HRFolderDataset(_FolderDataset):
    """Random HR patches with the DRN LR pyramid made on the fly (:func:`lr_pyramid`).

    Images are mod-cropped to ``scale`` first. Border handling: the bicubic kernel of a
    x f downscale reaches 2f HR pixels around each LR pixel, so resizing just the patch
    would make its edge pixels differ from a downscale of the whole image. Instead an HR
    region with a margin of m = 2*s pixels on each side (clipped at the image border,
    where the image itself ends anyway) is resized, and the centre is cut from every
    level (m/f is a whole number at every level). The LR patch then equals the same crop
    of ``lr_pyramid(whole image)``, i.e. what pre-made LR files would give.

    ``quantize_lr`` snaps the levels to 8 bits like saved PNGs (default, as DIV2K files).
    """

    def __init__(
        self,
        hr_dir: str | os.PathLike,
        scale: int,
        patch_size: int,
        augment: bool = True,
        repeat: int = 1,
        config_key: str = "data.train",
        skip_bad: bool = False,
        seed: int | None = None,
        cache: bool = False,
        quantize_lr: bool = True,
        patch_size_key: str = "data.patch_size",
    ) -> None:
        super().__init__(config_key, skip_bad, seed, repeat, patch_size_key)
        self._check_scale_patch(scale, patch_size)
        self.scale = scale
        self.patch_size = patch_size
        self.augment = augment
        self.quantize_lr = quantize_lr
        self.factors = pyramid_factors(scale)
        self.hr_dir = Path(hr_dir).expanduser()

        hr_files = list_images(self.hr_dir, self._key("hr_dir"))

        def too_small(h: int, w: int) -> str | None:
            if h - h % scale < patch_size or w - w % scale < patch_size:
                return f"smaller than {patch_size}x{patch_size}"
            return None

        self.hr_files, self._cache = self._prepare_files(hr_files, self.hr_dir, too_small, cache, patch=patch_size)

    def _make_sample(self, item: int, rng: random.Random) -> Sample:
        arr = self._cache[item] if self._cache is not None else load_image_array(self.hr_files[item])
        s, p = self.scale, self.patch_size
        h, w = arr.shape[0] - arr.shape[0] % s, arr.shape[1] - arr.shape[1] % s  # mod-crop
        y = rng.randrange((h - p) // s + 1) * s
        x = rng.randrange((w - p) // s + 1) * s
        m = 2 * s
        y0, y1 = max(0, y - m), min(h, y + p + m)
        x0, x1 = max(0, x - m), min(w, x + p + m)
        region = array_to_tensor(arr[y0:y1, x0:x1])
        oy, ox = y - y0, x - x0  # multiples of s
        hr = region[:, oy : oy + p, ox : ox + p].contiguous()
        levels = [
            lvl[:, oy // f : (oy + p) // f, ox // f : (ox + p) // f].contiguous()
            for f, lvl in zip(self.factors, lr_pyramid(region, s, self.quantize_lr))
        ]
        if self.augment:
            hr, *levels = random_flip_transpose([hr, *levels], rng)
        return {
            "lr": levels[0],
            "lr_levels": levels,
            "hr": hr,
            "paired": torch.tensor(True),
            "name": self.hr_files[item].stem,
        }


class BenchmarkFolderDataset(Dataset):
    """Whole images for validation/evaluation (Set5, Set14, DIV2K val, ...).

    HR is mod-cropped to ``scale``; LR is ``quantize(imresize(HR, 1/scale))`` or, with
    ``lr_dir``, read from ``lr_dir/X{s}/{stem}x{s}{ext}`` (or ``lr_dir/{stem}x{s}{ext}``
    when ``lr_dir`` has no ``X{s}`` subfolder) and size-checked at construction.
    Any scale >= 2 (x3 too). Items differ in size: use batch size 1. Bad files always
    raise (no skipping: metrics must cover the whole set).

    Returns ``{"lr": (3, H/s, W/s), "hr": (3, H, W), "name": str}``, float32 in [0, 1].
    """

    def __init__(
        self,
        hr_dir: str | os.PathLike,
        scale: int,
        lr_dir: str | os.PathLike | None = None,
        config_key: str = "data.val",
        filename_template: str = "{stem}x{factor}{ext}",
        cache: bool = False,
    ) -> None:
        self.config_key = config_key
        if not isinstance(scale, int) or scale < 2:
            raise DataError(f"{self.config_key}: the scale must be an integer >= 2, got {scale!r}.")
        self.scale = scale
        self.hr_dir = Path(hr_dir).expanduser()
        self.hr_files = list_images(self.hr_dir, self._key("hr_dir"))
        self.lr_dir = Path(lr_dir).expanduser() if lr_dir is not None else None
        self.lr_files: list[Path] | None = None

        try:
            sizes = [image_size(p) for p in self.hr_files]
        except DataError as e:
            raise DataError(f"{self._key('hr_dir')}: {e}") from None
        for hr, (h, w) in zip(self.hr_files, sizes):
            if h < scale or w < scale:
                raise DataError(
                    f"{self._key('hr_dir')}: image {hr} is {_wh((h, w))} (WxH), smaller than the scale {scale}; remove it."
                )
        if self.lr_dir is not None:
            self.lr_files = self._match_lr(filename_template, sizes)

        self._cache: list[tuple[np.ndarray, np.ndarray | None]] | None = None
        if cache:
            self._cache = [self._arrays(i) for i in range(len(self.hr_files))]

    def _key(self, name: str) -> str:
        return f"{self.config_key}.{name}" if self.config_key else name

    def _match_lr(self, template: str, sizes: list[tuple[int, int]]) -> list[Path]:
        key, s = self._key("lr_dir"), self.scale
        assert self.lr_dir is not None
        if not self.lr_dir.is_dir():
            raise DataError(f"{key}: LR folder {show_path(self.lr_dir)} does not exist; fix {key} or set it to null.")
        level_dir = next((self.lr_dir / n for n in (f"X{s}", f"x{s}") if (self.lr_dir / n).is_dir()), self.lr_dir)
        lr_files, missing, mismatched = [], [], []
        for hr, (h, w) in zip(self.hr_files, sizes):
            lr = level_dir / template.format(stem=hr.stem, factor=s, ext=hr.suffix)
            if not lr.is_file():
                missing.append(str(lr))
                continue
            try:
                lr_size, want = image_size(lr), (h // s, w // s)
            except DataError as e:
                raise DataError(f"{key}: {e}") from None
            if lr_size != want:
                mismatched.append(
                    f"HR {hr} is {_wh((h, w))} (WxH) but LR {lr} is {_wh(lr_size)}, expected {_wh(want)}"
                )
            lr_files.append(lr)
        if missing:
            raise DataError(
                f"{key}: {len(missing)} LR file(s) missing in {show_path(level_dir)}:\n{_listing(missing)}\n"
                f"Create them (MATLAB-bicubic x{s} downscales named like {template!r}), "
                f"or set {key} to null to downscale the HR images on the fly."
            )
        if mismatched:
            raise DataError(
                f"{key}: {len(mismatched)} HR/LR size mismatch(es):\n{_listing(mismatched)}\n"
                f"Each LR file must be floor(HR size / {s}); regenerate them or set {key} to null."
            )
        return lr_files

    def _arrays(self, i: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self._cache is not None:
            return self._cache[i]
        try:
            hr = load_image_array(self.hr_files[i])
            lr = load_image_array(self.lr_files[i]) if self.lr_files is not None else None
        except DataError as e:
            raise DataError(f"{self.config_key}: {e}") from None
        return hr, lr

    def __len__(self) -> int:
        return len(self.hr_files)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of length {len(self)}")
        hr_arr, lr_arr = self._arrays(index)
        s = self.scale
        h, w = hr_arr.shape[0] - hr_arr.shape[0] % s, hr_arr.shape[1] - hr_arr.shape[1] % s
        hr = array_to_tensor(hr_arr[:h, :w])
        if lr_arr is not None:
            lr = array_to_tensor(lr_arr[: h // s, : w // s])
        else:
            lr = quantize(imresize(hr, scale=1.0 / s))
        return {"lr": lr, "hr": hr, "name": self.hr_files[index].stem}
