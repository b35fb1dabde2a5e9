"""LightningDataModule composing training sources and validation benchmark folders."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from sr_adapt.data.errors import DataError
from sr_adapt.data.paired import BenchmarkFolderDataset


class FixedLengthDataset(Dataset):
    """Presents ``base`` as a dataset of ``length`` items (index modulo len(base)).

    Training datasets draw a random crop per access, so an "epoch" is just a number of
    samples (the official DRN trainer: 1000 iterations x batch 32).
    """

    def __init__(self, base: Dataset, length: int) -> None:
        self.base = base
        self.length = int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        return self.base[index % len(self.base)]


class SRDataModule(pl.LightningDataModule):
    """Paired super-resolution data.

    Args:
        scale: SR factor; passed to every source.
        patch_size: HR patch size of training samples (LR patch = patch_size // scale).
        batch_size: training batch size (per device).
        train_sources: name -> partial dataset constructor (Hydra ``_partial_: true``), called as
            ``source(scale=..., patch_size=...)``.
        val_sets: name -> HR folder (or a mapping with ``hr_dir`` and optional ``lr_dir``);
            whole images, LR made by MATLAB bicubic when no ``lr_dir``. The first one is monitored.
        epoch_size: training samples per epoch (0: one pass over the sources' images).
    """

    def __init__(
        self,
        scale: int,
        patch_size: int,
        batch_size: int,
        train_sources: Mapping[str, Callable[..., Dataset]],
        val_sets: Mapping[str, Any] | None = None,
        epoch_size: int = 0,
        num_workers: int = 4,
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        if not train_sources:
            raise DataError("data.train_sources is empty: configure at least one training source")
        if patch_size % scale:
            raise DataError(f"data.patch_size={patch_size} must be a multiple of scale={scale}")
        self.scale = scale
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.train_sources = dict(train_sources)
        self.val_sets = dict(val_sets or {})
        self.epoch_size = epoch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.train_set: Dataset | None = None
        self.val_datasets: list[Dataset] = []

    @property
    def val_names(self) -> list[str]:
        return list(self.val_sets)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            parts = [src(scale=self.scale, patch_size=self.patch_size) for src in self.train_sources.values()]
            base = parts[0] if len(parts) == 1 else ConcatDataset(parts)
            length = self.epoch_size or len(base)
            self.train_set = FixedLengthDataset(base, max(length, self.batch_size))
        if stage in (None, "fit", "validate") and not self.val_datasets:
            self.val_datasets = [self._benchmark(name, spec) for name, spec in self.val_sets.items()]

    def _benchmark(self, name: str, spec: Any) -> Dataset:
        key = f"data.val_sets.{name}"
        if isinstance(spec, Mapping):
            return BenchmarkFolderDataset(spec["hr_dir"], self.scale, lr_dir=spec.get("lr_dir"), config_key=key)
        return BenchmarkFolderDataset(Path(str(spec)), self.scale, config_key=key)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def val_dataloader(self) -> list[DataLoader]:
        # Whole images of different sizes: batch 1, few workers.
        return [
            DataLoader(ds, batch_size=1, shuffle=False, num_workers=min(self.num_workers, 2))
            for ds in self.val_datasets
        ]

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_set) / self.batch_size) if self.train_set is not None else 0
