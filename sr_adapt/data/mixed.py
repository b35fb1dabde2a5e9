"""Training batches that mix LR-only and paired samples at an exact ratio."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from sr_adapt.errors import DataError

__all__ = ["MixedBatchDataset"]


class MixedBatchDataset(Dataset):
    """Each item is a whole training batch: ``n_unpaired`` LR-only samples, ``n_target`` target-domain
    pairs (source HR images degraded like the target), then source pairs.

    Building batches in the dataset keeps the mix exact per batch on every device (a
    distributed sampler splits whole batches between ranks) while DataLoader workers
    still build several batches in parallel. The samples inside a batch are drawn at
    random (torch RNG, seeded per worker and rank by Lightning); sources draw their own
    random crops.

    Args:
        paired: dataset of paired samples (or None when ``unpaired_ratio`` is 1).
        unpaired: dataset of LR-only samples (or None when ``unpaired_ratio`` is 0).
        batch_size: samples per batch.
        unpaired_ratio: fraction rho of LR-only samples; ``round(rho * batch_size)`` per batch.
        num_batches: batches per epoch.
        target_pairs: dataset of target-domain pairs (or None when ``target_pair_ratio`` is 0).
        target_pair_ratio: fraction of target-domain pairs; ``round(ratio * batch_size)`` per batch.
    """

    def __init__(
        self, paired: Dataset | None, unpaired: Dataset | None, batch_size: int, unpaired_ratio: float, num_batches: int,
        target_pairs: Dataset | None = None, target_pair_ratio: float = 0.0,
    ) -> None:
        if not 0.0 <= unpaired_ratio <= 1.0:
            raise DataError(f"data.unpaired_ratio={unpaired_ratio} must be in [0, 1]")
        if not 0.0 <= target_pair_ratio <= 1.0 - unpaired_ratio + 1e-9:
            raise DataError(f"data.target_pair_ratio={target_pair_ratio} must be in [0, 1 - data.unpaired_ratio]")
        self.n_unpaired = round(unpaired_ratio * batch_size)
        self.n_target = min(round(target_pair_ratio * batch_size), batch_size - self.n_unpaired)
        if self.n_target and target_pairs is None:
            raise DataError(
                f"data.target_pair_ratio={target_pair_ratio} but data.train_sources has no target-pair source "
                "(add data/source@data.train_sources.target_pairs=target_pairs, or set data.target_pair_ratio=0)"
            )
        if target_pairs is not None and not self.n_target:
            raise DataError(
                "data.train_sources has a target-pair source but data.target_pair_ratio gives it no sample per batch: "
                "set data.target_pair_ratio (e.g. 0.25) or remove the source"
            )
        if self.n_unpaired and unpaired is None:
            raise DataError(
                f"data.unpaired_ratio={unpaired_ratio} but data.train_sources has no LR-only source "
                "(add e.g. a video source, or set data.unpaired_ratio=0)"
            )
        if self.n_unpaired + self.n_target < batch_size and paired is None:
            raise DataError(
                f"data.unpaired_ratio={unpaired_ratio} leaves {batch_size - self.n_unpaired - self.n_target} paired "
                "samples per batch but data.train_sources has no paired source (add one, or set data.unpaired_ratio=1)"
            )
        if unpaired_ratio > 0 and self.n_unpaired == 0:
            warnings.warn(
                f"data.unpaired_ratio={unpaired_ratio} x data.batch_size={batch_size} rounds to 0 LR-only samples per batch",
                stacklevel=2,
            )
        self.paired, self.unpaired, self.target_pairs = paired, unpaired, target_pairs
        self.batch_size = batch_size
        self.num_batches = max(int(num_batches), 1)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, index: int) -> dict[str, Any]:
        samples = [self._draw(self.unpaired) for _ in range(self.n_unpaired)]
        samples += [self._draw(self.target_pairs) for _ in range(self.n_target)]
        samples += [self._draw(self.paired) for _ in range(self.batch_size - self.n_unpaired - self.n_target)]
        return default_collate(samples)

    @staticmethod
    def _draw(dataset: Dataset) -> dict[str, Any]:
        return dataset[int(torch.randint(len(dataset), ()).item())]
