"""LR-only training sources: random patches from real videos and from folders of LR images.

DRN's adaptation setting trains on real low-resolution data that has no HR ground
truth: those samples only feed the dual (LR -> LR) loss. They share the keys and shapes
of the paired samples of :mod:`sr_adapt.data.paired` so both kinds collate into one
batch::

    {"lr": (3, p, p), "lr_levels": [lr, zeros (3, 2p, 2p), ..., zeros (3, P/2, P/2)],
     "hr": zeros (3, P, P), "paired": tensor(False), "name": str}

float32 in [0, 1], P the HR patch size, s the scale, p = P / s, ``lr is lr_levels[0]``.
The classes carry ``paired = False`` (the datamodule sorts sources by it).

Video decoding uses decord, with the precautions it needs:

- torch is imported before decord (importing decord first can break torch's OpenMP
  runtime on some builds); decord itself is imported lazily.
- Readers are opened lazily in the process that reads (each DataLoader worker), never
  kept by ``__init__``: the dataset pickles. A process that inherits readers through
  ``fork`` drops them and opens its own (shared file offsets would corrupt reads).
- ``num_threads=1`` (DataLoader workers are the parallelism), native frame size (no
  decoder-side resize), at most ``max_open_readers`` open readers per process (LRU), and
  ``seek(0)`` after each read, which frees the decoder's buffered frames.
- Frame counts come from the container index and can be over-reported: the last
  ``end_margin`` frames are never drawn, and a frame that fails to decode is retried at
  earlier eligible frames before the video is declared broken.
- Opening a video makes decord read the whole packet index (fast: milliseconds for
  short clips, but proportional to the length of the file), so readers are cached
  rather than reopened for each frame.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections import OrderedDict, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before decord, always
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info

from sr_adapt.data.errors import DataError
from sr_adapt.data.image_io import array_to_tensor, list_images, load_image_array, show_path
from sr_adapt.data.paired import _FolderDataset, _listing, _wh
from sr_adapt.data.transforms import pyramid_factors, random_flip_transpose
from sr_adapt.io.video import (
    VIDEO_EXTENSIONS,
    VideoInfo,
    _decord_reason,
    _probe,
    frame_to_array,
    is_video_file,
    open_video_reader,
    probe_video,
    resolve_video_paths,
)

__all__ = [
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "is_video_file",
    "open_video_reader",
    "frame_to_array",
    "probe_video",
    "resolve_video_paths",
    "unpaired_sample",
    "VideoFrameDataset",
    "LRFolderDataset",
]

logger = logging.getLogger(__name__)

_VIDEO_EXT_TEXT = ", ".join(sorted(VIDEO_EXTENSIONS))
_WEIGHTINGS = ("uniform", "sqrt", "frames")
_SIGNATURE_SIZE = 8  # duplicate signatures: 8x8 block means of the luma
_LUMA = (0.299, 0.587, 0.114)  # BT.601 weights, on [0, 1] RGB
_INHERITED_READERS: list[Any] = []  # readers a forked process got from its parent: never freed

Sample = dict[str, Any]


def unpaired_sample(lr: Tensor, scale: int, name: str) -> Sample:
    """An LR-only training sample shaped like a paired one (zeros where there is no data).

    ``lr``: ``(3, p, p)``; levels for factors ``[s, s/2, ..., 2]`` are ``lr`` then zeros of
    ``(3, p*s/f, p*s/f)``; ``hr`` zeros of ``(3, p*s, p*s)``; ``paired`` False.
    """
    c, p, q = lr.shape
    if p != q:
        raise ValueError(f"unpaired_sample expects a square patch, got {tuple(lr.shape)}")
    levels = [lr] + [lr.new_zeros(c, p * scale // f, p * scale // f) for f in pyramid_factors(scale)[1:]]
    return {
        "lr": lr,
        "lr_levels": levels,
        "hr": lr.new_zeros(c, p * scale, p * scale),
        "paired": torch.tensor(False),
        "name": name,
    }


# ----------------------------------------------------------------------------------------------
# video frames


class _DecodeFailed(Exception):
    """A video failed at every fallback frame (internal)."""


class VideoFrameDataset(Dataset):
    """Random LR patches cut at native resolution from frames of real videos (no HR).

    Each sample: pick a video (``video_weighting``), a frame uniformly among its eligible
    frames, a random ``p x p`` position (p = ``patch_size // scale``), optionally a random
    flip/transpose. Sample ``name`` is ``"<video file name>#<frame index>"`` (the path as
    given when two videos share a file name).

    Args:
        paths: video files, folders (non-recursive) and globs (``**`` recursive); a single
            string is accepted. Suffixes .mp4 .mkv .webm .avi .mov, any case.
        scale, patch_size: as for the paired datasets (given by the datamodule); the LR
            patch is ``patch_size // scale``. ``patch_size_key`` names the patch size setting
            in messages (shared by all sources: ``data.patch_size``).
        length: samples per epoch (``len(dataset)``).
        time_range: ``[start_s, end_s]`` in seconds (``end_s`` may be null): only frames
            with ``index / fps`` in ``[start_s, end_s)`` are drawn, per video, clipped to it.
        stride: only frame indices that are multiples of ``stride`` are drawn.
        end_margin: the last ``end_margin`` frames are never drawn (over-reported frame
            counts); never more than half of a video's frames.
        video_weighting: probability of picking a video, from its number n of eligible
            frames: ``"uniform"`` (1), ``"sqrt"`` (sqrt(n), default: long videos get more
            samples without starving short ones) or ``"frames"`` (n: every frame equally).
        min_std, min_mean: a patch whose luma (BT.601, [0, 1]) has standard deviation
            below ``min_std`` (flat) or mean below ``min_mean`` (black) is rejected.
        dup_threshold: a patch whose 8x8 block-mean luma signature differs by less than
            this (mean absolute difference) from one of the last ``dup_history`` accepted
            patches of this process is rejected (frozen or static footage); 0 disables.
        max_reject_tries: frames drawn per sample at most; each frame offers up to
            ``crops_per_frame`` positions (cheap: no new decode). When all are rejected the
            last candidate is returned and counted in ``stats["gave_up"]``: never loops forever.
        augment: random flips / transpose.
        skip_bad: drop unusable inputs with a warning instead of raising (see below).
        config_key: prefix of this source's settings, used in messages.
        seed: None (training) or an int (reproducible samples, see below).
        max_open_readers: decord readers kept open per process (LRU), 1 or 2.

    Validation: at construction every video is opened once in this process
    (:func:`probe_video`) and closed again. Missing paths, globs matching nothing, folders
    without videos, non-video files, corrupt containers, videos without frames, frames
    smaller than the LR patch and videos with no frame in ``time_range`` raise one
    :class:`DataError` listing them all with the config key to fix; with ``skip_bad`` they
    are dropped with one warning (``skipped``, ``skipped_videos``) as long as a video is left.

    At run time a frame that fails to decode is retried at up to three earlier eligible
    frames (the reader reopened); if all fail, the video raises :class:`DataError` or, with
    ``skip_bad``, is dropped in this process (counted in ``skipped`` / ``skipped_videos``).
    ``skipped`` and ``stats`` (rejections by reason, decode errors, ...) are per process:
    each DataLoader worker counts its own.

    Randomness: sample ``index`` uses a ``random.Random`` seeded from ``(base, worker id,
    index, n)``, n being how many samples this process drew before. ``base`` is ``seed``
    or, with ``seed=None``, ``torch.initial_seed()``, which DataLoader sets per worker
    and per epoch (reproducible with Lightning's ``seed_everything(..., workers=True)``).
    The counter keeps samples fresh where that seed does not change (``num_workers=0``,
    persistent workers). So the same seed, number of workers and index order give the
    same samples; the duplicate check depends on each process's history too.
    """

    paired = False  # LR-only source (read by the datamodule)

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        scale: int,
        patch_size: int,
        length: int = 1000,
        time_range: Sequence[float | None] | None = None,
        stride: int = 1,
        end_margin: int = 8,
        video_weighting: str = "sqrt",
        min_std: float = 0.02,
        min_mean: float = 0.02,
        dup_threshold: float = 0.01,
        dup_history: int = 8,
        max_reject_tries: int = 20,
        crops_per_frame: int = 4,
        augment: bool = True,
        skip_bad: bool = False,
        config_key: str = "data.train_sources.video",
        seed: int | None = None,
        max_open_readers: int = 2,
        patch_size_key: str = "data.patch_size",
    ) -> None:
        self.config_key = config_key
        self.patch_size_key = patch_size_key
        self.skip_bad = bool(skip_bad)
        self.scale = scale
        self.patch_size = patch_size
        _FolderDataset._check_scale_patch(self, scale, patch_size)  # same rules and messages as paired sources
        self.lr_patch = patch_size // scale
        self.length = self._int("length", length, 1)
        self.stride = self._int("stride", stride, 1)
        self.end_margin = self._int("end_margin", end_margin, 0)
        self.max_reject_tries = self._int("max_reject_tries", max_reject_tries, 1)
        self.crops_per_frame = self._int("crops_per_frame", crops_per_frame, 1)
        self.dup_history = self._int("dup_history", dup_history, 1)
        self.max_open_readers = self._int("max_open_readers", max_open_readers, 1)
        self.min_std = self._float("min_std", min_std)
        self.min_mean = self._float("min_mean", min_mean)
        self.dup_threshold = self._float("dup_threshold", dup_threshold)
        if video_weighting not in _WEIGHTINGS:
            raise DataError(
                f"{self._key('video_weighting')}: unknown weighting {video_weighting!r}; use one of {', '.join(_WEIGHTINGS)}."
            )
        self.video_weighting = video_weighting
        self.time_range = self._check_time_range(time_range)
        self.augment = augment
        self.seed = seed

        files, path_problems = resolve_video_paths(paths, self._key("paths"))
        problems: dict[str, list[str]] = {kind: [] for kind in _VIDEO_FIXES}
        problems["paths"] = [text for _, text in path_problems]
        kept: list[tuple[Path, VideoInfo, range]] = []
        for f in files:
            info = _probe(f)
            if isinstance(info, str):
                problems["unreadable"].append(f"{show_path(f)}: {info}")
                continue
            p = self.lr_patch
            if info.height < p or info.width < p:
                problems["small"].append(f"{show_path(f)}: frames are {info.width}x{info.height} (WxH), smaller than {p}x{p}")
                continue
            frames = self._eligible(info)
            if isinstance(frames, str):
                problems["range"].append(f"{show_path(f)}: {frames}")
                continue
            kept.append((f, info, frames))
        n_problems = sum(len(v) for v in problems.values())
        self.skipped_videos: list[str] = [t for v in problems.values() for t in v]
        self.skipped = n_problems  # inputs dropped (construction, then decode failures in this process)
        if n_problems:
            self._report(problems, n_problems, usable=len(kept))

        self.videos = [k[0] for k in kept]
        self.infos = [k[1] for k in kept]
        self.frame_ranges = [k[2] for k in kept]  # eligible frame indices per video
        self.names = self._display_names(self.videos)
        n = np.array([len(r) for r in self.frame_ranges], dtype=np.float64)
        w = {"uniform": np.ones_like(n), "sqrt": np.sqrt(n), "frames": n}[video_weighting]
        self.weights = (w / w.sum()).tolist()  # probability of each video
        self.stats: dict[str, int] = dict.fromkeys(
            ("samples", "frames_decoded", "flat", "dark", "duplicate", "small_frame", "gave_up", "decode_errors"), 0
        )
        self._bad: set[int] = set()  # videos that failed to decode in this process
        self._recent: deque[np.ndarray] = deque(maxlen=self.dup_history)
        self._draws = 0
        self._readers: OrderedDict[int, Any] = OrderedDict()
        self._readers_pid: int | None = None

    # ---- settings and validation ----

    def _key(self, name: str) -> str:
        return f"{self.config_key}.{name}" if self.config_key else name

    def _int(self, name: str, value: Any, low: int) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise DataError(f"{self._key(name)}: must be an integer >= {low}, got {value!r}.")
        return int(value)

    def _float(self, name: str, value: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = math.nan
        if not math.isfinite(v) or v < 0:
            raise DataError(f"{self._key(name)}: must be a number >= 0, got {value!r}.")
        return v

    def _check_time_range(self, time_range: Any) -> tuple[float, float | None] | None:
        if time_range is None:
            return None
        key = self._key("time_range")
        try:
            start, end = time_range
            start = 0.0 if start is None else float(start)
            end = None if end is None else float(end)
        except (TypeError, ValueError):
            raise DataError(f"{key}: expected [start_s, end_s] in seconds (end_s may be null), got {time_range!r}.") from None
        if not math.isfinite(start) or start < 0 or (end is not None and not end > start):
            raise DataError(f"{key}: need 0 <= start_s < end_s, got {time_range!r}.")
        return start, end

    def _eligible(self, info: VideoInfo) -> range | str:
        """Eligible frame indices of a video, or why there are none."""
        n = info.frames
        stop = n - min(self.end_margin, n // 2)
        start = 0
        if self.time_range is not None:
            if info.fps <= 0:
                return f"unknown frame rate, {self._key('time_range')} cannot be applied"
            t0, t1 = self.time_range
            start = math.ceil(t0 * info.fps - 1e-6)
            if t1 is not None:
                stop = min(stop, math.ceil(t1 * info.fps - 1e-6))
        first = -(-start // self.stride) * self.stride
        frames = range(first, stop, self.stride)
        if len(frames) == 0:
            dur = f"{info.duration:.2f} s" if info.fps > 0 else "unknown duration"
            return (
                f"no eligible frame ({n} frames, {dur}, time_range={self.time_range}, stride={self.stride}, "
                f"end_margin={self.end_margin})"
            )
        return frames

    def _report(self, problems: dict[str, list[str]], n_problems: int, usable: int) -> None:
        parts = [f"{self._key('paths')}: {n_problems} video input(s) cannot be used ({usable} usable)."]
        fmt = {"k": self.config_key, "p": self.lr_patch, "ext": _VIDEO_EXT_TEXT, "patch_key": self.patch_size_key}
        for kind, header in _VIDEO_FIXES.items():
            if problems[kind]:
                parts.append(f"{header.format(**fmt)}, {len(problems[kind])}:")
                parts.append(_listing(problems[kind]))
        if not self.skip_bad:
            parts.append(f"Or set {self._key('skip_bad')}=true to drop unusable videos with a warning.")
            raise DataError("\n".join(parts))
        if usable == 0:
            raise DataError("\n".join([*parts, "No usable video is left; fix the inputs above."]))
        logger.warning("%s\nDropped %d input(s) (%s=true).", "\n".join(parts), n_problems, self._key("skip_bad"))

    @staticmethod
    def _display_names(videos: list[Path]) -> list[str]:
        counts: dict[str, int] = {}
        for v in videos:
            counts[v.name] = counts.get(v.name, 0) + 1
        return [v.name if counts[v.name] == 1 else str(v) for v in videos]

    def summary(self) -> str:
        """Human-readable description: videos, eligible frames, weights, skipped inputs, stats."""
        lines = [f"{self.config_key}: {len(self.videos)} video(s), LR patch {self.lr_patch}x{self.lr_patch}"]
        for name, info, fr, w in zip(self.names, self.infos, self.frame_ranges, self.weights):
            lines.append(
                f"  {name}: {info.frames} frames @ {info.fps:.2f} fps, {info.width}x{info.height}, "
                f"{len(fr)} eligible [{fr.start}:{fr.stop}:{fr.step}], p={w:.3f}"
            )
        if self.skipped_videos:
            lines.append(f"  skipped {self.skipped}:")
            lines.append(_listing(self.skipped_videos))
        lines.append(f"  stats (this process): {self.stats}")
        return "\n".join(lines)

    # ---- pickling: never carry open readers ----

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = OrderedDict()
        state["_readers_pid"] = None
        return state

    def __len__(self) -> int:
        return self.length

    # ---- decoding ----

    def _reader(self, vid: int):
        if self._readers_pid != os.getpid():
            # Readers inherited through fork must be neither used (shared file offsets) nor freed:
            # decord's destructor joins its decoding thread, which does not exist in the child,
            # and the worker aborts (std::system_error). They are parked here for good.
            _INHERITED_READERS.extend(self._readers.values())
            self._readers = OrderedDict()
            self._readers_pid = os.getpid()
        vr = self._readers.get(vid)
        if vr is not None:
            self._readers.move_to_end(vid)
            return vr
        while len(self._readers) >= self.max_open_readers:
            self._readers.popitem(last=False)  # closes the least recently used reader
        vr = open_video_reader(self.videos[vid])
        self._readers[vid] = vr
        return vr

    def _read_frame(self, vid: int, pos: int) -> tuple[np.ndarray, int]:
        """Decode eligible frame number ``pos`` of video ``vid``; on failure retry earlier ones.

        Returns ``(frame (H, W, 3) uint8, frame index)``; raises :class:`_DecodeFailed`.
        """
        fr = self.frame_ranges[vid]
        back = max(1, -(-max(self.end_margin, 1) // fr.step))  # ~end_margin frames, in eligible steps
        tries = list(dict.fromkeys([pos, max(0, pos - back), max(0, pos - 4 * back), 0]))
        errors = []
        for k in tries:
            idx = fr[k]
            try:
                vr = self._reader(vid)
                arr = frame_to_array(vr[idx])
                vr.seek(0)  # release buffered frames; random access seeks anyway
            except Exception as e:  # noqa: BLE001 - decord raises RuntimeError, DECORDError, IndexError ...
                self._readers.pop(vid, None)  # reopen for the next try: the decoder state may be broken
                self.stats["decode_errors"] += 1
                errors.append(f"frame {idx}: {_decord_reason(e)}")
                continue
            self.stats["frames_decoded"] += 1
            if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
                errors.append(f"frame {idx}: unexpected decoded array {arr.dtype} {arr.shape}")
                continue
            return arr, idx
        raise _DecodeFailed("; ".join(errors))

    def _video_failed(self, vid: int, reason: str) -> None:
        path = self.videos[vid]
        msg = (
            f"{self._key('paths')}: video {show_path(path)} fails to decode ({reason}). Re-encode or replace it "
            f"(e.g. ffmpeg -i in -c:v libx264 out.mp4) or remove it from {self._key('paths')}"
        )
        if not self.skip_bad:
            raise DataError(f"{msg}, or set {self._key('skip_bad')}=true to skip it with a warning.")
        self._bad.add(vid)
        self._readers.pop(vid, None)
        self.skipped += 1
        self.skipped_videos.append(f"{path}: decode failed at run time ({reason})")
        logger.warning("%s; skipping it in this process.", msg)

    # ---- sampling ----

    def _rng(self, index: int) -> random.Random:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        base = self.seed if self.seed is not None else torch.initial_seed()
        rng = random.Random(f"{base}:{worker}:{index}:{self._draws}")  # str seeds hash stably (sha512)
        self._draws += 1
        return rng

    def _pick_video(self, rng: random.Random) -> int:
        if not self._bad:
            return rng.choices(range(len(self.videos)), weights=self.weights)[0]
        good = [i for i in range(len(self.videos)) if i not in self._bad]
        if not good:
            raise DataError(
                f"{self._key('paths')}: every video failed to decode in this process; see the warnings above."
            )
        return rng.choices(good, weights=[self.weights[i] for i in good])[0]

    def _judge(self, patch: np.ndarray) -> tuple[str | None, np.ndarray | None]:
        """Rejection reason (or None) and the duplicate signature of an (p, p, 3) uint8 patch."""
        rgb = patch.astype(np.float32) * (1.0 / 255.0)
        luma = rgb[..., 0] * _LUMA[0] + rgb[..., 1] * _LUMA[1] + rgb[..., 2] * _LUMA[2]
        if float(luma.mean()) < self.min_mean:
            return "dark", None
        if float(luma.std()) < self.min_std:
            return "flat", None
        if self.dup_threshold <= 0:
            return None, None
        k = min(_SIGNATURE_SIZE, luma.shape[0], luma.shape[1])
        sig = F.adaptive_avg_pool2d(torch.from_numpy(luma)[None, None], k)[0, 0].numpy()
        for old in self._recent:
            if old.shape == sig.shape and float(np.abs(old - sig).mean()) < self.dup_threshold:
                return "duplicate", sig
        return None, sig

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        rng = self._rng(index)
        p = self.lr_patch
        last: tuple[np.ndarray, str, np.ndarray | None] | None = None
        accepted = False
        for _ in range(self.max_reject_tries):
            vid = self._pick_video(rng)
            fr = self.frame_ranges[vid]
            try:
                frame, idx = self._read_frame(vid, rng.randrange(len(fr)))
            except _DecodeFailed as e:
                self._video_failed(vid, str(e))
                continue
            h, w = frame.shape[:2]
            if h < p or w < p:  # resolution changed mid-stream
                self.stats["small_frame"] += 1
                continue
            name = f"{self.names[vid]}#{idx}"
            for _ in range(self.crops_per_frame):
                y, x = rng.randrange(h - p + 1), rng.randrange(w - p + 1)
                patch = frame[y : y + p, x : x + p]
                reason, sig = self._judge(patch)
                last = (patch, name, sig)
                if reason is None:
                    accepted = True
                    break
                self.stats[reason] += 1
            if accepted:
                break
        if last is None:
            raise DataError(
                f"{self._key('paths')}: no frame of at least {p}x{p} pixels could be decoded in "
                f"{self.max_reject_tries} tries; check the videos (stats: {self.stats})."
            )
        if not accepted:
            self.stats["gave_up"] += 1
        patch, name, sig = last
        if sig is not None:
            self._recent.append(sig)
        self.stats["samples"] += 1
        lr = array_to_tensor(patch)
        if self.augment:
            (lr,) = random_flip_transpose([lr], rng)
        return unpaired_sample(lr, self.scale, name)


# Headers and advice per construction problem; "{k}" is the config key prefix.
_VIDEO_FIXES = {
    "paths": (
        "Entries of {k}.paths that yield no video (fix them: accepted suffixes {ext}, any case; folders are "
        "searched without subfolders, use a '**' glob such as clips/**/*.mp4 to recurse)"
    ),
    "unreadable": (
        "Unreadable videos: not a video, corrupt/truncated container or no frames (re-download or re-encode "
        "them, e.g. ffmpeg -i in.mp4 -c:v libx264 out.mp4, or remove them from {k}.paths)"
    ),
    "small": (
        "Videos with frames smaller than the LR patch {p}x{p} = {patch_key} / scale (lower {patch_key} or "
        "remove them from {k}.paths)"
    ),
    "range": "Videos with no frame to draw (widen {k}.time_range, lower {k}.stride or {k}.end_margin, or remove them)",
}


# ----------------------------------------------------------------------------------------------
# LR-only image folders


class LRFolderDataset(_FolderDataset):
    """Random LR patches from a folder of real low-resolution images without HR.

    Same sample format as :class:`VideoFrameDataset` (``name`` is the file stem), same
    file handling, randomness and ``skip_bad`` behaviour as the paired folder datasets
    (:mod:`sr_adapt.data.paired`): images smaller than the LR patch ``patch_size // scale``
    or with unreadable headers are reported at construction; ``len`` is the number of
    images times ``repeat``. ``cache=True`` decodes all images at construction.
    """

    paired = False  # LR-only source (read by the datamodule)

    def __init__(
        self,
        lr_dir: str | os.PathLike,
        scale: int,
        patch_size: int,
        augment: bool = True,
        repeat: int = 1,
        skip_bad: bool = False,
        config_key: str = "data.train_sources.lr_folder",
        seed: int | None = None,
        cache: bool = False,
        patch_size_key: str = "data.patch_size",
    ) -> None:
        super().__init__(config_key, skip_bad, seed, repeat, patch_size_key)
        self._check_scale_patch(scale, patch_size)
        self.scale = scale
        self.patch_size = patch_size
        self.lr_patch = patch_size // scale
        self.augment = augment
        self.lr_dir = Path(lr_dir).expanduser()

        files = list_images(self.lr_dir, self._key("lr_dir"))
        p = self.lr_patch

        def too_small(h: int, w: int) -> str | None:
            return f"smaller than the LR patch {p}x{p}" if h < p or w < p else None

        self.lr_files, self._cache = self._prepare_files(
            files, self.lr_dir, too_small, cache, patch=f"{patch_size} (LR patch {p})"
        )

    def _make_sample(self, item: int, rng: random.Random) -> Sample:
        arr = self._cache[item] if self._cache is not None else load_image_array(self.lr_files[item])
        p = self.lr_patch
        h, w = arr.shape[:2]
        if h < p or w < p:  # header and pixels disagree (rare); treated like an unreadable file
            raise DataError(f"image {self.lr_files[item]} decodes to {_wh((h, w))} (WxH), smaller than {p}x{p}.")
        y, x = rng.randrange(h - p + 1), rng.randrange(w - p + 1)
        lr = array_to_tensor(arr[y : y + p, x : x + p])
        if self.augment:
            (lr,) = random_flip_transpose([lr], rng)
        return unpaired_sample(lr, self.scale, self.lr_files[item].stem)
