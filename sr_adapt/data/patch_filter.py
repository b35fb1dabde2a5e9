"""Rejecting useless LR patches of real footage: black, flat, or near-duplicates of recent ones."""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["PatchFilter"]

_SIGNATURE_SIZE = 8  # duplicate signatures: 8x8 block means of the luma
_LUMA = (0.299, 0.587, 0.114)  # BT.601 weights, on [0, 1] RGB


class PatchFilter:
    """Judges ``(p, p, 3)`` uint8 patches.

    A patch whose luma (BT.601, [0, 1]) has a mean below ``min_mean`` is ``"dark"``, a standard
    deviation below ``min_std`` ``"flat"``; one whose 8x8 block-mean luma signature differs by
    less than ``dup_threshold`` (mean absolute difference) from one of the last ``dup_history``
    accepted patches since :meth:`forget` is a ``"duplicate"`` (frozen or static footage; 0 disables).
    """

    def __init__(self, min_std: float, min_mean: float, dup_threshold: float, dup_history: int) -> None:
        self.min_std, self.min_mean, self.dup_threshold = min_std, min_mean, dup_threshold
        self.recent: deque[np.ndarray] = deque(maxlen=dup_history)

    def judge(self, patch: np.ndarray) -> tuple[str | None, np.ndarray | None]:
        """``(rejection reason or None, duplicate signature or None)``."""
        rgb = patch.astype(np.float32) * (1.0 / 255.0)
        luma = rgb[..., 0] * _LUMA[0] + rgb[..., 1] * _LUMA[1] + rgb[..., 2] * _LUMA[2]
        if float(luma.mean()) < self.min_mean:
            return "dark", None
        if float(luma.std()) < self.min_std:
            return "flat", None
        if self.dup_threshold <= 0:
            return None, None
        k = min(_SIGNATURE_SIZE, luma.shape[0], luma.shape[1])
        sig = F.adaptive_avg_pool2d(torch.from_numpy(luma)[None, None], k)[0, 0].numpy()
        for old in self.recent:
            if old.shape == sig.shape and float(np.abs(old - sig).mean()) < self.dup_threshold:
                return "duplicate", sig
        return None, sig

    def forget(self) -> None:
        """Clears the duplicate history."""
        self.recent.clear()

    def accept(self, sig: np.ndarray | None) -> None:
        """Remember an emitted patch's signature for the duplicate check."""
        if sig is not None:
            self.recent.append(sig)
