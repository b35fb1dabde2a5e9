"""LightningDataModule composing training sources (:mod:`sr_adapt.data.sources`) and validation benchmark sets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from sr_adapt.data.mixed import BatchNumbers, MixedBatchDataset
from sr_adapt.data.sources.internal import InternalPairsDataset
from sr_adapt.errors import ConfigError, DataError
from sr_adapt.evaluation.benchmarks import BenchmarkFolderDataset
from sr_adapt.ops.cpu import usable_cores


MAX_WORKERS = 8


def data_workers(value: int | str, processes: int = 1) -> int:
    """``data.num_workers`` of each of ``processes`` training processes on this machine (DDP ranks): a count,
    or ``auto``: the usable cores less one per process, shared out, up to :data:`MAX_WORKERS` each (one process:
    2 cores give 1 worker, 16 give 8; two processes on 16 cores: 7 each)."""
    if value == "auto":
        processes = max(1, int(processes))
        return max(1, min(MAX_WORKERS, (usable_cores() - processes) // processes))
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"data.num_workers={value}: give a count of worker processes (0: load in the training "
                          "process) or auto")
    return value


class SRDataModule(pl.LightningDataModule):
    """Paired super-resolution data.

    Args:
        scale: SR factor; passed to every source.
        patch_size: HR patch size of training samples (LR patch = patch_size // scale).
        batch_size: training batch size (per device).
        train_sources: name -> partial source constructor (Hydra ``_partial_: true``), called as
            ``source(scale=..., patch_size=..., config_key="data.train_sources.<name>")``; a null entry
            is dropped. A source whose class has ``paired = False`` (video frames, LR-only folders)
            provides LR-only samples; one with ``target = True`` (target-domain pairs) feeds the
            ``target_pair_ratio`` share of each batch, an internal-pair source (``internal = True``) the
            ``internal_pair_ratio`` share.
        unpaired_ratio: fraction rho of LR-only samples in every batch.
        target_pair_ratio: fraction of target-domain pairs in every batch.
        internal_pair_ratio: fraction of internal pairs (the LR-only footage degraded once more) in every batch.
        val_sets: name -> HR folder (or a mapping with ``hr_dir`` and optional ``lr_dir``);
            whole images, LR made by MATLAB bicubic when no ``lr_dir``. The first one is monitored;
            a null entry is dropped (so an experiment can remove a default set).
        val_scales: validate every set at each of these scales (multi-scale models such as DRRN),
            as sets named ``{name}_x{s}`` (those at ``scale`` first, so the first set at ``scale`` is the
            monitored one); None: at ``scale`` only, under the set's own name.
        epoch_size: training samples per epoch (0: one pass over the sources' items).

    ``lr_factors`` (not a setting: taken at setup from the trained module's ``lr_factors``, the network's
    :meth:`~sr_adapt.models.base.SRModel.lr_level_factors`) are the LR levels every sample carries:
    ``[scale]`` when None, DRN's pyramid for DRN.

    Every training batch is a function of the run's seed (``torch.initial_seed()`` when the data
    is set up: ``seed=`` of the run, else a random one) and its batch number
    (:class:`~sr_adapt.data.mixed.BatchNumbers`); :meth:`state_dict` puts both in checkpoints, so
    a resumed run trains on the batches an uninterrupted one would have (on each device).
    """

    def __init__(
        self,
        scale: int,
        patch_size: int,
        batch_size: int,
        train_sources: Mapping[str, Callable[..., Dataset]],
        val_sets: Mapping[str, Any] | None = None,
        val_scales: list[int] | None = None,
        epoch_size: int = 0,
        unpaired_ratio: float = 0.0,
        target_pair_ratio: float = 0.0,
        internal_pair_ratio: float = 0.0,
        num_workers: int | str = "auto",
        pin_memory: bool = True,
        persistent_workers: bool = True,
    ) -> None:
        super().__init__()
        train_sources = {k: v for k, v in (train_sources or {}).items() if v is not None}  # null drops a source
        if not train_sources:
            raise DataError("data.train_sources is empty: configure at least one training source")
        # patch_size vs scale is checked by each source (DRN sources need a multiple of the scale)
        self.scale = scale
        self.lr_factors: list[int] | None = None
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.train_sources = dict(train_sources)
        sets = {k: v for k, v in (val_sets or {}).items() if v is not None}  # null drops a set
        if val_scales:
            val_scales = sorted({int(v) for v in val_scales}, key=lambda v: (v != scale, v))  # `scale` first: monitored
            self.val_sets = {f"{k}_x{int(s)}": (k, v, int(s)) for s in val_scales for k, v in sets.items()}
        else:
            self.val_sets = {k: (k, v, scale) for k, v in sets.items()}
        self.epoch_size = epoch_size
        self.unpaired_ratio = unpaired_ratio
        self.target_pair_ratio = target_pair_ratio
        self.internal_pair_ratio = internal_pair_ratio
        data_workers(num_workers)  # a bad value fails here, before any data is read
        self.num_workers = num_workers  # a count or auto: resolved per rank by _workers()
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.persistent_workers = persistent_workers
        self.train_set: MixedBatchDataset | None = None
        self.train_order: BatchNumbers | None = None
        self.val_datasets: list[Dataset] = []
        self._resume_state: dict[str, int] | None = None

    @property
    def val_names(self) -> list[str]:
        return list(self.val_sets)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_set is None:
            if self.lr_factors is None and self.trainer is not None:  # the LR levels the network's loss needs
                self.lr_factors = getattr(self.trainer.lightning_module, "lr_factors", None)
            paired, unpaired, target, internal = [], [], [], []
            for name, src in self.train_sources.items():
                levels = {} if self.lr_factors is None else {"lr_factors": self.lr_factors}
                ds = src(scale=self.scale, patch_size=self.patch_size, config_key=f"data.train_sources.{name}", **levels)
                if not getattr(ds, "paired", True):
                    unpaired.append(ds)
                elif isinstance(ds, InternalPairsDataset):
                    internal.append(ds)
                else:
                    (target if getattr(ds, "target", False) else paired).append(ds)
            n_items = sum(len(d) for d in paired + unpaired + target + internal)
            self.train_set = MixedBatchDataset(
                _concat(paired), _concat(unpaired), self.batch_size, self.unpaired_ratio,
                num_batches=(self.epoch_size or n_items) // self.batch_size,
                target_pairs=_concat(target), target_pair_ratio=self.target_pair_ratio, seed=torch.initial_seed(),
                internal_pairs=_concat(internal), internal_pair_ratio=self.internal_pair_ratio,
            )
            trainer = self.trainer
            world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            self.train_order = BatchNumbers(len(self.train_set), world, rank)
            self._apply_resume_state()
        if stage in (None, "fit", "validate") and not self.val_datasets:
            self.val_datasets = [self._benchmark(*spec) for spec in self.val_sets.values()]

    def state_dict(self) -> dict[str, int]:
        """The batch stream's seed and position (epoch, batches of it trained), saved in checkpoints."""
        if self.train_set is None or self.train_order is None:
            return {}
        state = {"seed": self.train_set.seed, "epoch": 0, "taken": 0}
        trainer = self.trainer
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING:  # also mid-fit validation, SIGTERM
            state["epoch"] = trainer.current_epoch
            state["taken"] = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            if state["taken"] >= len(self.train_order):
                # an epoch's last batch is trained (saved at its end, before or after validation): the next
                # pass starts the next epoch. Resumed as "this epoch, nothing left", Lightning would count the
                # empty rest as an epoch of its own and the batch numbers would run one epoch ahead
                state["epoch"], state["taken"] = state["epoch"] + 1, 0
        return state

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if state_dict:
            self._resume_state = dict(state_dict)
            self._apply_resume_state()

    def _apply_resume_state(self) -> None:
        if self._resume_state is None or self.train_set is None or self.train_order is None:
            return
        state, self._resume_state = self._resume_state, None
        self.train_set.seed = int(state["seed"])
        self.train_order.resume(int(state["epoch"]), int(state["taken"]))

    def _benchmark(self, name: str, spec: Any, scale: int) -> Dataset:
        key = f"data.val_sets.{name}"
        if isinstance(spec, Mapping):
            return BenchmarkFolderDataset(spec["hr_dir"], scale, lr_dir=spec.get("lr_dir"), config_key=key)
        return BenchmarkFolderDataset(Path(str(spec)), scale, config_key=key)

    def _workers(self) -> int:
        """Worker processes of this rank: ``auto`` shares the machine's cores between the ranks on it."""
        trainer = self.trainer
        return data_workers(self.num_workers, getattr(trainer, "num_devices", 1) if trainer is not None else 1)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            self.train_set,
            batch_size=None,  # items are whole batches
            sampler=self.train_order,
            num_workers=(workers := self._workers()),
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and workers > 0,
        )

    def val_dataloader(self) -> list[DataLoader]:
        # Whole images of different sizes: batch 1, few workers.
        return [
            DataLoader(ds, batch_size=1, shuffle=False, num_workers=min(self._workers(), 2))
            for ds in self.val_datasets
        ]


def _concat(parts: list[Dataset]) -> Dataset | None:
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)
