"""Common interface of every super-resolution model in sr_adapt."""

from __future__ import annotations

from torch import Tensor, nn


class SRModel(nn.Module):
    """An ``nn.Module`` with an integer ``scale`` and ``super_resolve``.

    ``super_resolve``: (B, C, h, w) in [0,1] -> (B, C, h*scale, w*scale), unclamped.
    ``arch`` names the architecture in our checkpoints; ``hparams()`` gives the
    constructor keywords that rebuild the module.
    """

    arch: str = ""
    scale: int

    def super_resolve(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def hparams(self) -> dict:
        return {"scale": self.scale}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
