"""Benchmark sets for evaluation and validation: whole HR images, LR by the paper protocol or from files."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor
from torch.utils.data import Dataset

from sr_adapt.data.sources.base import listing, wh
from sr_adapt.errors import ConfigError, DataError
from sr_adapt.io.atomic import show_path
from sr_adapt.io.images import array_to_tensor, image_size, list_images, load_image_array
from sr_adapt.ops.color import quantize
from sr_adapt.ops.resize import imresize

__all__ = ["BenchmarkFolderDataset", "resolve_benchmarks"]


def resolve_benchmarks(entries: Iterable[Any], named: Mapping[str, Any] | None = None, key: str = "benchmarks") -> list[Path]:
    """Benchmark folders: each entry is a name of ``named`` (set5, set14, ...; any case) or a folder path."""
    named = {str(k).lower(): v for k, v in (named or {}).items()}
    folders = [Path(str(named[str(e).lower()])) if str(e).lower() in named else Path(str(e)) for e in entries]
    if not folders:
        raise ConfigError(f"{key} is empty: give {key}=[set5] or {key}=[/path/to/HR_folder]")
    return folders


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
        config_key: str = "benchmarks",
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
                    f"{self._key('hr_dir')}: image {hr} is {wh((h, w))} (WxH), smaller than the scale {scale}; remove it."
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
                    f"HR {hr} is {wh((h, w))} (WxH) but LR {lr} is {wh(lr_size)}, expected {wh(want)}"
                )
            lr_files.append(lr)
        if missing:
            raise DataError(
                f"{key}: {len(missing)} LR file(s) missing in {show_path(level_dir)}:\n{listing(missing)}\n"
                f"Create them (MATLAB-bicubic x{s} downscales named like {template!r}), "
                f"or set {key} to null to downscale the HR images on the fly."
            )
        if mismatched:
            raise DataError(
                f"{key}: {len(mismatched)} HR/LR size mismatch(es):\n{listing(mismatched)}\n"
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
