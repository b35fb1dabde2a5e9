"""Measure LR-only adaptation on a degradation the model never saw (see sr_adapt/benchmark_adaptation.py).

    python scripts/benchmark_adaptation.py hr_dir=../shared/data/benchmarks/Set14 output=adapt.json \
        paths.data_dir=../shared/data [degradation=aniso_jpeg] [source_ckpt=run/checkpoints/last.ckpt]
writes {"bicubic": {"psnr", "ssim"}, "unadapted": {...}, "adapted": {...}, ...}.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sr_adapt.utils.hydra import cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="benchmark_adaptation")
@cli
def main(cfg: DictConfig) -> None:
    from sr_adapt.benchmark_adaptation import benchmark_adaptation, check_config

    check_config(cfg)
    benchmark_adaptation(cfg)


if __name__ == "__main__":
    main()
