"""One training run from a composed config: data, model, callbacks, loggers and trainer are all
instantiated from it (``python scripts/train.py`` and the adaptation benchmark both call :func:`fit`)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks.progress import ProgressBar
from omegaconf import DictConfig, OmegaConf

from sr_adapt.config import instantiate, instantiate_group
from pytorch_lightning.utilities.exceptions import SIGTERMException

from sr_adapt.errors import ConfigError, SRAdaptError
from sr_adapt.io.atomic import atomic_write_text
from sr_adapt.training.callbacks import scalar_metrics
from sr_adapt.training.checkpoint_io import AtomicCheckpointIO
from sr_adapt.training.target_degradation import resolve_degradation
from sr_adapt.training.validate import check_train_config

log = logging.getLogger("sr_adapt.training")


class TrainingStopped(SRAdaptError):
    """The run was stopped from outside (SIGTERM) after saving its state."""


def _check(cfg: DictConfig) -> None:
    if "_target_" not in cfg.model:
        raise ConfigError(f"model={cfg.model.net.get('_target_', '?')} is not trainable (no LightningModule in conf/model)")
    check_train_config(cfg)


class _DropLightningAdverts(logging.Filter):
    """Lightning's start-up tip to install a cloud logger says nothing about the run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


#: Library messages that are not about the run: Lightning's logger advert, and a deprecation inside
#: Lightning's own pytree helper (torch 2.13 deprecates ``LeafSpec``; nothing a user can change).
_QUIET_WARNINGS = (r".*your dataloader is not resumable",  # our batches resume from SRDataModule.state_dict
                   r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def _quiet_libraries() -> None:
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero"):
        target = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningAdverts) for f in target.filters):
            target.addFilter(_DropLightningAdverts())


def fit(cfg: DictConfig) -> dict[str, Any]:
    """Fits ``cfg.model`` on ``cfg.data``; returns the final logged scalars (also in metrics.json)."""
    _check(cfg)
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)

    out_dir = Path(cfg.paths.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resolve_degradation(cfg, out_dir)
    atomic_write_text(OmegaConf.to_yaml(cfg, resolve=True), out_dir / "config.yaml")

    log.info("data: %s", cfg.data._target_)
    datamodule: pl.LightningDataModule = instantiate(cfg.data)
    log.info("model: %s", cfg.model._target_)
    model: pl.LightningModule = instantiate(cfg.model)
    callbacks = instantiate_group(cfg.get("callbacks"), "callbacks")
    if cfg.trainer.get("enable_progress_bar") is False:  # Lightning refuses a progress bar callback then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = instantiate_group(cfg.get("logger"), "logger")
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    _quiet_libraries()
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )

    try:
        if cfg.get("train", True):
            with warnings.catch_warnings():
                for message in _QUIET_WARNINGS:
                    warnings.filterwarnings("ignore", message=message)
                trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    except SIGTERMException:
        last = out_dir / "checkpoints" / "last.ckpt"
        raise TrainingStopped(f"stopped by SIGTERM at step {trainer.global_step}; the state is saved in {last}: "
                              f"resume with ckpt_path={last}") from None
    finally:
        _finish_wandb(loggers)
    metrics = scalar_metrics(trainer.callback_metrics)
    metrics["global_step"] = trainer.global_step
    return metrics


def _finish_wandb(loggers: list[Any]) -> None:
    """Closes the W&B run so that each job of a multirun sweep gets its own run."""
    if any(type(lg).__name__ == "WandbLogger" for lg in loggers):
        import wandb

        wandb.finish()
