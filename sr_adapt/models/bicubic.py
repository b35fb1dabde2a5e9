"""MATLAB-compatible bicubic upscaling as a (parameter-free) model."""

from __future__ import annotations

from torch import Tensor

from sr_adapt.models.base import SRModel
from sr_adapt.ops.resize import imresize


class Bicubic(SRModel):
    """(B, C, h, w) in [0,1] -> (B, C, h*scale, w*scale), MATLAB ``imresize(x, scale, 'bicubic')``."""

    arch = "bicubic"

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return imresize(x, scale=self.scale)

    def super_resolve(self, x: Tensor) -> Tensor:
        return self(x)

    def tile_margin(self) -> int:
        """The cubic kernel reaches 2 LR pixels; 3 covers MATLAB's extra (zero-weight) taps."""
        return 3

    def supported_scales(self) -> tuple[int, ...]:
        return tuple(range(2, 9))
