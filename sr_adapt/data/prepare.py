"""Make DIV2K-style ``LR_bicubic/X{f}/{stem}x{f}.png`` folders from HR images."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from sr_adapt.io.images import list_images, load_image, save_image
from sr_adapt.data.transforms import mod_crop
from sr_adapt.ops.color import quantize
from sr_adapt.ops.resize import imresize

log = logging.getLogger("sr_adapt.data")


def make_lr_folders(hr_dir: str | Path, out_dir: str | Path, factors: Iterable[int] = (2, 4), overwrite: bool = False) -> int:
    """Writes ``out_dir/X{f}/{stem}x{f}.png`` = 8-bit MATLAB bicubic downscale of each HR image.

    The HR image is mod-cropped to ``f`` first, so the LR file is exactly ``H/f x W/f``
    (the training datasets mod-crop the HR file the same way). Existing files are kept
    unless ``overwrite``. Returns the number of files written.
    """
    factors = sorted({int(f) for f in factors})
    written = 0
    for path in list_images(hr_dir, config_key="hr_dir"):
        hr = None
        for f in factors:
            target = Path(out_dir) / f"X{f}" / f"{path.stem}x{f}.png"
            if target.exists() and not overwrite:
                continue
            hr = load_image(path) if hr is None else hr
            save_image(quantize(imresize(mod_crop(hr, f), scale=1.0 / f)), target)
            written += 1
    log.info("wrote %d LR files under %s", written, out_dir)
    return written
