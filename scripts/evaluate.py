"""Evaluate a model on benchmark folders with the paper protocol (Y-PSNR/SSIM, shave = scale).

    python scripts/evaluate.py model=bicubic scale=4 benchmarks=[set5,set14] output=bicubic.json
    python scripts/evaluate.py model=drn_s scale=4 ckpt_path=DRNS4x.pt benchmarks=[set5] save_dir=sr/
    python scripts/evaluate.py ckpt_path=model_epoch_50.pth scales=[2,3,4] benchmarks=[set5]   # DRRN port file
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from sr_adapt.utils.hydra import cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
@cli
def main(cfg: DictConfig) -> None:
    from sr_adapt.evaluate import evaluate

    choice = HydraConfig.get().runtime.choices.get("model")
    if not cfg.get("model_name") and choice != "auto":  # auto: the name comes from the checkpoint
        with open_dict(cfg):
            cfg.model_name = choice
    evaluate(cfg)


if __name__ == "__main__":
    main()
