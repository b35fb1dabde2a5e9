"""Decoding random frames of videos in DataLoader workers: a small per-process pool of decord readers.

The precautions decord needs (see :mod:`sr_adapt.io.video` for the reader settings):

- readers are opened lazily in the process that reads (each DataLoader worker), never pickled;
  a process that inherits readers through ``fork`` parks them for good and opens its own
  (shared file offsets would corrupt reads, and freeing them joins a thread that does not exist
  in the child);
- at most ``max_open`` readers per process (least recently used closed first), ``seek(0)``
  after each read, which frees the decoder's buffered frames;
- opening a video reads its whole packet index (milliseconds for short clips, proportional to
  the file's length), so readers are kept rather than reopened for each frame;
- a frame that fails to decode is retried at earlier frames (frame counts can be
  over-reported near the end) with a fresh reader before the video is declared broken.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sr_adapt.io.video import decord_reason, frame_to_array, open_video_reader

__all__ = ["DecodeFailed", "ReaderPool"]

_INHERITED_READERS: list[Any] = []  # readers a forked process got from its parent: never freed


class DecodeFailed(Exception):
    """A video failed at every fallback frame; the message lists the frames and decord's reasons."""


class ReaderPool:
    """Open readers of ``videos`` in this process, least recently used closed first.

    ``stats["frames_decoded"]`` and ``stats["decode_errors"]`` count this process's work.
    Pickles without its readers.
    """

    def __init__(self, videos: Sequence[Path], max_open: int = 2) -> None:
        self.videos = list(videos)
        self.max_open = max_open
        self.stats = {"frames_decoded": 0, "decode_errors": 0}
        self._readers: OrderedDict[int, Any] = OrderedDict()
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()
        state["_pid"] = None
        return state

    @property
    def open_readers(self) -> int:
        return len(self._readers) if self._pid == os.getpid() else 0

    def reader(self, vid: int) -> Any:
        if self._pid != os.getpid():
            _INHERITED_READERS.extend(self._readers.values())
            self._readers = OrderedDict()
            self._pid = os.getpid()
        vr = self._readers.get(vid)
        if vr is not None:
            self._readers.move_to_end(vid)
            return vr
        while len(self._readers) >= self.max_open:
            self._readers.popitem(last=False)  # closes the least recently used reader
        vr = open_video_reader(self.videos[vid])
        self._readers[vid] = vr
        return vr

    def close(self, vid: int) -> None:
        self._readers.pop(vid, None)

    def read(self, vid: int, frames: Sequence[int], pos: int, back: int) -> tuple[np.ndarray, int]:
        """Decode ``frames[pos]`` of video ``vid``; on failure ``frames[pos - back]``,
        ``frames[pos - 4 back]``, then ``frames[0]``, each with a fresh reader.

        Returns ``(frame (H, W, 3) uint8, frame index)``; raises :class:`DecodeFailed`.
        """
        tries = list(dict.fromkeys([pos, max(0, pos - back), max(0, pos - 4 * back), 0]))
        errors = []
        for k in tries:
            idx = frames[k]
            try:
                vr = self.reader(vid)
                arr = frame_to_array(vr[idx])
                vr.seek(0)  # release buffered frames; random access seeks anyway
            except Exception as e:  # noqa: BLE001 - decord raises RuntimeError, DECORDError, IndexError ...
                self.close(vid)  # the decoder state may be broken
                self.stats["decode_errors"] += 1
                errors.append(f"frame {idx}: {decord_reason(e)}")
                continue
            self.stats["frames_decoded"] += 1
            if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
                errors.append(f"frame {idx}: unexpected decoded array {arr.dtype} {arr.shape}")
                continue
            return arr, idx
        raise DecodeFailed("; ".join(errors))
