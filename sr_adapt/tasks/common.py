"""What the command-line tasks share: clean errors, the device, the model named by ``model=`` /
``ckpt_path=`` / ``scale=``, and the scales and benchmark sets to score.

Every task module has ``run(cfg) -> result`` (used in-process by tests and other code) and a
Hydra ``main`` (the console script ``sr-adapt-<task>`` and ``scripts/<task>.py``).
"""

from __future__ import annotations

import functools
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.config import CONF_PATH, HYDRA_VERSION, instantiate  # noqa: F401  (CONF_PATH for the tasks)
from sr_adapt.errors import ConfigError, SRAdaptError
from sr_adapt.io.atomic import check_writable
from sr_adapt.models.base import SRModel

log = logging.getLogger("sr_adapt")


def user_message(exc: BaseException) -> str:
    """The readable part of an error (DataLoader workers prepend the worker's traceback)."""
    text = str(exc)
    if "Original Traceback" in text:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        text = lines[-1].split(": ", 1)[-1] if lines else text
    return text


def cli(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Wraps a Hydra task function: our user errors (by type, also re-raised from DataLoader
    workers) become one line on stderr and exit status 2; the model name chosen with ``model=``
    is recorded as ``model_name``."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        record_model_choice(cfg)
        try:
            return fn(cfg)
        except SRAdaptError as exc:
            log.error("%s", user_message(exc))
            print(f"error: {user_message(exc)}", file=sys.stderr)
            discard_untouched_run_dir()
            sys.exit(2)

    return wrapper


class RunFolderCheck(Callback):
    """Hydra callback (``conf/hydra/default.yaml``): the run or sweep folder must be writable before
    Hydra makes it, else one line naming the key and exit status 2 (not Hydra's traceback)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        from hydra.core.hydra_config import HydraConfig  # noqa: PLC0415

        # the folder's path may name ${hydra:...} values (paths.root_dir: the working folder): Hydra sets
        # the config they resolve from only when the job starts, after this callback
        HydraConfig.instance().set_config(config)
        folder = OmegaConf.select(config, key)
        try:
            check_writable(Path(folder), key=key)
        except ConfigError as exc:
            print(f"error: {exc} (the run folders live under paths.log_dir unless {key} is given)", file=sys.stderr)
            sys.exit(2)


def discard_untouched_run_dir() -> None:
    """Removes this command's Hydra run folder when it holds nothing but Hydra's own files (the
    command stopped on bad input before writing anything): no empty run left behind."""
    from hydra.core.hydra_config import HydraConfig  # noqa: PLC0415

    if not HydraConfig.initialized():
        return
    folder = Path(HydraConfig.get().runtime.output_dir)
    if not folder.is_dir():
        return
    own = {".hydra", f"{HydraConfig.get().job.name}.log"}
    if {p.name for p in folder.iterdir()} <= own:
        logging.shutdown()
        shutil.rmtree(folder, ignore_errors=True)


def record_model_choice(cfg: DictConfig) -> None:
    """``model_name`` := the ``model=`` choice (evaluate, upscale, export), unless given or ``auto``."""
    if "model_name" not in cfg or cfg.get("model_name"):
        return
    from hydra.core.hydra_config import HydraConfig  # noqa: PLC0415

    choice = HydraConfig.get().runtime.choices.get("model") if HydraConfig.initialized() else None
    if choice and choice != "auto":
        with open_dict(cfg):
            cfg.model_name = choice


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; a CUDA request without CUDA is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available (use device=cpu)")
    return torch.device(name)


def build_model(cfg: DictConfig) -> tuple[SRModel, str]:
    """The net of ``cfg.model`` with the weights of ``cfg.ckpt_path``; returns (net, name).

    ``model=auto`` takes the architecture from the checkpoint (only the scale is checked);
    a named model (``model=drn_s``) must match the checkpoint exactly (variant and scale).
    """
    ckpt_path = cfg.get("ckpt_path")
    if cfg.model.get("net") is None:
        if not ckpt_path:
            raise ConfigError("model=auto needs ckpt_path=FILE (or choose a model, e.g. model=bicubic)")
        loaded = load_checkpoint(ckpt_path, expect={"scale": int(cfg.scale)})
        return loaded.net, cfg.get("model_name") or loaded.meta.get("variant", loaded.net.arch)
    net: SRModel = instantiate(cfg.model.net)
    name = cfg.get("model_name") or cfg.model.net._target_.rsplit(".", 1)[-1]
    if ckpt_path:
        net = load_checkpoint(ckpt_path, expect={"arch": net.arch, **net.hparams()}).net
    elif net.num_parameters() > 0:
        raise ConfigError(f"model={name} has trainable weights: pass ckpt_path=FILE (ours, official .pt or .pdparams)")
    return net, name


def model_at_scale(cfg: DictConfig, device: torch.device) -> tuple[SRModel, str]:
    """:func:`build_model` set to ``cfg.scale``, in eval mode on ``device``."""
    net, name = build_model(cfg)
    scale = int(cfg.scale)
    try:
        net.set_scale(scale)
    except ValueError as e:
        raise ConfigError(f"scale={scale}: {e}; pick one of those with scale=...") from None
    return net.to(device).eval(), name


def eval_scales(cfg: DictConfig) -> list[int]:
    """``scales=[2,3,4]`` when given (one model at several scales), else ``[scale]``."""
    scales = cfg.get("scales")
    if scales is None:
        return [int(cfg.scale)]
    if isinstance(scales, (int, str)):
        scales = [scales]
    if not scales:
        raise ConfigError("scales is empty: give scales=[2,3,4] or leave it null to use scale")
    return [int(s) for s in scales]
