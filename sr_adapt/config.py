"""The Hydra configs shipped in the package (``sr_adapt/conf``): where they are, how to compose
them outside a command, and instantiation that lets our user-facing errors through unwrapped.

Importing this module registers the ``${sr_adapt_assets:}`` (the bundled sample data),
``${sr_adapt_cache:}`` (exported graphs, measured margins) and ``${budget:CPU,GPU}`` (a recipe's value
for the device the run trains on: :func:`budget_value`) resolvers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from sr_adapt.errors import ConfigError, SRAdaptError

PACKAGE_DIR = Path(__file__).resolve().parent
CONF_DIR = PACKAGE_DIR / "conf"
ASSETS_DIR = PACKAGE_DIR / "assets"
#: Hydra's name for the shipped configs (``@hydra.main(config_path=CONF_PATH)``).
CONF_PATH = "pkg://sr_adapt.conf"
HYDRA_VERSION = "1.3"


def default_cache_dir() -> str:
    """``$SR_ADAPT_CACHE_DIR``, else ``$XDG_CACHE_HOME/sr_adapt``, else ``~/.cache/sr_adapt``."""
    if os.environ.get("SR_ADAPT_CACHE_DIR"):
        return os.environ["SR_ADAPT_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sr_adapt")


BUDGETS = ("auto", "cpu", "gpu")


def check_budget(choice: Any) -> None:
    """Raises :class:`ConfigError` naming ``budget`` unless it is one of :data:`BUDGETS`."""
    if choice not in BUDGETS:
        raise ConfigError(f"budget={choice}: choose one of {', '.join(BUDGETS)} (the recipe's size: cpu, a run of "
                          "minutes; gpu, the long one; auto, by trainer.accelerator)")


def budget_value(cpu: Any, gpu: Any, *, _root_: DictConfig) -> Any:
    """``${budget:CPU_VALUE,GPU_VALUE}``: the value of the run's ``budget`` (cpu: a recipe that finishes in
    minutes on a few CPU cores; gpu: the long one; auto, the default: gpu when the run trains on a GPU,
    ``trainer.accelerator`` gpu / cuda, or auto with CUDA present)."""
    choice = _root_.get("budget", "auto")
    check_budget(choice)
    if choice == "auto":
        accelerator = str(OmegaConf.select(_root_, "trainer.accelerator", default="cpu"))
        if accelerator == "auto":
            import torch  # noqa: PLC0415 - only for an auto accelerator

            accelerator = "gpu" if torch.cuda.is_available() else "cpu"
        choice = "gpu" if accelerator in ("gpu", "cuda") else "cpu"
    return gpu if choice == "gpu" else cpu


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("sr_adapt_assets"):
        OmegaConf.register_new_resolver("sr_adapt_assets", lambda: str(ASSETS_DIR))
    if not OmegaConf.has_resolver("sr_adapt_cache"):
        OmegaConf.register_new_resolver("sr_adapt_cache", default_cache_dir)
    if not OmegaConf.has_resolver("budget"):
        OmegaConf.register_new_resolver("budget", budget_value)


register_resolvers()


def compose(config_name: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The config a command would see for ``overrides``, composed in-process.

    Inside a running command (Hydra already initialised) its search path is reused, so a
    user's ``--config-dir`` still applies; elsewhere the shipped configs are used. Values that
    the command sets at run time (``hydra:`` interpolations such as ``paths.output_dir``) are not
    available: override them (``paths.output_dir=...``).
    """
    if GlobalHydra.instance().is_initialized():
        return hydra.compose(config_name, overrides=list(overrides))
    with hydra.initialize_config_module("sr_adapt.conf", version_base=HYDRA_VERSION):
        return hydra.compose(config_name, overrides=list(overrides))


def instantiate(cfg: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that re-raises our user-facing errors as themselves."""
    try:
        return hydra.utils.instantiate(cfg, **kwargs)
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, SRAdaptError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def instantiate_group(cfg: DictConfig | None, key: str) -> list[Any]:
    """Instantiates every ``_target_`` entry of a dict-of-configs group (callbacks, loggers)."""
    if not cfg:
        return []
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"config group '{key}' must be a mapping of name -> config")
    return [instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]
