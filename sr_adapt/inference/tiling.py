"""Tiled super-resolution with bounded memory whose output equals the untiled output.

How the tiles are made exact:

* Local operations (convolutions, resampling): the image is cut into *cores* that partition it;
  each core is run inside a *crop* that extends it by ``margin = net.tile_margin()`` LR pixels on
  every side (less only where the crop meets the image border, which the untiled run sees too).
  Only the core of each output tile is kept, so no blending is needed: every kept pixel has its
  whole receptive field inside its crop and equals the untiled value up to float rounding. A
  smaller, *measured* margin (:mod:`sr_adapt.inference.margins`) trades a stated error for speed.
* Global statistics (DRN's channel attention takes the spatial mean of whole feature maps): the
  tiles run through :class:`~sr_adapt.inference.global_stats.PooledForward` (or its ONNX graph).
  A pass over the tiles records, per image and per pool, the sum of its input over the cores,
  i.e. the whole image's mean; the next pass feeds those means to every tile. Means that
  reproduce themselves are the untiled ones, so passes repeat until they agree to ``stats_rtol``
  (2 passes on a still image; for video the previous frame's means start the next frame, usually
  1 pass). ``exact_stats=False`` uses per-tile means
  in one pass (what Real-ESRGAN-style tilers do: visible seams possible).

Memory is bounded by one batch of crops: ``tile_batch x (tile + 2 margin)^2`` LR pixels through
the network, plus the output image itself (kept on ``out_device``, CPU by default).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import Tensor, nn

from sr_adapt.errors import ConfigError
from sr_adapt.inference.global_stats import PooledForward
from sr_adapt.models.base import SRModel

log = logging.getLogger("sr_adapt.inference")

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def axis_tiles(n: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """Cores and crops along one axis of length ``n``: ``[(core_start, core_end, crop_start, crop_len)]``.

    Cores have (nearly) equal lengths and partition ``[0, n)``; every crop has the same length and
    reaches ``margin`` beyond its core or to the border. The fewest cores are used whose crops fit in
    ``tile + 2 margin`` (the memory bound): one core when the whole axis fits, two when a core plus
    one margin fits (each touches a border), else cores of at most ``tile``.
    """
    budget = tile + 2 * margin
    k = 1
    while True:
        core = math.ceil(n / k)
        crop = n if k == 1 else min(n, core + (margin if k == 2 else 2 * margin))
        if crop <= budget or core <= 1:
            break
        k += 1
    out = []
    for a in range(0, n, core):
        b = min(a + core, n)
        c = min(max(a - margin, 0), n - crop)
        out.append((a, b, c, crop))
    return out


def check_precision(precision: str, device: torch.device) -> torch.dtype:
    """The autocast dtype of ``precision`` (fp32 / bf16 / fp16); ConfigError when unusable here."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision}: choose one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision=fp16 needs a CUDA device (device=cuda); on CPU use fp32 or bf16")
    return PRECISIONS[precision]


class _MeanAccumulator:
    """Per image and per pool, the sums of the pools' inputs over the tiles' cores and their areas."""

    def __init__(self, n_images: int, n_pools: int) -> None:
        self.n_images = n_images
        self.sums: list[Tensor | None] = [None] * n_pools
        self.areas: list[Tensor | None] = [None] * n_pools

    def add(self, img: Tensor, sums: list[Tensor], areas: list[Tensor]) -> None:
        for i, (s, a) in enumerate(zip(sums, areas)):  # on the device of the sums: no sync per batch
            s, a = s.detach().double(), a.detach().double().reshape(-1)
            if self.sums[i] is None:
                self.sums[i] = torch.zeros(self.n_images, s.shape[1], dtype=torch.float64, device=s.device)
                self.areas[i] = torch.zeros(self.n_images, dtype=torch.float64, device=s.device)
            self.sums[i].index_add_(0, img.to(s.device), s)  # type: ignore[union-attr]
            self.areas[i].index_add_(0, img.to(s.device), a)  # type: ignore[union-attr]

    def means(self) -> list[Tensor]:
        out = []
        for i, (s, a) in enumerate(zip(self.sums, self.areas)):
            if s is None or a is None:
                raise RuntimeError(f"GlobalMeanPool #{i} was not called during the pass")
            out.append((s / a[:, None]).float())
        return out


class TiledUpscaler:
    """Super-resolves whole images through ``net`` in tiles (see the module docstring).

    Args:
        net: any :class:`SRModel` (set to its scale, in eval mode, on ``device``), or an
            :class:`~sr_adapt.inference.onnx.OnnxRuntimeModel` (its graph runs the tiles).
        tile: core size in LR pixels; crops are at most ``tile + 2 margin`` on a side, and an image
            that fits in one crop (e.g. ``tile`` >= the image) runs untiled, as does ``None``/0.
            Must be >= the margin.
        tile_batch: crops per forward.
        precision: fp32, bf16 (autocast) or fp16 (autocast, CUDA only); PyTorch models only.
        exact_stats: global means over the whole image (exact) or per tile (one pass, approximate).
        margin: context kept around each core, LR pixels; default ``net.tile_margin()`` (the exact
            bound); a measured smaller one: :func:`sr_adapt.inference.margins.measure_margin`.
        max_passes, stats_rtol: limits of the global-mean iteration.
        out_device: where the output images are assembled (default CPU).

    ``__call__``: (N, 3, h, w) RGB in [0, 1] (any device) -> (N, 3, h*s, w*s) float32 RGB on
    ``out_device``, unclamped, equal to ``net.super_resolve`` of the whole batch up to rounding
    (with the exact margin).
    """

    def __init__(
        self,
        net: SRModel,
        tile: int | None = None,
        tile_batch: int = 4,
        precision: str = "fp32",
        device: torch.device | str | None = None,
        exact_stats: bool = True,
        margin: int | None = None,
        max_passes: int = 6,
        stats_rtol: float = 1e-3,
        out_device: torch.device | str = "cpu",
    ) -> None:
        self.net = net
        self.device = torch.device(device) if device is not None else next(iter(net.parameters()), torch.empty(0)).device
        self.dtype = check_precision(precision, self.device)
        self.margin = int(net.tile_margin() if margin is None else margin)
        self.tile = int(tile) if tile else None
        if self.tile is not None and self.tile < self.margin:
            raise ConfigError(
                f"tile={self.tile} is smaller than the receptive-field margin of this model "
                f"({self.margin} LR pixels at x{net.scale}): use tile>={self.margin} (e.g. tile=256), or tile=0 for untiled"
            )
        if tile_batch < 1:
            raise ConfigError(f"tile_batch={tile_batch}: give at least 1")
        self.tile_batch = int(tile_batch)
        self.exact_stats = exact_stats
        self.max_passes = max(1, int(max_passes))
        self.stats_rtol = float(stats_rtol)
        self.out_device = torch.device(out_device)
        run_pooled = getattr(net, "run_pooled", None)  # a graph with the pools as inputs/outputs
        if run_pooled is not None:
            self._pooled, self._channels = run_pooled, list(net.pool_channels)
        else:
            pooled = PooledForward(net)
            self._pooled, self._channels = pooled, pooled.channels
        self.n_pools = len(self._channels)
        self._warm: tuple[tuple[int, ...], list[Tensor]] | None = None
        self.last_passes = 0

    def warm_start(self, other: TiledUpscaler) -> None:
        """Start from ``other``'s last whole-image means (same images, another tiling)."""
        self._warm = other._warm

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def _forward(self, x: Tensor) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        with torch.no_grad(), self._autocast():
            return self.net.super_resolve(x)

    def is_tiled(self, h: int, w: int) -> bool:
        """False when an (h, w) image runs as one forward (it fits in one crop of ``tile + 2 margin``)."""
        if self.tile is None:
            return False
        return len(axis_tiles(h, self.tile, self.margin)) > 1 or len(axis_tiles(w, self.tile, self.margin)) > 1

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, h, w) RGB, got shape {tuple(x.shape)}")
        n, _, h, w = x.shape
        s = self.net.scale
        if not self.is_tiled(h, w):
            self.last_passes = 1
            outs = [self._forward(x[i : i + self.tile_batch]).float().to(self.out_device) for i in range(0, n, self.tile_batch)]
            return torch.cat(outs)
        assert self.tile is not None
        ys, xs = axis_tiles(h, self.tile, self.margin), axis_tiles(w, self.tile, self.margin)
        ph, pw = ys[0][3], xs[0][3]
        grid = [(i, ty, tx) for i in range(n) for ty in ys for tx in xs]  # every (image, tile) pair
        out = torch.empty(n, 3, h * s, w * s, dtype=torch.float32, device=self.out_device)
        exact = self.n_pools > 0 and self.exact_stats
        use = None  # per pool (n, C) means fed to the tiles; None: per-tile means
        if exact and self._warm is not None and self._warm[0] == (n, h, w):
            use = self._warm[1]  # previous call's means (video: the previous frame)
        passes = 0
        while True:
            passes += 1
            stats = self._run_tiles(x, grid, (ph, pw), out, use, exact)
            if stats is None:
                break
            new = stats.means()
            if use is not None and _close(new, use, self.stats_rtol):
                break
            if passes >= self.max_passes:
                log.warning("tiled global statistics not converged after %d passes", passes)
                break
            use = new
        if exact:  # the last recorded means: the next call's starting point
            self._warm = ((n, h, w), new)
        self.last_passes = passes
        return out

    def _run_tiles(
        self, x: Tensor, grid: list, crop_hw: tuple[int, int], out: Tensor, use: list[Tensor] | None, exact: bool,
    ) -> _MeanAccumulator | None:
        """One pass over the tiles; with ``exact``, the pools see ``use`` (or their own means when
        None) and the pass's whole-image sums come back."""
        s = self.net.scale
        ph, pw = crop_hw
        stats = _MeanAccumulator(int(x.shape[0]), self.n_pools) if exact else None
        for start in range(0, len(grid), self.tile_batch):
            chunk = grid[start : start + self.tile_batch]
            crops = torch.stack([x[i, :, ty[2] : ty[2] + ph, tx[2] : tx[2] + pw] for i, ty, tx in chunk])
            if stats is None:
                sr = self._forward(crops)
            else:
                img = torch.tensor([i for i, _, _ in chunk])
                core = torch.zeros(len(chunk), 1, ph, pw)
                for k, (_, ty, tx) in enumerate(chunk):
                    core[k, :, ty[0] - ty[2] : ty[1] - ty[2], tx[0] - tx[2] : tx[1] - tx[2]] = 1.0
                blend = torch.full((len(chunk), 1, 1, 1), 0.0 if use is None else 1.0)
                given = [u[img] for u in use] if use is not None else [torch.zeros(len(chunk), c) for c in self._channels]
                sr, sums, areas = self._run_pooled(crops, core, blend, given)
                stats.add(img, sums, areas)
            sr = sr.float().to(self.out_device)
            for k, (i, ty, tx) in enumerate(chunk):
                (a, b, c, _), (a2, b2, c2, _) = ty, tx
                out[i, :, a * s : b * s, a2 * s : b2 * s] = sr[k, :, (a - c) * s : (b - c) * s, (a2 - c2) * s : (b2 - c2) * s]
        return stats

    def _run_pooled(self, crops: Tensor, core: Tensor, blend: Tensor, given: list[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        if not isinstance(self._pooled, nn.Module):  # an onnxruntime graph
            return self._pooled(crops, core, blend, given)
        dev = self.device
        with torch.no_grad(), self._autocast():
            res = self._pooled(crops.to(dev), core.to(dev), blend.to(dev), *[g.to(dev) for g in given])
        k = self.n_pools
        return res[0], list(res[1 : 1 + k]), list(res[1 + k :])


def _close(new: list[Tensor], old: list[Tensor], rtol: float) -> bool:
    """Every pool's means agree to ``rtol`` of that pool's largest mean magnitude."""
    for a, b in zip(new, old):
        b = b.to(a.device, a.dtype)
        if (a - b).abs().max() > rtol * b.abs().max().clamp_min(1e-8):
            return False
    return True
