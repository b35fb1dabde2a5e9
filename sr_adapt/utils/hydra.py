"""Hydra helpers: resolvers, instantiation of callback/logger groups, clean CLI errors."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from sr_adapt.errors import SRAdaptError

log = logging.getLogger("sr_adapt")

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("sr_adapt_assets"):
        OmegaConf.register_new_resolver("sr_adapt_assets", lambda: str(ASSETS_DIR))


register_resolvers()


def instantiate(cfg: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` that lets our user-facing errors through unwrapped."""
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
        raise SRAdaptError(f"config group '{key}' must be a mapping of name -> config")
    return [instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


def user_message(exc: BaseException) -> str:
    """The readable part of an error (DataLoader workers wrap the original in a traceback dump)."""
    text = str(exc)
    if "Original Traceback" in text:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        text = lines[-1].split(": ", 1)[-1] if lines else text
    return text


def cli(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Wraps a Hydra task: user errors become one clear message and exit status 2."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            return fn(cfg)
        except SRAdaptError as exc:
            log.error("%s", user_message(exc))
            print(f"error: {user_message(exc)}", file=sys.stderr)
            sys.exit(2)
        except Exception as exc:  # errors re-raised from DataLoader workers keep their type name only
            if isinstance(exc.__cause__, SRAdaptError) or "DataError" in str(exc)[:200]:
                print(f"error: {user_message(exc)}", file=sys.stderr)
                sys.exit(2)
            raise

    return wrapper
