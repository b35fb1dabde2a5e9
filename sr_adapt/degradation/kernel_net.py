"""The learned free-form kernel estimate: a small CNN that reads the downscaling kernel off LR images.

Trained once (``python scripts/train_kernel_estimator.py``, :mod:`sr_adapt.training.kernel_estimator`)
on clean HR photos degraded by random kernels of a broad family (:func:`~.kernel_family.random_kernel`:
anisotropic Gaussians with multiplicative noise, bicubic after a blur, motion lines, defocus disks),
with 8-bit rounding and sometimes noise; the loss is what the kernel does, not its pixels: the L1
distance between the training patch downscaled by the estimated and by the true kernel (the quantity
DualSR scores kernel estimates by). At run time it needs only the LR images: the luma of each image is
normalised, passed through the convolutions, and their features are pooled over every pixel of every
image given (the frames of a shot share one kernel). Beside them the head gets directional statistics
(:func:`directional_stats`: the mean squared difference at lags 1 and 2 along eight directions, at the
image's scale and at half of it): pooled CNN features alone gave isotropic kernels (the content's own
orientation hides the blur's), while these cross-scale, per-direction numbers carry the anisotropy
(a quadratic fit of them alone predicts the covariance's anisotropy on Set5/Set14 DIV2KRK draws with a
correlation of 0.8). The head returns the kernel
(non-negative part through a softmax, plus a small signed part so that bicubic's negative lobes can be
expressed), normalised to sum 1, on :func:`~.kernel_family.kernel_grid`.

The shipped weights (``sr_adapt/assets/weights/kernel_estimator_x4.pt``) are for x4; other scales use
the cross-scale parametric estimate (:mod:`.estimate`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sr_adapt.degradation.kernel_family import kernel_grid
from sr_adapt.errors import CheckpointError, ConfigError
from sr_adapt.ops.color import rgb_to_y

__all__ = ["KernelEstimator", "load_kernel_estimator", "shipped_estimator_path", "FORMAT"]

FORMAT = "sr_adapt.kernel_estimator/2"  # /2: the head also reads directional statistics
SIGNED_PART = 0.02  # bound of the signed part per pixel, times 1/K: room for bicubic's lobes, not more
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "weights"


_DIHEDRAL = [(h, v, t) for t in (False, True) for v in (False, True) for h in (False, True)]
MAX_PIXELS = 1 << 18  # LR pixels an estimate reads at most (16 frames: 128 x 128 each)


def _centre(y: Tensor, side: int) -> Tensor:
    h, w = y.shape[-2:]
    y0, x0 = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return y[..., y0 : y0 + side, x0 : x0 + side]


def _transform(x: Tensor, flags: tuple[bool, bool, bool], inverse: bool = False) -> Tensor:
    """Flip (width, height) then transpose the last two dims of ``x``; ``inverse`` undoes it."""
    h, v, t = flags
    if inverse and t:
        x = x.transpose(-1, -2)
    if h:
        x = x.flip(-1)
    if v:
        x = x.flip(-2)
    if not inverse and t:
        x = x.transpose(-1, -2)
    return x


def shipped_estimator_path(scale: int) -> Path:
    return ASSETS / f"kernel_estimator_x{int(scale)}.pt"


# (dy, dx) of the eight directions: 0, 26.6, 45, 63.4, 90, 116.6, 135, 153.4 degrees
DIRECTIONS = ((0, 1), (1, 2), (1, 1), (2, 1), (1, 0), (2, -1), (1, -1), (1, -2))
N_STATS = 4 * (len(DIRECTIONS) + 1)


def _square_differences(y: Tensor) -> Tensor:
    """(B, 1, h, w) -> (B, 32): mean squared difference at lags 1 and 2 along :data:`DIRECTIONS`, at the
    image's scale and after 2x2 averaging (not yet logged: pooled over images first)."""
    out = []
    for z in (y, torch.nn.functional.avg_pool2d(y, 2)):
        h, w = z.shape[-2:]
        for lag in (1, 2):
            for dy, dx in DIRECTIONS:
                dy, dx = dy * lag, dx * lag
                a = z[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)]
                b = z[..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]
                out.append((a - b).pow(2).mean(dim=(-1, -2, -3)))
    return torch.stack(out, 1)


def directional_stats(square_differences: Tensor) -> Tensor:
    """(B, 32) pooled squared differences -> (B, 36) features: per group of eight directions the logs
    less their mean (the anisotropy), and the mean (the width)."""
    logs = square_differences.clamp(min=1e-8).log().view(-1, 4, len(DIRECTIONS))
    mean = logs.mean(-1, keepdim=True)
    return torch.cat([logs - mean, mean], -1).flatten(1)


class KernelEstimator(nn.Module):
    """LR luma (B, 1, h, w) in [0,1] -> kernels (B, K, K), K = :func:`kernel_grid` (scale), each summing to 1.

    Args:
        scale: the downscaling factor the kernels are for.
        channels, depth: width and number of the 3x3 convolutions (receptive field 2*depth+1 LR px).
        hidden: width of the head.
    """

    def __init__(self, scale: int = 4, channels: int = 48, depth: int = 7, hidden: int = 256) -> None:
        super().__init__()
        self.scale, self.channels, self.depth, self.hidden = int(scale), int(channels), int(depth), int(hidden)
        self.grid = kernel_grid(self.scale)
        layers: list[nn.Module] = [nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 1):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(2 * channels + N_STATS, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, 2 * self.grid * self.grid))

    def config(self) -> dict[str, int]:
        return {"scale": self.scale, "channels": self.channels, "depth": self.depth, "hidden": self.hidden}

    @staticmethod
    def normalised(y: Tensor) -> Tensor:
        """Each image's luma (B, 1, h, w) to zero mean, unit std."""
        y = y - y.mean(dim=(-1, -2), keepdim=True)
        return y / y.flatten(1).std(1).clamp(min=1e-3).view(-1, 1, 1, 1)

    def features(self, y: Tensor) -> Tensor:
        """(B, 1, h, w) luma -> (B, 2C + 36): the feature maps' mean and root mean square over the pixels,
        and the directional statistics."""
        y = self.normalised(y)
        maps = self.body(y)
        return torch.cat([maps.mean(dim=(-1, -2)), maps.pow(2).mean(dim=(-1, -2)).sqrt(),
                          directional_stats(_square_differences(y))], 1)

    def logits(self, features: Tensor) -> Tensor:
        """(B, 2C + 36) features -> (B, 2, K, K): the kernel's softmax logits and its signed part."""
        return self.head(features).view(-1, 2, self.grid, self.grid)

    def kernel(self, logits: Tensor) -> Tensor:
        """(B, 2, K, K) logits -> (B, K, K) kernels summing to 1."""
        b = logits.shape[0]
        k = torch.softmax(logits[:, 0].reshape(b, -1), 1) + SIGNED_PART * torch.tanh(logits[:, 1].reshape(b, -1)) / self.grid
        k = k / k.sum(1, keepdim=True)
        return k.view(-1, self.grid, self.grid)

    def forward(self, y: Tensor) -> Tensor:
        return self.kernel(self.logits(self.features(y)))

    @torch.no_grad()
    def estimate(self, images: Sequence[Tensor], ensemble: bool = True, max_pixels: int = MAX_PIXELS) -> Tensor:
        """One kernel (K, K) for LR images (3, H, W) in [0,1] that share it: features pooled over all
        their pixels (each image weighted by its pixel count). ``ensemble``: the mean of the kernels
        estimated from the eight flips/transpositions of the images, each turned back (a kernel flips
        with the image about its centre, which our grid keeps). ``max_pixels`` bounds the time: each
        image is centre-cropped to its share of that many pixels (a square of at least 64 px)."""
        self.eval()
        side = max(64, int(math.sqrt(max_pixels / max(len(images), 1))))
        lumas = [_centre(rgb_to_y(img[None].float()), side) for img in images]
        total = None
        for t in _DIHEDRAL if ensemble else _DIHEDRAL[:1]:
            mean, square, diffs, n_all = 0.0, 0.0, 0.0, 0
            for y in lumas:
                y = self.normalised(_transform(y, t))
                maps = self.body(y)
                n = maps.shape[-1] * maps.shape[-2]
                mean = mean + maps.mean(dim=(-1, -2)) * n
                square = square + maps.pow(2).mean(dim=(-1, -2)) * n
                diffs = diffs + _square_differences(y) * n
                n_all += n
            feats = torch.cat([mean / n_all, (square / n_all).sqrt(), directional_stats(diffs / n_all)], 1)
            kernel = self.kernel(self.logits(feats))[0]
            back = _transform(kernel, t, inverse=True)
            total = back if total is None else total + back
        return total / total.sum()

    def state(self) -> dict[str, Any]:
        return {"format": FORMAT, "config": self.config(), "state_dict": self.state_dict()}


def load_kernel_estimator(scale: int, path: str | os.PathLike | None = None,
                          key: str = "degradation_estimate.method") -> KernelEstimator:
    """The trained estimator for ``scale``: ``path``, or the one shipped in the package.

    Raises:
        ConfigError: naming ``key`` when no estimator exists for this scale.
        CheckpointError: the file is not an estimator (or of another scale).
    """
    file = Path(path).expanduser() if path else shipped_estimator_path(scale)
    if not file.is_file():
        if path:
            raise ConfigError(f"{key}: kernel estimator {file} does not exist")
        raise ConfigError(f"{key}=learned: no kernel estimator is shipped for x{scale} (only x4); use "
                          f"{key}=cross_scale, or train one with scripts/train_kernel_estimator.py scale={scale} and give it "
                          "as degradation_estimate.estimator=FILE")
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise CheckpointError(f"{file}: not a readable kernel estimator ({type(e).__name__})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{file}: not a kernel estimator file (format {FORMAT!r} expected)")
    net = KernelEstimator(**obj["config"])
    if net.scale != int(scale):
        raise CheckpointError(f"{file}: a x{net.scale} kernel estimator, but this run is x{scale}")
    net.load_state_dict(obj["state_dict"])
    return net.eval()
