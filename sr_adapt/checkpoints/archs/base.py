"""What an architecture adapter does, and the records passed between the format readers and it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from sr_adapt.models.base import SRModel

__all__ = ["ArchAdapter", "LoadedModel", "RawCheckpoint"]


@dataclass
class RawCheckpoint:
    """A file's tensors before any model is built (what :mod:`sr_adapt.checkpoints.formats` reads).

    ``primal``: the network's state_dict with wrapper prefixes stripped; ``duals``: one state_dict
    per dual model, or None; ``source``: "sr_adapt", "official" or "paddle"; ``meta``: format
    details (for our files ``arch`` and ``hparams``).
    """

    primal: dict[str, Any]
    duals: list[dict[str, Tensor]] | None
    source: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def stored_arch(self) -> str | None:
        """The architecture our own checkpoints record (None for other files)."""
        return self.meta.get("arch") if self.source == "sr_adapt" and self.meta.get("hparams") else None


@dataclass
class LoadedModel:
    """Result of :func:`~sr_adapt.checkpoints.load_checkpoint`.

    ``net`` takes and returns [0, 1] images whatever the file's format; ``duals`` is ``None``
    when the file (and ``dual_path``) held no dual models. ``source`` is ``"sr_adapt"``,
    ``"official"``, ``"paddle"`` or ``"drrn_port"``; ``meta`` holds the inferred config
    (``config``), a readable name (``variant``), the constructor keywords (``hparams``) and
    format details.
    """

    net: SRModel
    duals: nn.ModuleList | None
    source: str
    path: Path
    meta: dict = field(default_factory=dict)


class ArchAdapter:
    """How checkpoints of one architecture are recognised, described and turned into a model.

    A new architecture adds one subclass in this folder and its entry in ``ADAPTERS``.
    """

    name: str = ""

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        """True when the (prefix-stripped) primal state_dict's key names are this architecture's."""
        raise NotImplementedError

    def infer_config(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """The constructor keywords the weights determine; :class:`CheckpointError` saying why when
        the state_dict is not this architecture's."""
        raise NotImplementedError

    def describe(self, config: Mapping[str, Any]) -> str:
        """A readable name of a config, e.g. "DRN-S x4"."""
        raise NotImplementedError

    def build(self, raw: RawCheckpoint, expect: Mapping[str, Any] | None) -> LoadedModel:
        """The model (and duals) of ``raw``; :class:`CheckpointError` when it is not what ``expect`` asks for."""
        raise NotImplementedError
