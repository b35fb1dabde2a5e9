"""A model's global means as explicit inputs and outputs, so tiles can share whole-image statistics.

DRN's channel attention takes the spatial mean of whole feature maps (every
:class:`~sr_adapt.models.base.GlobalMeanPool`). Tiled inference needs, for each tile, (a) the sum of
each pooled feature map over the tile's *core* (the pixels it keeps) and (b) to replace each pool's
per-tile mean by a given whole-image mean. :class:`PooledForward` is ``net.super_resolve`` with
both made explicit, in plain tensor operations, so the same module runs eagerly in PyTorch and
exports to one ONNX graph (:func:`sr_adapt.inference.onnx.export_onnx` with ``pooled=True``):

    forward(lr, core, blend, *given) -> (sr, *sums, *areas)

* ``lr`` (B, 3, h, w) RGB in [0, 1]; ``core`` (B, 1, h, w) 1 on the pixels whose statistics count,
  0 elsewhere; ``blend`` (B, 1, 1, 1): 0 uses each tile's own mean, 1 the given mean;
  ``given[i]`` (B, C_i) the means fed to pool ``i``.
* ``sr`` (B, 3, h*s, w*s) as ``super_resolve``; ``sums[i]`` (B, C_i) the core sum of pool ``i``'s
  input; ``areas[i]`` (B, 1) its core area in that pool's pixels.

A pool's feature map is an integer multiple ``f_i`` of the LR crop (measured once by a probe pass,
so it is a constant of the graph); the core mask reaches it by nearest upsampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sr_adapt.models.base import GlobalMeanPool, SRModel

__all__ = ["PooledForward", "pool_factors"]


@torch.no_grad()
def pool_factors(net: SRModel, pools: list[GlobalMeanPool]) -> tuple[list[int], list[int]]:
    """(factor, channels) of every pool: its feature map is ``factor`` x the LR input on each side."""
    seen: dict[int, tuple[int, int, int]] = {}
    h, w = 12, 16

    def probe(i: int):
        def hook(x: Tensor) -> Tensor:
            seen[i] = (x.shape[-2], x.shape[-1], x.shape[1])
            return x.mean(dim=(2, 3), keepdim=True)

        return hook

    for i, pool in enumerate(pools):
        pool.hook = probe(i)
    try:
        p = next(iter(net.parameters()), torch.empty(0))
        net.super_resolve(torch.rand(1, 3, h, w, device=p.device, dtype=p.dtype if p.is_floating_point() else torch.float32))
    finally:
        for pool in pools:
            pool.hook = None
    factors, channels = [], []
    for i in range(len(pools)):
        if i not in seen:
            raise NotImplementedError(f"GlobalMeanPool #{i} is not called by super_resolve")
        hf, wf, c = seen[i]
        if hf % h or wf % w or hf // h != wf // w:
            raise NotImplementedError(f"pooled feature map {hf}x{wf} is not an integer multiple of the input {h}x{w}")
        factors.append(hf // h)
        channels.append(c)
    return factors, channels


class PooledForward(nn.Module):
    """``net.super_resolve`` with its global means exposed (see the module docstring)."""

    def __init__(self, net: SRModel) -> None:
        super().__init__()
        self.net = net
        self.pools = [m for m in net.modules() if isinstance(m, GlobalMeanPool)]
        self.factors, self.channels = pool_factors(net, self.pools) if self.pools else ([], [])

    def forward(self, lr: Tensor, core: Tensor, blend: Tensor, *given: Tensor) -> tuple[Tensor, ...]:
        sums: list[Tensor | None] = [None] * len(self.pools)
        areas: list[Tensor | None] = [None] * len(self.pools)

        def hook(i: int):
            def fn(x: Tensor) -> Tensor:
                f = self.factors[i]
                m = core if f == 1 else F.interpolate(core, scale_factor=float(f), mode="nearest")
                m = m.to(x.dtype)
                sums[i] = (x * m).sum(dim=(2, 3)).float()
                areas[i] = m.sum(dim=(2, 3)).float()
                local = x.mean(dim=(2, 3), keepdim=True)
                g = given[i].to(x.dtype)[:, :, None, None]
                return local + blend.to(x.dtype) * (g - local)

            return fn

        for i, pool in enumerate(self.pools):
            pool.hook = hook(i)
        try:
            sr = self.net.super_resolve(lr)
        finally:
            for pool in self.pools:
                pool.hook = None
        return (sr, *sums, *areas)  # type: ignore[arg-type]
