"""Video files: finding, probing and decoding them with decord.

torch is imported before decord (importing decord first can break torch's OpenMP runtime on
some builds); decord itself is imported lazily. Readers use one thread and decode at native
size (decord's resize option can return 4-channel frames or fail).
"""

from __future__ import annotations

import glob
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch  # noqa: F401  (before decord, always)
from torch import Tensor

from sr_adapt.errors import DataError
from sr_adapt.io.atomic import show_path
from sr_adapt.ops.color import from_uint8

#: Accepted video file suffixes (compared lower-cased).
VIDEO_EXTENSIONS: frozenset[str] = frozenset({".mp4", ".mkv", ".webm", ".avi", ".mov"})
#: Frames at the end of a video that are never decoded at random: containers over-report frame counts.
END_MARGIN = 8

_GLOB_CHARS = re.compile(r"[*?\[]")


# ----------------------------------------------------------------------------------------------
# probing and path resolution


class VideoInfo(NamedTuple):
    """What :func:`probe_video` reads from a video: frame count, average fps, frame size."""

    frames: int
    fps: float  # average frame rate as decord reports it; 0.0 when unknown
    height: int
    width: int

    @property
    def duration(self) -> float:
        """Seconds (``frames / fps``); NaN when the frame rate is unknown."""
        return self.frames / self.fps if self.fps > 0 else math.nan


def drawable_frames(
    info: VideoInfo, end_margin: int = END_MARGIN, time_range: tuple[float, float | None] | None = None, stride: int = 1,
    held_out: float = 0.0,
) -> range:
    """The frame indices that may be decoded at random: the one rule for every reader.

    The last ``end_margin`` frames are excluded (never more than half of the video: frame
    counts from the container index can be over-reported); ``time_range = (start_s, end_s)``
    keeps frames with ``index / fps`` in ``[start_s, end_s)`` (``end_s`` None: to the end);
    ``stride`` keeps multiples of it; ``held_out`` (a fraction) leaves out the last part of the video
    (:func:`held_out_frames`). The range may be empty.

    Raises:
        ValueError: ``time_range`` is given but the frame rate is unknown.
    """
    stop = info.frames - min(end_margin, info.frames // 2)
    start = 0
    if time_range is not None:
        if info.fps <= 0:
            raise ValueError("unknown frame rate")
        t0, t1 = time_range
        start = math.ceil(t0 * info.fps - 1e-6)
        if t1 is not None:
            stop = min(stop, math.ceil(t1 * info.fps - 1e-6))
    if held_out:
        stop = min(stop, held_out_start(info, held_out, end_margin))
    first = -(-start // stride) * stride
    return range(first, max(stop, first), stride)


def _readable_stop(info: VideoInfo, end_margin: int) -> int:
    return info.frames - min(end_margin, info.frames // 2)


def held_out_start(info: VideoInfo, held_out: float, end_margin: int = END_MARGIN) -> int:
    """The first frame of the last ``held_out`` fraction of a video's readable frames (before its end margin):
    frames the training never draws. At least one frame for any ``held_out`` > 0."""
    stop = _readable_stop(info, end_margin)
    return stop - math.ceil(stop * held_out)


def held_out_frames(info: VideoInfo, held_out: float, count: int = 3, end_margin: int = END_MARGIN) -> list[int]:
    """Up to ``count`` frame indices spread over the held-out part of a video (:func:`held_out_start`, within
    its readable frames), for looking at what the training did not see; over the whole video when 0."""
    stop = _readable_stop(info, end_margin)
    first = held_out_start(info, held_out, end_margin) if held_out else 0
    tail = list(range(first, stop))
    if not tail:
        return [0]
    picks = np.linspace(0, len(tail) - 1, count + 2)[1:-1].round().astype(int)
    return sorted({tail[i] for i in picks})


def is_video_file(path: str | os.PathLike) -> bool:
    """True for a name with an accepted video suffix (any case) that is not a hidden file."""
    p = Path(path)
    return p.suffix.lower() in VIDEO_EXTENSIONS and not p.name.startswith(".")


def _decord():
    import decord  # noqa: PLC0415 - lazy on purpose, and always after torch

    return decord


NARROW = 128  # frames narrower than this (pixels) are checked once for decord 0.6's row-copy failure
MAX_FALLBACK_BYTES = 2 << 30  # the fallback keeps every frame in memory


class DecodedVideo:
    """Every frame of a video decoded with PyAV into memory, behind the parts of decord's
    ``VideoReader`` interface this package uses (``len``, ``[i]``, ``get_batch``, ``seek``,
    ``get_avg_fps``). Used where decord 0.6 cannot copy the frames of some narrow widths
    (16, 24, 48, ... pixels: "Check failed: from_size == to_size"); such videos are small."""

    def __init__(self, path: str | os.PathLike) -> None:
        import av  # noqa: PLC0415

        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate or 0.0)
            frames, size = [], 0
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                size += frames[-1].nbytes
                if size > MAX_FALLBACK_BYTES:
                    raise RuntimeError("too large for the in-memory fallback decoder")
        if not frames:
            raise RuntimeError("no frame decodes")
        self.frames = np.stack(frames)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.frames[i]

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:
        return self.frames[list(indices)]

    def get_avg_fps(self) -> float:
        return self.fps

    def seek(self, i: int) -> None:
        pass


def open_video_reader(path: str | os.PathLike):
    """A ``decord.VideoReader`` with the settings this module relies on (1 thread, native size), or
    a :class:`DecodedVideo` for narrow videos whose frames decord cannot copy.

    Raises whatever decord raises (``RuntimeError``, ``decord.DECORDError``, ...).
    """
    vr = _decord().VideoReader(str(path), num_threads=1)
    if len(vr) and vr[0].shape[1] < NARROW:
        try:
            vr.get_batch([0]).asnumpy()
            vr.seek(0)
        except Exception as e:  # noqa: BLE001 - decord's own error types
            if "from_size == to_size" not in str(e):
                raise
            return DecodedVideo(path)
    return vr


def decord_reason(e: BaseException) -> str:
    """First meaningful line of a decord/FFmpeg error, without the C++ source location."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    text = re.sub(r"^\[[\d:]+\]\s*\S+:\d+:\s*", "", text)  # "[03:15:39] src/video_reader.cc:151: "
    return f"{type(e).__name__}: {text[:200]}"


def frame_to_array(frame: Any) -> np.ndarray:
    """A decord frame ``(H, W, 3)`` or batch ``(N, H, W, 3)`` as a uint8 numpy array.

    Accepts decord's native NDArray and the torch/numpy arrays of its other bridges. Also
    repairs a decord 0.6 quirk: for some narrow frames (widths 8, 16, 24, 48, 72, ...) the
    decoder's padded rows come back as ``(H, W, C)`` with C = row bytes / W > 3 (e.g.
    ``(H, 16, 6)`` for a 16-pixel-wide video); the first ``3 W`` bytes of each row are the
    pixels, the rest padding.
    """
    if hasattr(frame, "asnumpy"):
        arr = frame.asnumpy()
    elif isinstance(frame, Tensor):
        arr = frame.cpu().numpy()
    else:
        arr = np.asarray(frame)
    if arr.ndim >= 3 and arr.shape[-1] > 3:
        *lead, h, w, c = arr.shape
        arr = np.ascontiguousarray(arr.reshape(*lead, h, w * c)[..., : w * 3].reshape(*lead, h, w, 3))
    return arr


def probe_reason(path: Path) -> VideoInfo | str:
    """:func:`probe_video` returning why it fails as text instead of raising (for reports over many files)."""
    if not path.exists():
        return "the file does not exist"
    if not path.is_file():
        return "it is not a file"
    if path.stat().st_size == 0:
        return "the file is empty (0 bytes)"
    try:
        vr = open_video_reader(path)
    except Exception as e:  # noqa: BLE001 - decord raises RuntimeError, DECORDError, AssertionError ...
        reason = decord_reason(e)
        if "cannot find video stream" in reason or "frame count" in reason:
            return "it has no video stream with frames (a zero-frame or audio-only file)"
        if "Error reading" in reason:  # decord's only text; FFmpeg's own reason goes to stderr
            reason = "FFmpeg cannot open it; its reason is printed on stderr"
        return f"not a video, or a corrupt/truncated container ({reason})"
    try:
        frames = len(vr)
        if frames <= 0:
            return "it has zero frames"
        try:
            fps = float(vr.get_avg_fps())
        except Exception:  # noqa: BLE001
            fps = 0.0
        if not math.isfinite(fps) or fps <= 0:
            fps = 0.0
        try:
            first = frame_to_array(vr[0])
        except Exception as e:  # noqa: BLE001
            return f"its first frame does not decode ({decord_reason(e)})"
        if first.ndim != 3 or first.shape[2] != 3:
            return f"decoded frames have shape {first.shape}, expected (H, W, 3)"
        return VideoInfo(frames=frames, fps=fps, height=int(first.shape[0]), width=int(first.shape[1]))
    finally:
        del vr  # frees the decoder and closes the file now (CPython refcounting)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Open ``path`` once with decord, read frame count, fps and frame size, close it.

    The size comes from decoding frame 0, which also proves that the stream decodes.

    Raises:
        DataError: missing file, a folder, not a video, corrupt or truncated container,
            no video stream or zero frames (the message names the file).
    """
    path = Path(path).expanduser()
    info = probe_reason(path)
    if isinstance(info, str):
        raise DataError(f"cannot read video {show_path(path)}: {info}. Replace, re-encode or remove the file.")
    return info


def resolve_video_paths(
    paths: str | os.PathLike | Sequence[str | os.PathLike], config_key: str
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand video files, folders and globs into a sorted, de-duplicated list of videos.

    - a file must have a video suffix (:data:`VIDEO_EXTENSIONS`, any case);
    - a folder contributes the videos directly inside it (NOT its subfolders; use a
      ``**`` glob such as ``clips/**/*.mp4`` to recurse);
    - a glob (``*``, ``?``, ``[``; ``**`` recursive) contributes the matching video files,
      other matches (folders, non-video files) are ignored;
    - ``~`` is expanded everywhere. Order: as given, each folder/glob sorted by name.

    Returns:
        ``(videos, problems)`` where each problem is ``(entry, text)`` for an entry that
        yields nothing (missing path, glob matching no video, folder without videos,
        file with another suffix). Nothing is opened here.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    videos: list[Path] = []
    seen: set[Path] = set()
    problems: list[tuple[str, str]] = []

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            videos.append(p)

    for entry in paths:
        text = os.path.expanduser(str(entry))
        if _GLOB_CHARS.search(text):
            matches = sorted(glob.glob(text, recursive=True))
            found = [Path(m) for m in matches if is_video_file(m) and Path(m).is_file()]
            if not matches:
                problems.append((text, f"glob {text!r} matches nothing"))
            elif not found:
                problems.append((text, f"glob {text!r} matches {len(matches)} path(s) but no video file"))
            for p in found:
                add(p)
            continue
        p = Path(text)
        if not p.exists():
            problems.append((text, f"{show_path(p)} does not exist"))
        elif p.is_dir():
            found = sorted(q for q in p.iterdir() if is_video_file(q) and q.is_file())
            if not found:
                problems.append((text, f"folder {show_path(p)} holds no video file (subfolders are not searched)"))
            for q in found:
                add(q)
        elif not is_video_file(p):
            problems.append((text, f"{show_path(p)} is not a video file (suffix {p.suffix or 'none'!r})"))
        else:
            add(p)
    return videos, problems



def read_frames(
    path: str | os.PathLike, indices: Sequence[int] | None = None, times: Sequence[float] | None = None,
    config_key: str = "video",
) -> Tensor:
    """Decodes the given frames at native size: (N, 3, H, W) float32 RGB in [0, 1].

    Frames are chosen by ``indices`` or by ``times`` (seconds; default: frame 0) and clipped to
    the :func:`drawable_frames` of the video.

    Raises:
        DataError: the video does not decode, or ``times`` is given and its frame rate is unknown.
    """
    path = Path(path)
    info = probe_reason(path)
    if isinstance(info, str):
        raise DataError(f"{config_key}: cannot read video {show_path(path)}: {info}")
    last = drawable_frames(info)[-1]
    if times is not None:
        if info.fps <= 0:
            raise DataError(f"{config_key}: video {show_path(path)} has no frame rate: give frame indices, not times")
        indices = [int(round(t * info.fps)) for t in times]
    idx = [min(max(int(i), 0), last) for i in (indices if indices is not None else [0])]
    try:
        reader = open_video_reader(path)
        frames = frame_to_array(reader.get_batch(idx))
        reader.seek(0)
    except Exception as exc:  # noqa: BLE001 - decord raises its own error types for corrupt streams
        raise DataError(f"{config_key}: cannot decode frames {idx} of video {show_path(path)} ({decord_reason(exc)})") from None
    return from_uint8(frames).permute(0, 3, 1, 2).contiguous()


# ----------------------------------------------------------------------------------------------
# how a file was encoded


def mean_qp(path: str | os.PathLike, frames: int = 150, config_key: str = "video") -> float | None:
    """Mean quantizer (QP, 0..51 for 8-bit H.264) of the blocks of the first ``frames`` frames, as the
    decoder reports them (FFmpeg's encoding-parameters side data: H.264, MPEG-2 and similar codecs);
    None when the codec does not report one. Decoded with PyAV; a few hundred ms for an SD clip.

    Raises:
        DataError: the file does not open or decode (named with ``config_key``).
    """
    import av  # noqa: PLC0415

    values = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DataError(f"{config_key}: {show_path(path)} has no video stream")
            stream = container.streams.video[0]
            stream.codec_context.options = {"export_side_data": "venc_params"}
            for frame in container.decode(stream):
                values += [float(np.mean(sd.qp_map())) for sd in frame.side_data
                           if sd.type.name == "VIDEO_ENC_PARAMS" and sd.qp_map().size]
                frames -= 1
                if frames <= 0:
                    break
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"{config_key}: cannot decode {show_path(path)} to read its quantizer ({exc})") from None
    return float(np.mean(values)) if values else None
