"""Upscale an image, a folder of images or a video (tiled, bounded memory, exact seams).

    python scripts/upscale.py ckpt_path=run/checkpoints/last.ckpt input=clip.mp4 output=clip_x4.mp4 tile=256
    python scripts/upscale.py model=drn_s scale=4 ckpt_path=DRNS4x.pt input=photos/ output=photos_x4/ ensemble=true
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from sr_adapt.utils.hydra import cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="upscale")
@cli
def main(cfg: DictConfig) -> None:
    from sr_adapt.inference.upscale import upscale

    if not cfg.get("model_name") and HydraConfig.get().runtime.choices.get("model") != "auto":
        with open_dict(cfg):
            cfg.model_name = HydraConfig.get().runtime.choices.get("model")
    summary = upscale(cfg)
    print(f"wrote {summary['outputs'][0] if len(summary['outputs']) == 1 else str(len(summary['outputs'])) + ' images'}"
          f" in {summary['seconds']:.1f} s")


if __name__ == "__main__":
    main()
