"""A training config checked before anything is created: every number a user types, and the file
``ckpt_path=`` resumes from. Each error names the key, the value and the valid range."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sr_adapt.checkpoints.formats import torch_load
from sr_adapt.config import check_budget
from sr_adapt.errors import CheckpointError, ConfigError

__all__ = ["check_train_config", "check_resume_checkpoint"]

_MISSING = object()

# key -> (kind, low, high, low inclusive); None bounds are open. Keys absent from a config are skipped.
NUMBERS: dict[str, tuple[type, float | None, float | None, bool]] = {
    "scale": (int, 1, None, True),
    "seed": (int, 0, None, True),
    "data.batch_size": (int, 1, None, True),
    "data.patch_size": (int, 1, None, True),
    "data.epoch_size": (int, 1, None, True),
    "data.num_workers": (int, 0, None, True),
    "data.unpaired_ratio": (float, 0, 1, True),
    "data.target_pair_ratio": (float, 0, 1, True),
    "trainer.max_steps": (int, -1, None, True),
    "trainer.max_epochs": (int, -1, None, True),
    "trainer.log_every_n_steps": (int, 1, None, True),
    "trainer.check_val_every_n_epoch": (int, 1, None, True),
    "trainer.accumulate_grad_batches": (int, 1, None, True),
    "model.dual_weight": (float, 0, None, True),
    "model.target_weight": (float, 0, None, True),
    "model.skip_threshold": (float, 0, None, False),
    "model.optimizer.lr": (float, 0, None, False),
    "model.optimizer.weight_decay": (float, 0, None, True),
    "model.scheduler.eta_min": (float, 0, None, True),
    "model.scheduler.T_max": (int, 1, None, True),
    "model.scheduler.step_size": (int, 1, None, True),
    "model.scheduler.gamma": (float, 0, None, False),
    "callbacks.last_checkpoint.every_n_train_steps": (int, 0, None, True),
}


def _range(kind: type, low: float | None, high: float | None, inclusive: bool) -> str:
    what = "an integer" if kind is int else "a number"
    if low is not None and high is not None:
        return f"{what} in [{low}, {high}]"
    if low is not None:
        return f"{what} {'>=' if inclusive else '>'} {low}"
    return what


def check_number(key: str, value: Any, kind: type, low: float | None, high: float | None, inclusive: bool) -> None:
    """ConfigError naming ``key`` unless ``value`` is a finite ``kind`` within the bounds."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok and kind is int:
        ok = float(value).is_integer()
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (low is None or (v >= low if inclusive else v > low)) and (high is None or v <= high)
    if not ok:
        raise ConfigError(f"{key}={value!r}: give {_range(kind, low, high, inclusive)}")


def check_train_config(cfg: DictConfig) -> None:
    """Every configured number in range (:data:`NUMBERS`), the batch mix adding up, ``trainer.max_steps``
    positive or -1, and a resume file that is a training checkpoint of ours."""
    check_budget(cfg.get("budget", "auto"))  # before any ${budget:...} value is resolved
    if OmegaConf.select(cfg, "trainer.max_steps", default=None) == 0:
        raise ConfigError("trainer.max_steps=0: give the number of steps to train (or -1: no step limit)")
    for key, (kind, low, high, inclusive) in NUMBERS.items():
        value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
        if value is _MISSING or value is None:
            continue
        if key == "data.num_workers" and value == "auto":
            continue
        if key == "model.scheduler.T_max" and value == -1 and OmegaConf.select(cfg, "trainer.max_steps") == -1:
            raise ConfigError("trainer.max_steps=-1 leaves the cosine schedule without an end: give trainer.max_steps "
                              "(or model.scheduler.T_max)")
        check_number(key, value, kind, low, high, inclusive)
    mix = sum(float(OmegaConf.select(cfg, k, default=0) or 0) for k in ("data.unpaired_ratio", "data.target_pair_ratio"))
    if mix > 1:
        raise ConfigError(f"data.unpaired_ratio + data.target_pair_ratio = {mix:g} > 1: they are shares of one batch")
    if cfg.get("ckpt_path"):
        check_resume_checkpoint(str(cfg.ckpt_path), int(cfg.get("scale", 0) or 0))


def check_resume_checkpoint(path: str, scale: int = 0) -> Mapping[str, Any]:
    """The checkpoint ``ckpt_path=`` resumes from, read with the safe loader of evaluate: a
    :class:`ConfigError` naming ``ckpt_path`` unless it is a training checkpoint of ours."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"ckpt_path={path} does not exist: give a checkpoint to resume from (e.g. "
                          "<run>/checkpoints/last.ckpt), or ckpt_path=null")
    try:
        obj = torch_load(p, "cpu")
    except CheckpointError as e:
        raise ConfigError(f"ckpt_path={path}: {e}") from None
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise ConfigError(f"ckpt_path={path} is not a training checkpoint of ours (no state_dict): to start from "
                          "other weights use model.init_from=FILE; ckpt_path only resumes a run")
    missing = [k for k in ("optimizer_states", "loops", "global_step") if k not in obj]
    if missing:
        raise ConfigError(f"ckpt_path={path} holds weights but no training state ({', '.join(missing)} missing): "
                          "use model.init_from=FILE to fine-tune from it")
    saved = (obj.get("sr_adapt") or {}).get("hparams", {}).get("scale")
    if scale and saved and int(saved) != scale and not (obj.get("sr_adapt") or {}).get("hparams", {}).get("scales"):
        raise ConfigError(f"ckpt_path={path} is a x{saved} run, this config trains x{scale}: set scale={saved}")
    return obj
