"""Geometric self-ensemble (x8): average a model over the 8 flips/rotations of its input."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def self_ensemble(
    fn: Callable[[Tensor], Tensor], x: Tensor, fn_transposed: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """Mean of ``T^-1(fn(T(x)))`` over the 8 symmetries T of the square (dihedral group D4).

    Args:
        fn: (B, C, h, w) -> (B, C', H, W), applied to a batch (it sees 4B images per call, and
            transposed (w, h) images in the second call, so non-square inputs work).
        x: (B, C, h, w), any value range.
        fn_transposed: used instead of ``fn`` for the transposed half (e.g. a second tiler that
            keeps its own warm-start statistics); the same function by default.
    Returns:
        (B, C', H, W) in ``fn``'s value range. Equals ``fn(x)`` when ``fn`` commutes with flips and
        transposition (e.g. a pointwise or symmetric-kernel operation).

    Two calls of ``fn``: the identity and the three flips, then the same four after transposing
    h and w (the rotations by 90/270 degrees are transposes followed by flips).
    """
    total = None
    for transpose in (False, True):
        xt = x.transpose(-2, -1) if transpose else x
        y = (fn_transposed or fn)(flips4(xt)) if transpose else fn(flips4(xt))
        y0, y1, y2, y3 = y.chunk(4)
        acc = y0 + y1.flip(-1) + y2.flip(-2) + y3.flip(-2, -1)
        acc = acc.transpose(-2, -1) if transpose else acc
        total = acc if total is None else total + acc
    assert total is not None
    return total / 8.0


def flips4(x: Tensor) -> Tensor:
    """(B, C, h, w) -> (4B, C, h, w): ``x``, flipped left-right, flipped up-down, both."""
    return torch.cat([x, x.flip(-1), x.flip(-2), x.flip(-2, -1)])
