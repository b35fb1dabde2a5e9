"""Super-resolution networks (plain ``nn.Module``s, no Lightning)."""

from __future__ import annotations

from sr_adapt.models.base import SRModel
from sr_adapt.models.bicubic import Bicubic
from sr_adapt.models.drn import DRN, DualRegressor, build_dual_models, build_drn
from sr_adapt.models.drrn import DRRN

# arch name -> class; our checkpoints store the arch name and the constructor keywords.
ARCHS: dict[str, type[SRModel]] = {"drn": DRN, "drrn": DRRN, "bicubic": Bicubic}


def build_model(arch: str, **hparams) -> SRModel:
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; known: {sorted(ARCHS)}")
    return ARCHS[arch](**hparams)


__all__ = ["ARCHS", "Bicubic", "DRN", "DRRN", "DualRegressor", "SRModel", "build_dual_models", "build_drn", "build_model"]
