"""Any single-image SR network as an :class:`SRModel`: community architectures (RCAN, SwinIR, SPAN,
RRDBNet, SRVGGNet, ... as spandrel builds them) behind our interface.

The wrapped module takes and returns RGB in [0, 1] at one fixed scale (spandrel's convention). The
wrapper adds what our tasks need: padding to the architecture's size requirements (a window
transformer wants multiples of its window), the optional input correction of an adapted model
(:class:`LRFilter`) and the tile margin: the receptive field measured once by autograd, exact for
convolutional networks; whole-image statistics (RCAN's channel attention) and window attention make
tiles close to the untiled result, not equal.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sr_adapt.models.base import GlobalMeanPool, LRFilter, SRModel

__all__ = ["GAN_TRAINED", "WrappedSR", "receptive_radius", "shift_equivariant"]

log = logging.getLogger("sr_adapt")

#: Receptive fields are measured up to this radius (LR px); a wider one counts as unbounded.
PROBE_RADIUS = 48

#: spandrel's names of architectures whose public weights are mostly GAN-trained (Real-ESRGAN and kin):
#: an L1 objective pulls them towards the smoother PSNR optimum.
GAN_TRAINED = frozenset({"ESRGAN", "RealESRGAN Compact", "Swift-SRGAN", "AuraSR", "RealCUGAN", "MMRealSR"})


def pad_to(x: Tensor, multiple: int, minimum: int) -> Tensor:
    """(B, C, h, w) reflect-padded (replicate where too small to reflect) at the bottom and right to
    sides that are multiples of ``multiple`` and at least ``minimum``."""
    h, w = x.shape[-2:]
    th = max(minimum, -(-h // multiple) * multiple)
    tw = max(minimum, -(-w // multiple) * multiple)
    if (th, tw) == (h, w):
        return x
    mode = "reflect" if th - h < h and tw - w < w else "replicate"
    return F.pad(x, (0, tw - w, 0, th - h), mode=mode)


def _probe_input(net: SRModel, side: int) -> Tensor:
    """Seeded noise in [0, 1]: on a flat probe attention weights cannot vary and their reach would not show."""
    p = next(iter(net.parameters()))
    return torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0)).to(p)


@torch.no_grad()
def shift_equivariant(net: SRModel, radius: int, shifts: tuple[int, ...] = (1, 3)) -> bool:
    """Whether shifting the input shifts the output alike, away from the borders: a tile sees the network
    as the whole image does only then (window attention partitions from the corner). Whole-image
    statistics (global pools) are held at the unshifted image's."""
    side = 2 * radius + 2 * max(shifts) + 16
    x = _probe_input(net, side)
    was_training = net.training
    net.eval()
    recorded: dict[nn.Module, list[Tensor]] = {}
    replaying: dict[nn.Module, list[Tensor]] = {}

    def same_statistics(module: nn.Module, args: tuple, out: Tensor) -> Tensor:  # whole-image means: as the reference's
        if module in replaying:
            return replaying[module].pop(0).clone()
        recorded.setdefault(module, []).append(out.clone())  # later in-place operations must not reach it
        return out

    hooks = [m.register_forward_hook(same_statistics) for m in net.modules()
             if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, GlobalMeanPool))
             and getattr(m, "output_size", 1) in (1, (1, 1))]
    try:
        ref = net.super_resolve(x.clone())  # some networks write into their input
        s, m = net.scale, radius + 1
        for d in shifts:
            replaying.update({k: list(v) for k, v in recorded.items()})
            out = net.super_resolve(torch.roll(x, shifts=(d, d), dims=(-2, -1)))
            a = ref[..., m * s : (side - m - d) * s, m * s : (side - m - d) * s]
            b = out[..., (m + d) * s : (side - m) * s, (m + d) * s : (side - m) * s]
            if float((a - b).abs().max()) > 1e-5 * max(1.0, float(ref.abs().max())):
                return False
    finally:
        for hook in hooks:
            hook.remove()
        net.train(was_training)
    return True


def receptive_radius(net: SRModel, limit: int = PROBE_RADIUS, block: int = 1) -> int | None:
    """How far (LR px) the output pixels of a ``block`` x ``block`` LR square at the centre reach into the
    input of ``net.super_resolve``, our :class:`GlobalMeanPool` excluded (tiling feeds it whole-image
    means); None when they reach ``limit`` (unbounded for tiling: whole-image statistics, wide attention).
    Measured by the gradient of those pixels on a noise probe."""
    c0 = limit
    side = 2 * limit + block
    pools = [m for m in net.modules() if isinstance(m, GlobalMeanPool)]
    for pool in pools:
        pool.hook = lambda x: x.mean(dim=(2, 3), keepdim=True).detach()
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():
            x = _probe_input(net, side).requires_grad_(True)
            y = net.super_resolve(x * 1)  # not the leaf itself: some networks write into their input
            s = net.scale
            (grad,) = torch.autograd.grad(y[..., c0 * s : (c0 + block) * s, c0 * s : (c0 + block) * s].sum(), x)
        grad = grad.abs().sum(dim=(0, 1))  # parameters' gradients untouched (a training step may hold some)
    finally:
        for pool in pools:
            pool.hook = None
        net.train(was_training)
    rows, cols = torch.nonzero(grad > 0, as_tuple=True)
    if rows.numel() == 0:
        return 0
    reach = max(int(c0 - rows.min()), int(rows.max() - (c0 + block - 1)),
                int(c0 - cols.min()), int(cols.max() - (c0 + block - 1)))
    return None if reach >= limit else reach


class WrappedSR(SRModel):
    """An SR module from another code base as an :class:`SRModel`.

    Args:
        model: ``(B, 3, h, w)`` in [0, 1] -> ``(B, 3, h*scale, w*scale)``, sides meeting the size
            requirements below.
        scale: its fixed scale.
        architecture: its name (e.g. ``SwinIR``): checkpoints record it, messages show it.
        multiple_of, minimum: size requirements of the input; other sizes are padded, the output cropped.
        input_filter: size of an input correction in front (0: none; :meth:`set_input_filter`).
    """

    arch = "wrapped"

    def __init__(self, model: nn.Module, scale: int, architecture: str, multiple_of: int = 1, minimum: int = 0,
                 input_filter: int = 0) -> None:
        super().__init__()
        self.model = model
        self.scale = int(scale)
        self.architecture = str(architecture)
        self.multiple_of, self.minimum = max(1, int(multiple_of)), int(minimum)
        self.input_filter = LRFilter(input_filter) if input_filter else None
        self._radius: tuple[int | None, bool] | None = None  # (receptive radius, shift-equivariant), measured once

    @property
    def likely_gan_trained(self) -> bool:
        return self.architecture in GAN_TRAINED

    def hparams(self) -> dict:
        out = {"scale": self.scale, "architecture": self.architecture}
        if self.input_filter is not None:
            out["input_filter"] = self.input_filter.size
        return out

    def set_input_filter(self, weight: Tensor | None) -> None:
        """Put ``weight`` (m, m) in front of the network as its input filter (None removes it)."""
        self.input_filter = None if weight is None else LRFilter(int(weight.shape[-1]), weight).to(
            next(self.model.parameters()).device)
        self._radius = None

    def super_resolve(self, x: Tensor) -> Tensor:
        if self.input_filter is not None:
            x = self.input_filter(x)
        h, w = x.shape[-2:]
        y = self.model(pad_to(x, self.multiple_of, self.minimum))
        return y[..., : h * self.scale, : w * self.scale]

    def forward(self, x: Tensor) -> Tensor:
        return self.super_resolve(x)

    @property
    def exact_tiles(self) -> bool:
        """Whether tiles with :meth:`tile_margin` give the untiled result: a bounded receptive field and no
        window grid (window attention partitions each tile from its own corner)."""
        self.tile_margin()
        return self._radius[0] is not None and self._radius[1]

    @property
    def graph_any_size(self) -> bool:
        """Whether a traced ONNX graph runs at every size: not with padding to a multiple (traced for one size)
        nor when shifting the input does not shift the output (window attention, pixel-unshuffle grids)."""
        if self.multiple_of > 1:
            return False
        self.tile_margin()
        return self._radius[1]

    def tile_margin(self) -> int:
        """The measured receptive radius (+1): exact tiles for convolutional networks. For window attention
        (inputs padded to a window grid) or a reach beyond :data:`PROBE_RADIUS`, the measured radius or that
        limit, with a warning: tiles are close to the whole-image result, not equal (``tile_margin=auto``
        measures how close)."""
        if self._radius is None:
            radius = receptive_radius(self, block=self.multiple_of)
            equivariant = shift_equivariant(self, PROBE_RADIUS if radius is None else radius)
            self._radius = (radius, equivariant)
            if radius is None or not equivariant:
                log.warning("%s: tiles are close to the whole-image result, not equal (%s; tile_margin=auto measures "
                            "the difference, tile=0 runs untiled)", self.architecture,
                            f"it reaches beyond {PROBE_RADIUS} LR px" if radius is None
                            else "shifting its input does not shift its output alike: windows or grids placed from "
                                 "each tile's corner")
        radius = self._radius[0]
        return PROBE_RADIUS if radius is None else radius + 1
