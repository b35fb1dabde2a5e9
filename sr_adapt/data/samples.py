"""The training sample format every source returns, so paired and LR-only samples share a batch.

A sample is a dict::

    {"lr": (3, p, p), "lr_levels": [HR/f for f in factors], "hr": (3, P, P),
     "paired": tensor(bool), "target": tensor(bool), "name": str}

float32 in [0, 1], P the HR patch size, s the scale, p = P / s. ``lr`` is the network input;
``lr_levels`` are the clean bicubic LR images of ``hr`` the network's loss needs, lowest resolution first:
``factors`` is ``[s]`` for a single-output network, DRN's pyramid ``[s, s/2, ..., 2]`` (its targets below HR;
:meth:`sr_adapt.models.base.SRModel.lr_level_factors`). For source pairs ``lr is lr_levels[0]``. The default collate turns ``lr_levels`` into a list of
``(B, 3, P/f, P/f)`` batches. LR-only samples (``paired`` False) carry zeros where they have no data
(every level above 0 and ``hr``). ``target`` marks samples of the *target* domain, whose ``lr`` comes
from the target degradation (LR-only frames, and target-domain or internal pairs made with an estimate
of it; then ``lr`` differs from ``lr_levels[0]``): the training loss sends their ``lr`` through the
target dual when there is one (:mod:`sr_adapt.training.adapt_module`).
Luma sources (DRRN) have their own format (:mod:`sr_adapt.data.sources.luma`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["Sample", "paired_sample", "unpaired_sample"]

Sample = dict[str, Any]


def paired_sample(levels: list[Tensor], hr: Tensor, name: str, target: bool = False, lr: Tensor | None = None) -> Sample:
    """A sample with HR: ``levels`` are the clean LR levels, lowest resolution first; ``lr`` the network
    input (default: ``levels[0]``; a target pair's degraded image)."""
    return {"lr": levels[0] if lr is None else lr, "lr_levels": list(levels), "hr": hr, "paired": torch.tensor(True),
            "target": torch.tensor(target), "name": name}


def unpaired_sample(lr: Tensor, factors: Sequence[int], name: str) -> Sample:
    """An LR-only training sample shaped like a paired one (zeros where there is no data).

    ``lr``: ``(3, p, p)``; the levels (``factors[0]`` is the scale s) are ``lr`` then zeros of
    ``(3, p*s/f, p*s/f)``; ``hr`` zeros of ``(3, p*s, p*s)``; ``paired`` False, ``target`` True.
    """
    scale = int(factors[0])
    c, p, q = lr.shape
    if p != q:
        raise ValueError(f"unpaired_sample expects a square patch, got {tuple(lr.shape)}")
    levels = [lr] + [lr.new_zeros(c, p * scale // f, p * scale // f) for f in factors[1:]]
    return {"lr": lr, "lr_levels": levels, "hr": lr.new_zeros(c, p * scale, p * scale), "paired": torch.tensor(False),
            "target": torch.tensor(True), "name": name}
