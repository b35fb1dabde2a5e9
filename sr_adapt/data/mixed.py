"""Training batches that mix LR-only and paired samples at an exact ratio, each one a function of
the run's seed and its batch number (so a resumed run continues the same stream)."""

from __future__ import annotations

import bisect
import random
import warnings
from collections.abc import Iterator
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, DistributedSampler, default_collate

from sr_adapt.errors import DataError

__all__ = ["BatchNumbers", "MixedBatchDataset"]


class MixedBatchDataset(Dataset):
    """Each item is a whole training batch: ``n_unpaired`` LR-only samples, ``n_target`` target-domain
    pairs (source HR images degraded like the target), ``n_internal`` internal pairs (the LR-only
    footage itself degraded once more), then source pairs.

    Building batches in the dataset keeps the mix exact per batch on every device (a
    distributed sampler splits whole batches between ranks) while DataLoader workers
    still build several batches in parallel.

    Item ``n`` is *batch number* ``n`` of the run (any integer >= 0, :class:`BatchNumbers`
    counts on across epochs): which samples it holds and their random crops come from one
    stream seeded by ``(seed, n)``, never from worker state, so the batches are the same with
    any number of workers and after a resume. Sources with a ``draw(index, rng)`` method
    (:class:`sr_adapt.data.sources.base.Source`) get a stream per sample; those with a
    ``new_batch()`` method are told when a batch starts (the video source's duplicate check
    looks within a batch).

    Args:
        paired: dataset of paired samples (or None when ``unpaired_ratio`` is 1).
        unpaired: dataset of LR-only samples (or None when ``unpaired_ratio`` is 0).
        batch_size: samples per batch.
        unpaired_ratio: fraction rho of LR-only samples; ``round(rho * batch_size)`` per batch.
        num_batches: batches per epoch.
        target_pairs: dataset of target-domain pairs (or None when ``target_pair_ratio`` is 0).
        target_pair_ratio: fraction of target-domain pairs; ``round(ratio * batch_size)`` per batch.
        seed: the run's seed (the datamodule passes ``torch.initial_seed()`` of the run).
        internal_pairs: dataset of internal pairs (or None when ``internal_pair_ratio`` is 0).
        internal_pair_ratio: fraction of internal pairs; ``round(ratio * batch_size)`` per batch.
    """

    def __init__(
        self, paired: Dataset | None, unpaired: Dataset | None, batch_size: int, unpaired_ratio: float, num_batches: int,
        target_pairs: Dataset | None = None, target_pair_ratio: float = 0.0, seed: int = 0,
        internal_pairs: Dataset | None = None, internal_pair_ratio: float = 0.0,
    ) -> None:
        if not 0.0 <= unpaired_ratio <= 1.0:
            raise DataError(f"data.unpaired_ratio={unpaired_ratio} must be in [0, 1]")
        if not 0.0 <= target_pair_ratio <= 1.0 - unpaired_ratio + 1e-9:
            raise DataError(f"data.target_pair_ratio={target_pair_ratio} must be in [0, 1 - data.unpaired_ratio]")
        if not 0.0 <= internal_pair_ratio <= 1.0 - unpaired_ratio - target_pair_ratio + 1e-9:
            raise DataError(f"data.internal_pair_ratio={internal_pair_ratio} must be in [0, 1 - data.unpaired_ratio - "
                            "data.target_pair_ratio]")
        self.n_unpaired = round(unpaired_ratio * batch_size)
        self.n_target = min(round(target_pair_ratio * batch_size), batch_size - self.n_unpaired)
        self.n_internal = min(round(internal_pair_ratio * batch_size), batch_size - self.n_unpaired - self.n_target)
        if self.n_internal and internal_pairs is None:
            raise DataError(
                f"data.internal_pair_ratio={internal_pair_ratio} but data.train_sources has no internal-pair source "
                "(add data/source@data.train_sources.internal_pairs=internal_pairs, or set data.internal_pair_ratio=0)"
            )
        if internal_pairs is not None and not self.n_internal:
            raise DataError(
                "data.train_sources has an internal-pair source but data.internal_pair_ratio gives it no sample per "
                "batch: set data.internal_pair_ratio (e.g. 0.25) or remove the source"
            )
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
        n_source = batch_size - self.n_unpaired - self.n_target - self.n_internal
        if n_source > 0 and paired is None:
            raise DataError(
                f"data.unpaired_ratio={unpaired_ratio}, data.target_pair_ratio={target_pair_ratio} and "
                f"data.internal_pair_ratio={internal_pair_ratio} leave {n_source} source pairs per batch but "
                "data.train_sources has no paired source (add one, or raise the ratios to fill the batch)"
            )
        if unpaired_ratio > 0 and self.n_unpaired == 0:
            warnings.warn(
                f"data.unpaired_ratio={unpaired_ratio} x data.batch_size={batch_size} rounds to 0 LR-only samples per batch",
                stacklevel=2,
            )
        self.paired, self.unpaired, self.target_pairs, self.internal_pairs = paired, unpaired, target_pairs, internal_pairs
        self.batch_size = batch_size
        self.num_batches = max(int(num_batches), 1)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.num_batches

    def __getitem__(self, number: int) -> dict[str, Any]:
        rng = random.Random(f"{self.seed}:batch:{number}")  # str seeds hash stably across processes
        for ds in (self.unpaired, self.target_pairs, self.internal_pairs, self.paired):
            for source in _leaves(ds):
                if hasattr(source, "new_batch"):
                    source.new_batch()
        samples = [_draw(self.unpaired, rng) for _ in range(self.n_unpaired)]
        samples += [_draw(self.target_pairs, rng) for _ in range(self.n_target)]
        samples += [_draw(self.internal_pairs, rng) for _ in range(self.n_internal)]
        n_source = self.batch_size - self.n_unpaired - self.n_target - self.n_internal
        samples += [_draw(self.paired, rng) for _ in range(n_source)]
        return default_collate(samples)


def _leaves(dataset: Dataset | None) -> list[Dataset]:
    if dataset is None:
        return []
    if isinstance(dataset, ConcatDataset):
        return [leaf for part in dataset.datasets for leaf in _leaves(part)]
    return [dataset]


def _draw(dataset: Dataset, rng: random.Random) -> dict[str, Any]:
    """A uniformly random sample of ``dataset`` drawn from its own sub-stream of ``rng``."""
    index = rng.randrange(len(dataset))
    sample_rng = random.Random(rng.getrandbits(64))
    while isinstance(dataset, ConcatDataset):
        part = bisect.bisect_right(dataset.cumulative_sizes, index)
        index -= dataset.cumulative_sizes[part - 1] if part else 0
        dataset = dataset.datasets[part]
    draw = getattr(dataset, "draw", None)
    return draw(index, sample_rng) if draw is not None else dataset[index]


class BatchNumbers(DistributedSampler):
    """The batch numbers of :class:`MixedBatchDataset` for each epoch, on one of ``num_replicas`` devices.

    Epoch ``e`` gives this device ``length // num_replicas`` batches: its ``i``-th is number
    ``(e * per_device + i) * num_replicas + rank``, so every batch of a run is different, on every
    device and epoch. Lightning sets the epoch (:meth:`set_epoch`; being a ``DistributedSampler``,
    it is not wrapped in another one); a checkpoint records the epoch and the batches of it already
    trained, and :meth:`resume` makes that epoch's pass start after them.
    """

    def __init__(self, length: int, num_replicas: int = 1, rank: int = 0) -> None:
        # not DistributedSampler.__init__: there is no dataset to split, only numbers
        self.num_replicas, self.rank = int(num_replicas), int(rank)
        self.length = max(int(length) // self.num_replicas, 1)
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume(self, epoch: int, taken: int) -> None:
        """Continue ``epoch`` after its first ``taken`` batches."""
        self.epoch = int(epoch)
        self._resume = (int(epoch), int(taken))

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = min(self._resume[1], self.length)
        first = self.epoch * self.length
        return iter((first + i) * self.num_replicas + self.rank for i in range(start, self.length))
