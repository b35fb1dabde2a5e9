"""Compare models in one markdown table over benchmarks and scales (see sr_adapt/compare.py).

    python scripts/compare.py models=[bicubic,drrn.pth,DRNS4x.pt] scales=[2,3,4] \
        benchmarks=[set5,set14] output=table.md
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from sr_adapt.utils.hydra import cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="compare")
@cli
def main(cfg: DictConfig) -> None:
    from sr_adapt.compare import compare

    compare(cfg)


if __name__ == "__main__":
    main()
