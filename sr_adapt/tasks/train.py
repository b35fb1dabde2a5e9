"""``sr-adapt-train`` / ``python scripts/train.py``: train or fine-tune a model.

    python scripts/train.py experiment=drn_unpaired_video [key=value ...]
    python scripts/train.py experiment=drn_paired debug=fast      # smoke run on bundled images
    python scripts/train.py -m experiment=... model.dual_weight=0.01,0.1,1   # sweep
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
from omegaconf import DictConfig

from sr_adapt.config import CONF_PATH, HYDRA_VERSION
from sr_adapt.errors import ConfigError
from sr_adapt.tasks.common import cli
from sr_adapt.training.fit import fit

log = logging.getLogger("sr_adapt.train")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Fits ``cfg.model`` on ``cfg.data``; returns the final logged scalars (also in metrics.json)."""
    return fit(cfg)


def metric_value(metrics: dict[str, Any], name: str | None, sweeping: bool = True) -> float | None:
    """The value a sweeper optimises: a clear error under a sweeper if the run never logged it
    (e.g. it ended before its first validation); outside a sweep only a warning."""
    if not name:
        return None
    if name not in metrics:
        if not sweeping:
            log.warning("optimized_metric=%s was not logged (no validation ran); logged: %s", name, sorted(metrics))
            return None
        raise ConfigError(f"optimized_metric={name} was not logged; logged: {sorted(metrics)}")
    return metrics[name]


@hydra.main(version_base=HYDRA_VERSION, config_path=CONF_PATH, config_name="train")
@cli
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig  # noqa: PLC0415
    from hydra.types import RunMode  # noqa: PLC0415

    sweeping = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    return metric_value(run(cfg), cfg.get("optimized_metric"), sweeping)


if __name__ == "__main__":
    main()
