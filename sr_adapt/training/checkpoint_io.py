"""Lightning writes our checkpoints through the atomic writer (:mod:`sr_adapt.io.atomic`)."""

from __future__ import annotations

from typing import Any

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from sr_adapt.io.atomic import atomic_torch_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints to a temporary file beside the target, then renames it into place."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        if "://" in str(path):  # remote filesystems: Lightning's own transaction-based writer
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)
