"""``sr-adapt-train-kernel-estimator`` / ``python scripts/train_kernel_estimator.py``: train the learned
kernel estimator the adaptation uses (:mod:`sr_adapt.degradation.kernel_net`) on clean HR images.

    python scripts/train_kernel_estimator.py hr_dirs=[../shared/data/train/T91,../shared/data/train/BSD200] \
        output=sr_adapt/assets/weights/kernel_estimator_x4.pt [steps=6000] [scale=4] [resume=true]

Writes ``output`` (the estimator) and, alongside it while training, ``<output>.state.pt`` (resume).
The shipped x4 estimator was made by this command (BENCHMARKS.md, "The learned kernel estimate").
"""

from __future__ import annotations

import json
import logging

import hydra
from omegaconf import DictConfig, OmegaConf

from sr_adapt.config import CONF_PATH, HYDRA_VERSION
from sr_adapt.errors import ConfigError
from sr_adapt.tasks.common import cli
from sr_adapt.training.kernel_estimator import train_kernel_estimator

log = logging.getLogger("sr_adapt")


def run(cfg: DictConfig) -> dict:
    if not cfg.get("output"):
        raise ConfigError("output is required: the file to write the estimator to (e.g. output=kernel_estimator_x4.pt)")
    for key in ("steps", "batch_size", "lr_patch", "save_every"):
        if int(cfg[key]) < 1:
            raise ConfigError(f"{key}={cfg[key]} must be a positive integer")
    summary = train_kernel_estimator(cfg.output, list(cfg.hr_dirs), int(cfg.scale), int(cfg.steps), int(cfg.batch_size),
                                     int(cfg.lr_patch), float(cfg.lr), float(cfg.noise_share), float(cfg.max_noise),
                                     float(cfg.jpeg_share), float(cfg.kernel_weight), int(cfg.seed),
                                     int(cfg.save_every), bool(cfg.resume),
                                     OmegaConf.to_container(cfg.net, resolve=True))
    log.info("kernel estimator: %s", json.dumps(summary))
    return summary


@hydra.main(version_base=HYDRA_VERSION, config_path=CONF_PATH, config_name="train_kernel_estimator")
@cli
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
