"""Loggers configured in ``conf/logger``."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers.wandb import WandbLogger as LightningWandbLogger

__all__ = ["WandbLogger"]


class WandbLogger(LightningWandbLogger):
    """Lightning's W&B logger without the ``anonymous`` setting it always passes to ``wandb.init``: wandb 0.31
    no longer has that setting and warns about it at the start of every run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)
