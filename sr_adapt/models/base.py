"""Common interface of every super-resolution model in sr_adapt."""

from __future__ import annotations

from torch import Tensor, nn


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

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
