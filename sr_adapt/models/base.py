"""Common interface of every super-resolution model in sr_adapt."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GlobalMeanPool(nn.Module):
    """Spatial mean ``(B, C, H, W) -> (B, C, 1, 1)``: the one non-local operation of a model.

    A plain module (no parameters) so that tiled inference can find it: when ``hook`` is set,
    ``forward`` returns ``hook(x)`` instead, which lets :mod:`sr_adapt.inference.tiling` record
    the whole image's mean tile by tile and feed it back, making tiled outputs equal untiled ones.
    """

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[Tensor], Tensor] | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.hook is not None:
            return self.hook(x)
        return x.mean(dim=(2, 3), keepdim=True)


class LRFilter(nn.Module):
    """A linear filter (m, m), m odd, applied to each channel of the LR input before the network: the
    input correction of an adapted model (:mod:`sr_adapt.degradation.correction`), trained with the
    rest. (B, C, h, w) -> same shape, reflect-padded; identity when built without weights."""

    def __init__(self, size: int, weight: Tensor | None = None) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"an LR filter has an odd size, got {size}")
        if weight is None:
            weight = torch.zeros(size, size)
            weight[size // 2, size // 2] = 1.0
        if tuple(weight.shape) != (size, size):
            raise ValueError(f"LR filter weights of shape {tuple(weight.shape)}, expected ({size}, {size})")
        self.weight = nn.Parameter(weight.detach().clone().float())

    @property
    def size(self) -> int:
        return int(self.weight.shape[-1])

    def forward(self, x: Tensor) -> Tensor:
        r = self.size // 2
        b, c, h, w = x.shape
        y = F.conv2d(F.pad(x.reshape(b * c, 1, h, w), (r, r, r, r), mode="reflect"), self.weight[None, None].to(x))
        return y.reshape(b, c, h, w)


class SRModel(nn.Module):
    """An ``nn.Module`` with an integer ``scale`` and ``super_resolve``.

    ``super_resolve``: (B, 3, h, w) RGB in [0,1] -> (B, 3, h*scale, w*scale) RGB, unclamped, for
    every model. Luma-only models (``y_only = True``, e.g. DRRN) run their network on the Y channel
    inside ``super_resolve`` and take Cb/Cr from the bicubic upsample; they also offer
    ``super_resolve_y`` (RGB LR -> (B, 1, H, W) studio-swing Y), which the paper protocol scores.

    ``arch`` names the architecture in our checkpoints; ``hparams()`` gives the constructor
    keywords that rebuild the module. ``supported_scales()`` lists the scales one set of weights
    serves (DRN: its own; DRRN: x2, x3, x4 in one model); ``set_scale`` switches between them.
    """

    arch: str = ""
    scale: int
    y_only: bool = False

    def super_resolve(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def super_resolve_y(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} is not a luma-only model")

    def hparams(self) -> dict:
        return {"scale": self.scale}

    def supported_scales(self) -> tuple[int, ...]:
        return (self.scale,)

    def set_scale(self, scale: int) -> None:
        """Run at ``scale`` from now on; ValueError when these weights do not serve it."""
        scale = int(scale)
        if scale not in self.supported_scales():
            raise ValueError(
                f"{type(self).__name__} serves scale(s) {list(self.supported_scales())}, not x{scale}"
            )
        self.scale = scale

    # --- training: what the adaptation objective (sr_adapt.training.adapt_module) asks of a network ---
    def lr_level_factors(self) -> list[int]:
        """Downscale factors of the clean LR images a training sample carries for this network's loss,
        lowest resolution first (the first is the scale): ``[scale]``; DRN: its pyramid ``[s, s/2, ..., 2]``."""
        return [self.scale]

    def training_outputs(self, x: Tensor) -> list[Tensor]:
        """The outputs the primal loss scores, lowest resolution first, the last the SR image
        (B, 3, h*s, w*s); one per :meth:`lr_level_factors` entry after the first, plus the SR image."""
        return [self.super_resolve(x)]

    def build_duals(self) -> nn.ModuleList | None:
        """Learned dual models (index i maps output i+1 to LR level i), or None: the loop then runs
        through a fixed degradation (the target's estimate, else bicubic)."""
        return None

    def tile_margin(self) -> int:
        """Context in LR pixels that one output pixel depends on through local operations.

        Convolutions and resampling only; global statistics (:class:`GlobalMeanPool`) are handled
        separately by tiled inference. A tile whose border is at least this far from the pixels it
        keeps gives exactly the untiled values there (at the current ``scale``).
        """
        raise NotImplementedError(f"{type(self).__name__} does not define tile_margin(); tiled inference needs it")

    @property
    def graph_any_size(self) -> bool:
        """Whether an ONNX graph traced at one image size runs at every size (False: window attention)."""
        return True

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
