"""Upscaling images and videos with a model: tiled, optionally self-ensembled, written atomically.

The command that checks inputs and outputs first is :mod:`sr_adapt.tasks.upscale`; these
functions assume a checked job.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from sr_adapt.errors import ConfigError, DataError
from sr_adapt.inference.ensemble import self_ensemble
from sr_adapt.inference.tiling import TiledUpscaler
from sr_adapt.io.atomic import show_path
from sr_adapt.io.images import array_to_tensor, load_image_array, save_image
from sr_adapt.io.video import frame_to_array, open_video_reader, probe_video
from sr_adapt.io.video_writer import VideoWriter
from sr_adapt.models.base import SRModel
from sr_adapt.ops.color import from_uint8, to_uint8

__all__ = ["make_upscaler", "tile_batch_for", "upscale_image", "upscale_video"]

log = logging.getLogger("sr_adapt.inference")

Upscaler = Callable[[Tensor], Tensor]
T = TypeVar("T")


#: Crops per forward with ``tile_batch=auto``. On a CPU one at a time is fastest (DRN x4, 172 px
#: crops, 2 cores: 4 per forward costs 1.27x (torch) and 1.13x (onnxruntime) the time per crop:
#: bigger activations fall out of cache); a GPU wants batches.
AUTO_TILE_BATCH = {"cpu": 1, "cuda": 4}


def tile_batch_for(value: Any, device: torch.device) -> int:
    """``tile_batch`` config value (``auto`` or a positive integer) -> crops (or whole video frames) per forward."""
    if str(value) == "auto":
        return AUTO_TILE_BATCH.get(torch.device(device).type, 4)
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or str(n) != str(value).strip():
        raise ConfigError(f"tile_batch={value}: give auto (1 on a CPU, 4 on a GPU) or a positive integer")
    return n


def make_upscaler(
    net: SRModel, device: torch.device, tile: int | None = 256, tile_batch: int = 4, precision: str = "fp32",
    exact_stats: bool = True, ensemble: bool = False, margin: int | None = None,
) -> tuple[Upscaler, TiledUpscaler]:
    """``(fn, tiler)``: fn maps (N, 3, h, w) RGB in [0, 1] -> (N, 3, sh, sw) float32 on the CPU,
    tiled (:class:`TiledUpscaler`, ``margin`` None: the exact bound) and, with ``ensemble``,
    averaged over the x8 symmetries. ``net``: a PyTorch model or an onnxruntime one."""
    kw = dict(tile=tile, tile_batch=tile_batch, precision=precision, device=device, exact_stats=exact_stats, margin=margin)
    tiler = TiledUpscaler(net, **kw)
    if not ensemble:
        return tiler, tiler
    tiler_t = TiledUpscaler(net, **kw)  # own warm statistics for the transposed half
    return (lambda x: self_ensemble(tiler, x, fn_transposed=tiler_t)), tiler


def upscale_image(fn: Upscaler, src: Path, dst: Path) -> None:
    """Reads ``src``, writes the upscaled image to ``dst`` (format from its suffix, 8 bit)."""
    arr = load_image_array(src)
    if arr.dtype != np.uint8:
        log.warning("%s has %s samples; %s is written with 8 bits per channel", show_path(src),
                    "16-bit" if arr.dtype == np.uint16 else "32-bit", show_path(dst))
    save_image(fn(array_to_tensor(arr)[None])[0], dst)


def _in_background(items: Iterator[T], depth: int, name: str) -> Iterator[T]:
    """``items`` produced by a worker thread, up to ``depth`` ahead of the consumer; the worker's
    exception is raised here, and the worker stops when the consumer does."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done, stop, errors = object(), threading.Event(), []

    def put(item: object) -> bool:
        """Blocks until the queue takes ``item`` (True) or the consumer has stopped (False)."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            errors.append(e)
        finally:  # the end mark must arrive, however long the consumer takes
            put(done)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            yield item
    finally:
        stop.set()
        worker.join(timeout=5.0)
    if errors:
        raise errors[0]


class _BackgroundSink:
    """Calls ``fn`` on submitted items in order, in a worker thread, at most ``depth`` behind."""

    def __init__(self, fn: Callable[[Any], None], depth: int, name: str) -> None:
        self.fn, self.errors = fn, []
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.worker = threading.Thread(target=self._work, name=name, daemon=True)
        self.worker.start()

    def _work(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if not self.errors:
                try:
                    self.fn(item)
                except BaseException as e:  # noqa: BLE001 - raised by submit/close
                    self.errors.append(e)

    def submit(self, item: Any) -> None:
        if self.errors:
            raise self.errors[0]
        self.q.put(item)

    def close(self) -> None:
        self.q.put(None)
        self.worker.join()
        if self.errors:
            raise self.errors[0]


def upscale_video(
    fn: Upscaler, src: Path, dst: Path, scale: int, fps: Fraction, copy_audio: bool = True, chunk: int = 1,
    codec: str = "libx264", crf: int = 18, preset: str = "medium", pipelined: bool = True,
) -> int:
    """Every frame of ``src`` upscaled into ``dst`` at ``fps``, ``chunk`` frames per call of ``fn``
    (1 for tiled frames: tiles are batched and global statistics warm-start from the previous
    frame); audio copied when ``copy_audio``. Returns the number of frames written.

    ``pipelined``: decoding and encoding run in their own threads, a few chunks ahead of and
    behind the model (both release the GIL), so a video runs at the speed of its compute."""
    info = probe_video(src)
    reader = open_video_reader(src)
    step = max(1, chunk)

    def decoded() -> Iterator[tuple[list[int], np.ndarray]]:
        for i in range(0, info.frames, step):
            idx = list(range(i, min(i + step, info.frames)))
            try:
                yield idx, frame_to_array(reader.get_batch(idx))
            except Exception as e:  # noqa: BLE001 - decord's own error types
                raise DataError(
                    f"video {show_path(src)}: frames {idx[0]}-{idx[-1]} do not decode ({type(e).__name__}: {e})"
                ) from None

    with VideoWriter(
        dst, info.width * scale, info.height * scale, fps, audio_from=src if copy_audio else None,
        codec=codec, crf=crf, preset=preset,
    ) as writer, tqdm(total=info.frames, desc="upscale", unit="frame") as bar:
        frames_in = _in_background(decoded(), depth=3, name="decode") if pipelined else decoded()
        sink = _BackgroundSink(writer.write, depth=3, name="encode") if pipelined else None
        try:
            for idx, frames in frames_in:
                sr = to_uint8(fn(from_uint8(frames).permute(0, 3, 1, 2))).permute(0, 2, 3, 1).numpy()
                if sink is not None:
                    sink.submit(sr)
                else:
                    writer.write(sr)
                bar.update(len(idx))
        finally:
            if sink is not None:
                sink.close()  # every frame encoded (or the encoder's error raised) before the file closes
    return writer.frames_written
