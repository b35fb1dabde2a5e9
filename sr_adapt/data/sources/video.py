"""LR-only training source: random patches from frames of real videos (no HR), decoded with decord."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sr_adapt.data.patch_filter import PatchFilter
from sr_adapt.data.samples import Sample, unpaired_sample
from sr_adapt.data.sources.base import Problem, Source, listing
from sr_adapt.data.transforms import random_flip_transpose
from sr_adapt.data.video_readers import DecodeFailed, ReaderPool
from sr_adapt.errors import DataError
from sr_adapt.io.atomic import show_path
from sr_adapt.io.images import array_to_tensor
from sr_adapt.io.video import (VIDEO_EXTENSIONS, END_MARGIN, VideoInfo, drawable_frames, probe_reason, read_frames,
                               resolve_video_paths)

__all__ = ["VideoFrameDataset"]

logger = logging.getLogger(__name__)

_WEIGHTINGS = ("uniform", "sqrt", "frames")

# Headers and advice per construction problem; "{k}" is the config key prefix.
_FIXES = {
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


CUT_DISTANCE = 0.5  # L1 distance of normalised colour histograms (0..2) between samples 0.5 s apart: a cut


def _histogram(frames: torch.Tensor, bins: int = 8) -> torch.Tensor:
    """(N, 3, H, W) in [0,1] -> (N, bins**3) normalised joint colour histograms."""
    q = (frames.clamp(0, 1) * (bins - 1e-6)).long()
    idx = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    hist = torch.zeros(frames.shape[0], bins**3)
    hist.scatter_add_(1, idx.flatten(1), torch.ones_like(idx.flatten(1), dtype=torch.float32))
    return hist / hist.sum(1, keepdim=True)


def shot_cuts(path: Path, frames: range, fps: float, config_key: str, every_s: float = 0.5) -> list[float]:
    """Times (s) where the colour histogram of the eligible ``frames`` jumps between samples
    ``every_s`` apart: scene cuts. Frames are read at a quarter of their size."""
    step = max(1, round(every_s * (fps or 25.0) / frames.step))
    picks = [frames[i] for i in range(0, len(frames), step)]
    if len(picks) < 2:
        return []
    hists = []
    for start in range(0, len(picks), 32):
        batch = read_frames(path, indices=picks[start : start + 32], config_key=config_key)
        hists.append(_histogram(batch[..., ::4, ::4]))
    h = torch.cat(hists)
    dist = (h[1:] - h[:-1]).abs().sum(1)
    return [picks[i + 1] / (fps or 25.0) for i in torch.nonzero(dist > CUT_DISTANCE).flatten().tolist()]


class VideoFrameDataset(Source):
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
        held_out: a fraction in [0, 1): the last part of every video is never drawn (and not
            estimated from): frames the adaptation monitor can show unseen, whatever the clip's length.
        end_margin: the last ``end_margin`` frames are never drawn (over-reported frame
            counts); never more than half of a video's frames (:func:`~sr_adapt.io.video.drawable_frames`).
        video_weighting: probability of picking a video, from its number n of eligible
            frames: ``"uniform"`` (1), ``"sqrt"`` (sqrt(n), default: long videos get more
            samples without starving short ones) or ``"frames"`` (n: every frame equally).
        min_std, min_mean, dup_threshold, dup_history: patch rejection
            (:class:`~sr_adapt.data.patch_filter.PatchFilter`): flat, black, near-duplicate.
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

    Randomness: :meth:`~sr_adapt.data.sources.base.Source.draw`. The duplicate check compares
    with the patches accepted since :meth:`new_batch` (training batches call it when they start,
    so a batch does not depend on what a worker drew before).
    """

    paired = False

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        scale: int,
        patch_size: int,
        length: int = 1000,
        time_range: Sequence[float | None] | None = None,
        stride: int = 1,
        held_out: float = 0.0,
        end_margin: int = END_MARGIN,
        video_weighting: str = "sqrt",
        min_std: float = 0.02,
        min_mean: float = 0.02,
        dup_threshold: float = 0.01,
        dup_history: int = 8,
        max_reject_tries: int = 20,
        crops_per_frame: int = 4,
        augment: bool = True,
        skip_bad: bool = False,
        config_key: str | None = None,
        seed: int | None = None,
        max_open_readers: int = 2,
        patch_size_key: str = "data.patch_size",
        lr_factors: Sequence[int] | None = None,
    ) -> None:
        super().__init__(config_key, skip_bad, seed, patch_size_key)
        self.scale = scale
        self.patch_size = patch_size
        self.check_scale_patch(scale, patch_size, lr_factors)  # same rules and messages as the paired sources
        self.lr_patch = patch_size // scale
        self.length = self.check_int("length", length, 1)
        self.stride = self.check_int("stride", stride, 1)
        self.end_margin = self.check_int("end_margin", end_margin, 0)
        self.max_reject_tries = self.check_int("max_reject_tries", max_reject_tries, 1)
        self.crops_per_frame = self.check_int("crops_per_frame", crops_per_frame, 1)
        self.filter = PatchFilter(
            self.check_float("min_std", min_std), self.check_float("min_mean", min_mean),
            self.check_float("dup_threshold", dup_threshold), self.check_int("dup_history", dup_history, 1),
        )
        if video_weighting not in _WEIGHTINGS:
            raise DataError(
                f"{self.key('video_weighting')}: unknown weighting {video_weighting!r}; use one of {', '.join(_WEIGHTINGS)}."
            )
        self.video_weighting = video_weighting
        self.time_range = self._check_time_range(time_range)
        self.held_out = self.check_float("held_out", held_out)
        if self.held_out >= 1:
            raise DataError(f"{self.key('held_out')}={held_out}: a fraction of each video below 1 (0.2: its last fifth)")
        self.augment = augment

        files, path_problems = resolve_video_paths(paths, self.key("paths"))
        problems = [Problem(entry, "paths", text) for entry, text in path_problems]
        kept: list[tuple[Path, VideoInfo, range]] = []
        for f in files:
            info = probe_reason(f)
            p = self.lr_patch
            if isinstance(info, str):
                problems.append(Problem(f, "unreadable", f"{show_path(f)}: {info}"))
            elif info.height < p or info.width < p:
                problems.append(Problem(f, "small", f"{show_path(f)}: frames are {info.width}x{info.height} (WxH), smaller than {p}x{p}"))
            else:
                frames = self._eligible(info)
                if isinstance(frames, str):
                    problems.append(Problem(f, "range", f"{show_path(f)}: {frames}"))
                else:
                    kept.append((f, info, frames))
        self.skipped_videos: list[str] = [p.text for p in problems]
        self.skipped = len(problems)  # inputs dropped (construction, then decode failures in this process)
        self.report_problems(
            problems, len(problems) + len(kept), self.key("paths"), _FIXES, what="videos",
            p=self.lr_patch, ext=", ".join(sorted(VIDEO_EXTENSIONS)),
        )

        self.videos = [k[0] for k in kept]
        self.infos = [k[1] for k in kept]
        self.frame_ranges = [k[2] for k in kept]  # eligible frame indices per video
        self.names = self._display_names(self.videos)
        n = np.array([len(r) for r in self.frame_ranges], dtype=np.float64)
        w = {"uniform": np.ones_like(n), "sqrt": np.sqrt(n), "frames": n}[video_weighting]
        self.weights = (w / w.sum()).tolist()  # probability of each video
        self.readers = ReaderPool(self.videos, self.check_int("max_open_readers", max_open_readers, 1))
        self.stats: dict[str, int] = dict.fromkeys(("samples", "flat", "dark", "duplicate", "small_frame", "gave_up"), 0)

    # ---- settings and validation ----

    def _check_time_range(self, time_range: Any) -> tuple[float, float | None] | None:
        if time_range is None:
            return None
        key = self.key("time_range")
        try:
            start, end = time_range
            start = 0.0 if start is None else float(start)
            end = None if end is None else float(end)
        except (TypeError, ValueError):
            raise DataError(f"{key}: expected [start_s, end_s] in seconds (end_s may be null), got {time_range!r}.") from None
        if not np.isfinite(start) or start < 0 or (end is not None and not end > start):
            raise DataError(f"{key}: need 0 <= start_s < end_s, got {time_range!r}.")
        return start, end

    def _eligible(self, info: VideoInfo) -> range | str:
        """Eligible frame indices of a video, or why there are none."""
        try:
            frames = drawable_frames(info, self.end_margin, self.time_range, self.stride, self.held_out)
        except ValueError:
            return f"unknown frame rate, {self.key('time_range')} cannot be applied"
        if len(frames) == 0:
            dur = f"{info.duration:.2f} s" if info.fps > 0 else "unknown duration"
            return (
                f"no eligible frame ({info.frames} frames, {dur}, time_range={self.time_range}, stride={self.stride}, "
                f"held_out={self.held_out:g}, end_margin={self.end_margin})"
            )
        return frames

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
            lines.append(listing(self.skipped_videos))
        lines.append(f"  stats (this process): {self.stats | self.readers.stats}")
        return "\n".join(lines)

    def __len__(self) -> int:
        return self.length

    def estimation_images(self, n: int = 16) -> list[tuple[str, torch.Tensor]]:
        """Whole frames (3, H, W) in [0,1] for estimating the clips' degradation: ``n`` in all,
        spread evenly over each video's eligible frames. Named ``<clip>@shot<k>#<frame>``: a clip's
        scene cuts (:func:`shot_cuts`) split it into shots, so that the estimate can be checked
        shot by shot (:func:`sr_adapt.training.target_degradation.estimate_for_run`)."""
        per = max(1, -(-n // len(self.videos)))
        out = []
        for vid, path in enumerate(self.videos):
            fr = self.frame_ranges[vid]
            fps = self.infos[vid].fps or 25.0
            cuts = [round(t * fps) for t in shot_cuts(path, fr, fps, self.key("paths"))]
            picks = sorted({fr[int(i)] for i in np.linspace(0, len(fr) - 1, per + 2)[1:-1].round()})
            frames = read_frames(path, indices=picks, config_key=self.key("paths"))
            for i, f in zip(picks, frames):
                shot = sum(i >= c for c in cuts)
                out.append((f"{self.names[vid]}@shot{shot}#{i}", f))
            if cuts:
                logger.info("%s: %d scene cuts (at %s s): the estimate is checked shot by shot", self.names[vid], len(cuts),
                         ", ".join(f"{c / fps:.2f}" for c in cuts[:8]))
        return out

    # ---- sampling ----

    def _read_frame(self, vid: int, pos: int) -> tuple[np.ndarray, int]:
        fr = self.frame_ranges[vid]
        back = max(1, -(-max(self.end_margin, 1) // fr.step))  # ~end_margin frames, in eligible steps
        return self.readers.read(vid, fr, pos, back)

    def new_batch(self) -> None:
        """The duplicate check starts afresh (called at the start of each training batch)."""
        self.filter.forget()

    def draw(self, index: int, rng: random.Random) -> Sample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of length {self.length}")
        p = self.lr_patch
        last: tuple[np.ndarray, str, np.ndarray | None] | None = None
        accepted = False
        for _ in range(self.max_reject_tries):
            vid = self.pick(rng, len(self.videos), self.weights)
            try:
                frame, idx = self._read_frame(vid, rng.randrange(len(self.frame_ranges[vid])))
            except DecodeFailed as e:
                self.readers.close(vid)
                self.skipped_videos.append(f"{self.videos[vid]}: decode failed at run time ({e})")
                self.drop_item(
                    vid,
                    f"{self.key('paths')}: video {show_path(self.videos[vid])} fails to decode ({e}). Re-encode or "
                    f"replace it (e.g. ffmpeg -i in -c:v libx264 out.mp4) or remove it from {self.key('paths')}.",
                )
                continue
            h, w = frame.shape[:2]
            if h < p or w < p:  # resolution changed mid-stream
                self.stats["small_frame"] += 1
                continue
            name = f"{self.names[vid]}#{idx}"
            for _ in range(self.crops_per_frame):
                y, x = rng.randrange(h - p + 1), rng.randrange(w - p + 1)
                patch = frame[y : y + p, x : x + p]
                reason, sig = self.filter.judge(patch)
                last = (patch, name, sig)
                if reason is None:
                    accepted = True
                    break
                self.stats[reason] += 1
            if accepted:
                break
        if last is None:
            raise DataError(
                f"{self.key('paths')}: no frame of at least {p}x{p} pixels could be decoded in "
                f"{self.max_reject_tries} tries; check the videos (stats: {self.stats | self.readers.stats})."
            )
        if not accepted:
            self.stats["gave_up"] += 1
        patch, name, sig = last
        self.filter.accept(sig)
        self.stats["samples"] += 1
        lr = array_to_tensor(patch)
        if self.augment:
            (lr,) = random_flip_transpose([lr], rng)
        return unpaired_sample(lr, self.factors, name)
