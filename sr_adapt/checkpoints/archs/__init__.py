"""One adapter per architecture: how its checkpoints are recognised, described and built."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sr_adapt.checkpoints.archs.base import ArchAdapter, LoadedModel, RawCheckpoint
from sr_adapt.checkpoints.archs.drn import DRNAdapter
from sr_adapt.checkpoints.archs.drrn import DRRNAdapter
from sr_adapt.checkpoints.archs.wrapped import WrappedAdapter

__all__ = ["ADAPTERS", "ArchAdapter", "LoadedModel", "RawCheckpoint", "adapter_named", "detect_adapter"]

#: Known architectures, tried in this order when a file does not say which it holds (community files:
#: ``WrappedAdapter`` through spandrel, last, by :func:`sr_adapt.checkpoints.load_checkpoint`).
ADAPTERS: tuple[ArchAdapter, ...] = (DRNAdapter(), DRRNAdapter(), WrappedAdapter())


def adapter_named(name: str) -> ArchAdapter | None:
    return next((a for a in ADAPTERS if a.name == str(name).lower()), None)


def detect_adapter(state_dict: Mapping[str, Any]) -> ArchAdapter | None:
    """The adapter whose key names ``state_dict`` has (prefix-stripped), or None."""
    return next((a for a in ADAPTERS if a.detect(state_dict)), None)
