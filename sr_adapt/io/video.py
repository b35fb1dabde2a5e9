"""Reading frames from video files (decord), for monitoring and inference."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch  # noqa: F401  (torch before decord: decord's bridge expects it loaded)
from torch import Tensor

from sr_adapt.data.errors import DataError


def read_frames(path: str | Path, indices: Sequence[int] | None = None, times: Sequence[float] | None = None,
                config_key: str = "video") -> Tensor:
    """Decodes the given frames at native size: (N, 3, H, W) float32 RGB in [0, 1].

    Frames are chosen by ``indices`` or by ``times`` (seconds, clipped to the video);
    out-of-range indices are clipped to a safe range (frame counts can be over-reported).
    """
    from sr_adapt.data.video import open_video_reader

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{config_key}: video {path} does not exist")
    try:
        reader = open_video_reader(path)
        n = len(reader)
        fps = float(reader.get_avg_fps()) or 25.0
        if n == 0:
            raise DataError(f"{config_key}: video {path} has no frames")
        last = max(n - 1 - min(8, n // 10), 0)  # margin from the (possibly over-reported) end
        if times is not None:
            indices = [int(round(t * fps)) for t in times]
        idx = [min(max(int(i), 0), last) for i in (indices if indices is not None else [0])]
        frames = reader.get_batch(idx).asnumpy()
        reader.seek(0)
    except DataError:
        raise
    except Exception as exc:  # decord raises its own error types for corrupt containers
        raise DataError(f"{config_key}: cannot decode video {path} ({type(exc).__name__}: {exc})") from None
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
