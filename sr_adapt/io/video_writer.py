"""Writing videos with PyAV: source frame rate, every frame, audio copied, atomic file.

The file is encoded under a temporary name in the output's folder and renamed onto the final
name only after the last packet is written: an interrupted or failed run leaves no file (and
no half-written one) under the output name.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from sr_adapt.errors import ConfigError
from sr_adapt.io.atomic import atomic_path

#: Output suffix -> FFmpeg muxer.
OUTPUT_VIDEO_FORMATS: dict[str, str] = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}

#: Audio codecs each muxer takes as a stream copy (matroska: all).
_COPYABLE_AUDIO: dict[str, set[str] | None] = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"},
    "mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_f32le"},
    "matroska": None,
}


def _av():
    import av  # noqa: PLC0415 - optional at import time of the package

    return av


def source_streams(path: str | os.PathLike) -> tuple[Fraction | None, list[str]]:
    """(average frame rate as an exact fraction or None, codec names of the audio streams) of a video."""
    av = _av()
    with av.open(str(path)) as c:
        video = c.streams.video[0] if c.streams.video else None
        rate = None
        if video is not None:
            rate = video.average_rate or video.guessed_rate or video.base_rate
        return (Fraction(rate) if rate else None), [s.codec_context.name for s in c.streams.audio]


def check_video_output(path: str | os.PathLike, audio_codecs: list[str], copy_audio: bool) -> str:
    """The muxer name for ``path``; ConfigError for an unsupported suffix or audio that cannot be copied."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_VIDEO_FORMATS:
        raise ConfigError(
            f"output={path}: unsupported video suffix {suffix or '(none)'!r}; use one of {', '.join(OUTPUT_VIDEO_FORMATS)}"
        )
    fmt = OUTPUT_VIDEO_FORMATS[suffix]
    allowed = _COPYABLE_AUDIO[fmt]
    if copy_audio and allowed is not None:
        bad = [c for c in audio_codecs if c not in allowed]
        if bad:
            raise ConfigError(
                f"output={path}: the input's audio ({', '.join(bad)}) cannot be copied into a {suffix} file; "
                "write .mkv (takes any audio), or drop the audio with video.audio=false"
            )
    return fmt


def _video_stream(container: Any, codec: str, fps: Fraction, width: int, height: int, crf: int, preset: str,
                  x264_params: str = "") -> Any:
    """An output video stream: yuv420p (yuv444p for odd sizes with libx264), CRF rate control."""
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = width, height
    even = width % 2 == 0 and height % 2 == 0
    stream.pix_fmt = "yuv420p" if even or codec != "libx264" else "yuv444p"
    if codec == "libx264":
        stream.options = {"crf": str(crf), "preset": preset, **({"x264-params": x264_params} if x264_params else {})}
    return stream


def codec_round_trip(frames: np.ndarray, crf: int = 18, codec: str = "libx264", preset: str = "medium",
                     x264_params: str = "") -> np.ndarray:
    """(N, H, W, 3) uint8 RGB frames encoded as one clip in memory (the settings of
    :class:`VideoWriter`, plus ``x264_params``) and decoded again: what a viewer of that file
    sees. Odd sizes are padded to even by edge replication (4:2:0 chroma) and cropped back."""
    av = _av()
    n, h, w, _ = frames.shape
    padded = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = _video_stream(out, codec, Fraction(25), padded.shape[2], padded.shape[1], crf, preset, x264_params)
        for i, arr in enumerate(padded):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    buf.seek(0)
    with av.open(buf, "r") as src:
        decoded = [f.to_ndarray(format="rgb24") for f in src.decode(video=0)]
    if len(decoded) != n:
        raise RuntimeError(f"{codec} round trip returned {len(decoded)} frames for {n}")
    return np.stack(decoded)[:, :h, :w]


class VideoWriter:
    """Encodes RGB frames to ``path`` (H.264 by default) at ``fps``, copying ``audio_from``'s audio.

    Use as a context manager; ``write(frames)`` takes (N, H, W, 3) uint8 RGB arrays. Frame i gets
    the timestamp i / fps (constant frame rate), so the output has exactly the frames written.
    Audio packets are copied without re-encoding and interleaved with the video by time.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        width: int,
        height: int,
        fps: Fraction,
        audio_from: str | os.PathLike | None = None,
        codec: str = "libx264",
        crf: int = 18,
        preset: str = "medium",
    ) -> None:
        self.path = Path(path)
        self.width, self.height, self.fps = int(width), int(height), Fraction(fps)
        self.audio_from = Path(audio_from) if audio_from is not None else None
        self.codec, self.crf, self.preset = codec, int(crf), preset
        self.format = OUTPUT_VIDEO_FORMATS.get(self.path.suffix.lower())
        if self.format is None:
            raise ConfigError(f"output={path}: unsupported video suffix; use one of {', '.join(OUTPUT_VIDEO_FORMATS)}")
        self.frames_written = 0
        self._atomic: Any = None

    def __enter__(self) -> "VideoWriter":
        av = _av()
        self._atomic = atomic_path(self.path)
        tmp = self._tmp = self._atomic.__enter__()
        try:
            self._out = av.open(str(tmp), "w", format=self.format)
            self._video = _video_stream(self._out, self.codec, self.fps, self.width, self.height, self.crf, self.preset)
            self._audio_in = None
            self._audio_packets: Iterator[Any] = iter(())
            self._pending = None
            if self.audio_from is not None:
                src = av.open(str(self.audio_from))
                if src.streams.audio:
                    self._audio_in = src
                    mapping = {s.index: self._out.add_stream_from_template(s) for s in src.streams.audio}
                    self._audio_map = mapping
                    self._audio_packets = src.demux(*src.streams.audio)
                else:
                    src.close()
        except BaseException as e:
            self._close(error=True)
            self._atomic.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def _mux_audio_until(self, t: float | None) -> None:
        """Copies audio packets with a time <= ``t`` seconds (all remaining ones when None)."""
        while True:
            pkt = self._pending
            if pkt is None:
                pkt = next(self._audio_packets, None)
                if pkt is None:
                    return
                if pkt.dts is None:  # demuxer flush packet
                    continue
            when = float(pkt.pts * pkt.time_base) if pkt.pts is not None else float(pkt.dts * pkt.time_base)
            if t is not None and when > t:
                self._pending = pkt
                return
            self._pending = None
            pkt.stream = self._audio_map[pkt.stream.index]
            self._out.mux(pkt)

    def write(self, frames: np.ndarray) -> None:
        """Appends (N, H, W, 3) (or one (H, W, 3)) uint8 RGB frames."""
        av = _av()
        if frames.ndim == 3:
            frames = frames[None]
        if frames.shape[1:] != (self.height, self.width, 3) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, {self.height}, {self.width}, 3), got {frames.dtype} {frames.shape}")
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            frame.pts = self.frames_written
            frame.time_base = 1 / self.fps
            for packet in self._video.encode(frame):
                self._out.mux(packet)
            self.frames_written += 1
            self._mux_audio_until(self.frames_written / self.fps)

    def _close(self, error: bool) -> None:
        out = getattr(self, "_out", None)
        if out is not None:
            if not error:
                for packet in self._video.encode(None):
                    self._out.mux(packet)
                self._mux_audio_until(None)
            out.close()
            self._out = None
        src = getattr(self, "_audio_in", None)
        if src is not None:
            src.close()
            self._audio_in = None

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._close(error=exc_type is not None)
        except BaseException as e:
            self._atomic.__exit__(type(e), e, e.__traceback__)
            raise
        self._atomic.__exit__(exc_type, exc, tb)  # renames onto the final name only without error

