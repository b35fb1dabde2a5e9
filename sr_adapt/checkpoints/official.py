"""Writing weights: the official guoyongcs/DRN format, and our weights-only file (no optimizer state)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from typing import Any

from torch import nn

from sr_adapt.io.atomic import atomic_torch_save
from sr_adapt.models.drn import DRN

__all__ = ["save_official", "save_weights"]


def save_official(
    net: DRN,
    duals: Sequence[nn.Module] | None,
    primal_path: str | os.PathLike,
    dual_path: str | os.PathLike | None = None,
) -> tuple[Path, Path | None]:
    """Export in the official guoyongcs/DRN format (loadable with its ``--pre_train`` / ``--pre_train_dual``).

    Writes the primal state_dict (official parameters, for 0..255 images) to ``primal_path`` and, when ``duals`` is
    given, the list of dual state_dicts to ``dual_path`` (default: ``<primal stem>_dual_model.pt``
    beside it). Both files are written atomically. Returns the two paths.
    """
    if not isinstance(net, DRN):
        raise TypeError(f"save_official exports DRN models, got {type(net).__name__}")
    primal_path = Path(primal_path)
    sd = {k: v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items()}
    atomic_torch_save(OrderedDict(sd), primal_path)
    if duals is None:
        return primal_path, None
    if dual_path is None:
        dual_path = primal_path.with_name(f"{primal_path.stem}_dual_model{primal_path.suffix or '.pt'}")
    dual_path = Path(dual_path)
    dual_sds = [
        OrderedDict((k, v.detach().cpu().clone().contiguous()) for k, v in d.state_dict().items()) for d in duals
    ]
    atomic_torch_save(dual_sds, dual_path)
    return primal_path, dual_path


def save_weights(net: nn.Module, duals: Sequence[nn.Module] | None, path: str | os.PathLike,
                 info: dict[str, Any] | None = None) -> Path:
    """Our weights-only file: ``{"state_dict": {net.*, duals.<i>.*}, "sr_adapt": {arch, hparams, ...}}``
    in float32, the layout of a training ``.ckpt`` without optimizer or loop state (a few MB for a
    small DRN), loadable by :func:`sr_adapt.checkpoints.load_checkpoint` with ``weights_only=True``."""
    sd = {f"net.{k}": v.detach().cpu().float().clone().contiguous() for k, v in net.state_dict().items()}
    for i, d in enumerate(duals or []):
        sd.update({f"duals.{i}.{k}": v.detach().cpu().float().clone().contiguous() for k, v in d.state_dict().items()})
    meta = {"arch": net.arch, "hparams": net.hparams(), **(info or {})}
    atomic_torch_save({"state_dict": sd, "sr_adapt": meta}, path)
    return Path(path)
