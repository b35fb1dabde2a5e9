"""Train or fine-tune a super-resolution model.

    python scripts/train.py experiment=drn_paired [key=value ...]
    python scripts/train.py experiment=drn_paired debug=fast      # smoke run on bundled images
    python scripts/train.py -m experiment=... model.dual_weight=0.01,0.1,1   # sweep
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sr_adapt.utils.hydra import cli  # registers the config resolvers


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
@cli
def main(cfg: DictConfig) -> float | None:
    from sr_adapt.train import metric_value, train

    metrics = train(cfg)
    return metric_value(metrics, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
