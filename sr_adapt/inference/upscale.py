"""Upscaling images and videos with a model: tiled, optionally self-ensembled, written atomically.

The command that checks inputs and outputs first is :mod:`sr_adapt.tasks.upscale`; these
functions assume a checked job.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from sr_adapt.errors import DataError
from sr_adapt.inference.ensemble import self_ensemble
from sr_adapt.inference.tiling import TiledUpscaler
from sr_adapt.io.atomic import show_path
from sr_adapt.io.images import load_image, save_image
from sr_adapt.io.video import frame_to_array, open_video_reader, probe_video
from sr_adapt.io.video_writer import VideoWriter
from sr_adapt.models.base import SRModel
from sr_adapt.ops.color import from_uint8, to_uint8

__all__ = ["make_upscaler", "upscale_image", "upscale_video"]

Upscaler = Callable[[Tensor], Tensor]


def make_upscaler(
    net: SRModel, device: torch.device, tile: int | None = 256, tile_batch: int = 4, precision: str = "fp32",
    exact_stats: bool = True, ensemble: bool = False,
) -> tuple[Upscaler, TiledUpscaler]:
    """``(fn, tiler)``: fn maps (N, 3, h, w) RGB in [0, 1] -> (N, 3, sh, sw) float32 on the CPU,
    tiled (:class:`TiledUpscaler`) and, with ``ensemble``, averaged over the x8 symmetries."""
    kw = dict(tile=tile, tile_batch=tile_batch, precision=precision, device=device, exact_stats=exact_stats)
    tiler = TiledUpscaler(net, **kw)
    if not ensemble:
        return tiler, tiler
    tiler_t = TiledUpscaler(net, **kw)  # own warm statistics for the transposed half
    return (lambda x: self_ensemble(tiler, x, fn_transposed=tiler_t)), tiler


def upscale_image(fn: Upscaler, src: Path, dst: Path) -> None:
    """Reads ``src``, writes the upscaled image to ``dst`` (format from its suffix)."""
    save_image(fn(load_image(src)[None])[0], dst)


def upscale_video(
    fn: Upscaler, src: Path, dst: Path, scale: int, fps: Fraction, copy_audio: bool = True, chunk: int = 1,
    codec: str = "libx264", crf: int = 18, preset: str = "medium",
) -> int:
    """Every frame of ``src`` upscaled into ``dst`` at ``fps``, ``chunk`` frames per call of ``fn``
    (1 for tiled frames: tiles are batched and global statistics warm-start from the previous
    frame); audio copied when ``copy_audio``. Returns the number of frames written."""
    info = probe_video(src)
    reader = open_video_reader(src)
    with VideoWriter(
        dst, info.width * scale, info.height * scale, fps, audio_from=src if copy_audio else None,
        codec=codec, crf=crf, preset=preset,
    ) as writer, tqdm(total=info.frames, desc="upscale", unit="frame") as bar:
        for i in range(0, info.frames, max(1, chunk)):
            idx = list(range(i, min(i + max(1, chunk), info.frames)))
            try:
                frames = frame_to_array(reader.get_batch(idx))
            except Exception as e:  # noqa: BLE001 - decord's own error types
                raise DataError(
                    f"video {show_path(src)}: frames {idx[0]}-{idx[-1]} do not decode ({type(e).__name__}: {e})"
                ) from None
            sr = fn(from_uint8(frames).permute(0, 3, 1, 2))
            writer.write(to_uint8(sr).permute(0, 2, 3, 1).numpy())
            bar.update(len(idx))
    return writer.frames_written
