"""Loading any supported checkpoint as a model: read the file, recognise the architecture, build it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from sr_adapt.checkpoints.archs import ADAPTERS, LoadedModel, adapter_named, detect_adapter
from sr_adapt.checkpoints.formats import read_checkpoint
from sr_adapt.errors import CheckpointError, ConfigError
from sr_adapt.models.drn import DRN, build_drn

__all__ = ["build_drn_like", "load_checkpoint"]


def load_checkpoint(
    path: str | os.PathLike,
    dual_path: str | os.PathLike | None = None,
    *,
    expect: Mapping[str, Any] | None = None,
    map_location: Any = "cpu",
) -> LoadedModel:
    """Load a model from our ``.ckpt``, an official DRN ``.pt``/``.pth``, a PaddleGAN ``.pdparams``,
    a DRRN state_dict or the DRRN port's pickled-module file.

    Args:
        path: checkpoint file; the format is detected from the suffix and the content.
        dual_path: optional official dual-model file (a list of state_dicts); overrides duals
            found in ``path``.
        expect: the requested model, e.g. ``{"arch": "drn", "scale": 4, "n_blocks": 30,
            "n_feats": 16}`` (``"variant": "s"`` also works; ``negval`` is passed to the model).
            A file holding another architecture, variant or scale raises :class:`CheckpointError`
            saying what it holds and what to request instead.
        map_location: forwarded to ``torch.load``.

    Returns a :class:`LoadedModel` whose ``net`` works on [0, 1] images.
    """
    raw = read_checkpoint(path, dual_path, map_location)
    adapter = adapter_named(raw.stored_arch) if raw.stored_arch else detect_adapter(raw.primal)
    if raw.stored_arch and adapter is None:
        known = ", ".join(a.name for a in ADAPTERS)
        raise CheckpointError(f"{raw.path}: holds arch {raw.stored_arch!r}; known architectures: {known}")
    if adapter is None:  # say why each architecture refuses it
        reasons = []
        for candidate in ADAPTERS:
            try:
                candidate.infer_config(raw.primal)
            except CheckpointError as e:
                reasons.append(str(e))
        raise CheckpointError(f"{raw.path}: " + "; ".join(reasons))
    return adapter.build(raw, expect)


def build_drn_like(
    size: str = "s", scale: int = 4, n_blocks: int | None = None, n_feats: int | None = None,
    like: str | os.PathLike | None = None, **kwargs: Any,
) -> DRN:
    """A fresh DRN: a released size (``build_drn``), or with ``like`` the architecture of that
    checkpoint (any format), so that a fine-tuning config needs only the weights' path.

    With ``like``, ``n_blocks``/``n_feats`` left None come from the file; given ones must match it.
    """
    if like is None:
        return build_drn(size, scale, n_blocks=n_blocks, n_feats=n_feats, **kwargs)
    found = load_checkpoint(like, expect={"arch": "drn", "scale": int(scale)}).meta["config"]
    for key, value in (("n_blocks", n_blocks), ("n_feats", n_feats)):
        if value is not None and int(value) != found[key]:
            raise ConfigError(
                f"model.net.{key}={value}, but model.init_from={like} holds {found[key]}: leave model.net.{key} "
                "unset (null) to take the architecture of the weights"
            )
    kwargs.setdefault("input_filter", found.get("input_filter", 0))  # an adapted model's input correction
    return DRN(scale=int(scale), n_blocks=found["n_blocks"], n_feats=found["n_feats"], **kwargs)
