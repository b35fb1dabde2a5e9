"""Measured tile margins: the context a *trained* net actually needs, instead of its bound.

``net.tile_margin()`` is the receptive field of the architecture (DRN-S x4: 100 LR pixels), which
makes exact tiles expensive (2.67x the pixels of the frame at tile 128). The effective receptive
field of trained weights is far smaller: beyond a few pixels the influence of the context falls
below 8-bit precision. :func:`measure_margin` finds, once per set of weights, the smallest margin
whose tiled output stays within ``bound`` of the untiled output on a probe image of real content
(the bundled sample photos, downscaled by the model's scale), with whole-image statistics exact.

The stated bound is on the float output in [0, 1] before 8-bit quantization: 0.5/255 (the default)
means an output pixel moves by at most one 8-bit level, and only where it sat near a rounding edge.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from sr_adapt.errors import ConfigError
from sr_adapt.inference.tiling import TiledUpscaler, axis_tiles
from sr_adapt.io.atomic import atomic_write_json
from sr_adapt.io.images import list_images, load_image
from sr_adapt.models.base import SRModel
from sr_adapt.ops.color import quantize
from sr_adapt.ops.resize import imresize

__all__ = ["DEFAULT_BOUND", "measure_margin", "probe_image", "cached_margin", "tile_margin_for"]

log = logging.getLogger("sr_adapt.inference")

DEFAULT_BOUND = 0.5 / 255
CANDIDATES = (2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40, 48, 64)
PROBE_SIDE = 160  # LR pixels
PROBE_TILE = 40


def probe_image(hr_images: Sequence[Tensor], scale: int, side: int = PROBE_SIDE) -> Tensor:
    """(1, 3, side, side) LR probe: a mosaic of square crops of the HR images (3, H, W) in [0, 1]
    (every other one mirrored), MATLAB-bicubic downscaled by ``scale`` and quantized to 8 bit."""
    need = side * scale
    c = min(min(im.shape[-2:]) for im in hr_images)
    squares = [im[:, :c, :c].float() for im in hr_images]
    n = math.ceil(need / c)
    rows = []
    for r in range(n):
        row = [squares[(r * n + q) % len(squares)] for q in range(n)]
        rows.append(torch.cat([im.flip(-1) if (r + q) % 2 else im for q, im in enumerate(row)], dim=-1))
    mosaic = torch.cat(rows, dim=-2)[:, :need, :need]
    return quantize(imresize(mosaic[None], scale=1 / scale))


@torch.no_grad()
def measure_margin(
    net: SRModel, probe: Tensor, bound: float = DEFAULT_BOUND, tile: int = PROBE_TILE, precision: str = "fp32",
    device: torch.device | str | None = None,
) -> dict:
    """The smallest margin (LR px) of :data:`CANDIDATES` whose tiled output of ``probe`` (1, 3, h, w)
    stays within ``bound`` of the untiled output; the exact bound ``net.tile_margin()`` when none
    does. Returns ``{"margin", "max_error", "exact_margin", "bound", "tried": {margin: error}}``."""
    exact = int(net.tile_margin())
    h, w = probe.shape[-2:]
    kw = dict(tile_batch=8, precision=precision, device=device)
    ref_tiler = TiledUpscaler(net, tile=None, **kw)
    ref = ref_tiler(probe).clamp(0, 1)
    # whole-image statistics once (converged), shared by every candidate: the error is the margin's
    stats = TiledUpscaler(net, tile=tile, margin=min(exact, (min(h, w) - tile) // 2 - 1), **kw)
    stats(probe)
    tried: dict[int, float] = {}
    for m in CANDIDATES:
        if m >= exact or tile + 2 * m >= min(h, w):  # no tiling left to test: keep the bound
            break
        tiler = TiledUpscaler(net, tile=tile, margin=m, **kw)
        assert len(axis_tiles(h, tile, m)) > 1
        tiler.warm_start(stats)
        err = float((tiler(probe).clamp(0, 1) - ref).abs().max())
        tried[m] = err
        if err <= bound:
            return {"margin": m, "max_error": err, "exact_margin": exact, "bound": bound, "tried": tried}
    return {"margin": exact, "max_error": 0.0, "exact_margin": exact, "bound": bound, "tried": tried}


def cached_margin(net: SRModel, digest: str, cache_dir: str | os.PathLike, hr_images: Sequence[Tensor],
                  bound: float = DEFAULT_BOUND, probe_side: int = PROBE_SIDE, **kw) -> dict:
    """:func:`measure_margin` on the probe of ``hr_images``, stored in ``cache_dir`` under the
    weights' ``digest`` and reused."""
    path = Path(cache_dir).expanduser() / f"{digest}-x{net.scale}-margin-{bound * 255:.3g}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("ignoring the unreadable margin cache %s", path)
    log.info("measuring the tile margin of these weights once (bound %.2f/255)", bound * 255)
    result = measure_margin(net, probe_image(hr_images, net.scale, probe_side), bound, **kw)
    result["tried"] = {str(k): v for k, v in result["tried"].items()}
    atomic_write_json(result, path)
    return result


def tile_margin_for(
    spec: str | int | None, net: SRModel, cache_key: str, cache_dir: str | os.PathLike,
    reference_dir: str | os.PathLike, bound_levels: float = 0.5, **kw,
) -> int | None:
    """The ``tile_margin`` key: ``exact``/None -> None (the net's bound), ``auto`` -> the margin
    measured once for these weights (``cache_key``) within ``bound_levels`` 8-bit levels on the
    probe made of ``reference_dir``'s images, a number -> that many LR pixels."""
    if spec is None or str(spec) == "exact":
        return None
    if str(spec) == "auto":
        if not float(bound_levels) > 0:
            raise ConfigError(f"tile_margin_bound={bound_levels}: give a positive number of 8-bit levels (e.g. 0.5)")
        images = [load_image(f) for f in list_images(Path(reference_dir), "reference_images")]
        found = cached_margin(net, cache_key, cache_dir, images, float(bound_levels) / 255, **kw)
        log.info("tile_margin=auto: %d LR px (exact bound %d; max error %.2f/255 on the probe)",
                 found["margin"], found["exact_margin"], found["max_error"] * 255)
        return int(found["margin"])
    try:
        value = int(spec)
    except (TypeError, ValueError):
        value = -1
    if value < 0 or str(value) != str(spec).strip():
        raise ConfigError(f"tile_margin={spec}: give exact, auto or a number of LR pixels >= 0")
    return value
