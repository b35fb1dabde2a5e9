"""Loading any supported checkpoint as a model: read the file, recognise the architecture, build it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from sr_adapt.checkpoints.archs import ADAPTERS, ArchAdapter, LoadedModel, RawCheckpoint, adapter_named, detect_adapter
from sr_adapt.checkpoints.archs.wrapped import WrappedAdapter, build_community
from sr_adapt.checkpoints.formats import read_checkpoint, read_safetensors, torch_load
from sr_adapt.errors import CheckpointError, CheckpointNotFoundError, ConfigError, UnknownArchitectureError
from sr_adapt.models.base import SRModel
from sr_adapt.models.drn import DRN, build_drn

__all__ = ["build_drn_like", "build_like", "load_checkpoint"]


def load_checkpoint(
    path: str | os.PathLike,
    dual_path: str | os.PathLike | None = None,
    *,
    expect: Mapping[str, Any] | None = None,
    map_location: Any = "cpu",
) -> LoadedModel:
    """Load a model from our ``.ckpt``, an official DRN ``.pt``/``.pth``, a PaddleGAN ``.pdparams``,
    a DRRN state_dict, the DRRN port's pickled-module file, or community weights of any SR
    architecture spandrel knows (``.pth``, ``.pt``, ``.safetensors``; :mod:`.archs.wrapped`).

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
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        return load_community(path, read_safetensors(path), expect)
    try:
        raw = read_checkpoint(path, dual_path, map_location)
    except CheckpointNotFoundError:
        raise
    except CheckpointError as native:  # a layout none of our readers knows: community weights?
        try:
            obj = torch_load(path, map_location)
        except CheckpointError:
            raise native from None
        if not isinstance(obj, Mapping):
            raise
        return load_community(path, obj, expect, why_not_ours=str(native).removeprefix(f"{path}: "))
    adapter = _adapter_of(raw)
    if raw.stored_arch and adapter is None:
        known = ", ".join(a.name for a in ADAPTERS)
        raise CheckpointError(f"{raw.path}: holds arch {raw.stored_arch!r}; known architectures: {known}")
    if adapter is None:  # say why each of ours refuses it, then ask spandrel
        reasons = []
        for candidate in ADAPTERS:
            try:
                candidate.infer_config(raw.primal)
            except CheckpointError as e:
                reasons.append(str(e))
        if raw.source == "sr_adapt" or raw.duals is not None:
            raise CheckpointError(f"{raw.path}: " + "; ".join(reasons))
        ours = "; ".join(r for a, r in zip(ADAPTERS, reasons) if not isinstance(a, WrappedAdapter))
        return load_community(path, raw.primal, expect, why_not_ours=ours)
    return adapter.build(raw, expect)


def load_community(path: Path, obj: Mapping[str, Any], expect: Mapping[str, Any] | None,
                   why_not_ours: str | None = None) -> LoadedModel:
    """A file of community weights (read into ``obj``) through spandrel; when spandrel refuses it too,
    the error says why each of our architectures did (``why_not_ours``)."""
    raw = RawCheckpoint(primal=dict(obj), duals=None, source="spandrel", path=path)
    try:
        return WrappedAdapter().build(raw, expect)
    except UnknownArchitectureError as e:
        if why_not_ours is None:
            raise
        raise UnknownArchitectureError(f"{e}; {why_not_ours}") from None


def build_like(like: str | os.PathLike | None = None, scale: int = 4, architecture: str | None = None,
               kwargs: Mapping[str, Any] | None = None, **drn: Any) -> SRModel:
    """The network of checkpoint ``like`` (any format we or spandrel read): what ``model=adapt`` fine-tunes,
    whatever its architecture (``model.net.like: ${model.init_from}``). A DRN file goes through
    :func:`build_drn_like` (``drn`` keywords checked against it). With no file, a fresh network: spandrel's
    ``architecture`` built with its ``kwargs`` (``experiment=span_source_x4``), else a DRN of ``drn``
    keywords (training from scratch: ``debug=fast``)."""
    if like and architecture:
        raise ConfigError(f"model.net.architecture={architecture} builds a fresh network, but model.init_from={like} "
                          "gives one: set only one of them")
    if architecture:  # the DRN keywords do not apply (debug=fast sets them for any run)
        return build_community(architecture, scale, **dict(kwargs or {}))
    if not like:
        if not any(v is not None for v in drn.values()):
            raise ConfigError("model=adapt fine-tunes the network of a weights file: set model.init_from=FILE (ours, "
                              "official DRN, or community weights), or train one from scratch with model=drn_s")
        return build_drn_like(scale=scale, **drn)
    if _holds_drn(like):
        return build_drn_like(scale=scale, like=like, **drn)
    with torch.random.fork_rng():  # building it draws initial weights: the run's random streams stay as they were
        return load_checkpoint(like, expect={"scale": int(scale)}).net


def _holds_drn(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds DRN weights, from its keys alone (no model built)."""
    try:
        raw = read_checkpoint(path)
    except CheckpointNotFoundError:
        raise
    except CheckpointError:  # a layout of community weights (or a broken file: load_checkpoint says which)
        return False
    adapter = _adapter_of(raw)
    return adapter is not None and adapter.name == "drn"


def _adapter_of(raw: RawCheckpoint) -> ArchAdapter | None:
    """The adapter the file names (our checkpoints), else the one whose key layout it has; None: neither."""
    return adapter_named(raw.stored_arch) if raw.stored_arch else detect_adapter(raw.primal)


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
