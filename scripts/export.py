"""Export a model to ONNX (dynamic height/width) and check it with onnxruntime.

    python scripts/export.py ckpt_path=run/checkpoints/last.ckpt output=drn.onnx
    python scripts/export.py model=drn_s scale=4 ckpt_path=DRNS4x.pt output=drn_s_x4.onnx
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from sr_adapt.utils.hydra import cli


@hydra.main(version_base="1.3", config_path="../conf", config_name="export")
@cli
def main(cfg: DictConfig) -> None:
    from sr_adapt.export import export

    if not cfg.get("model_name") and HydraConfig.get().runtime.choices.get("model") != "auto":
        with open_dict(cfg):
            cfg.model_name = HydraConfig.get().runtime.choices.get("model")
    result = export(cfg)
    check = f", onnxruntime vs PyTorch max abs diff {result['max_abs_diff']:.1e}" if "max_abs_diff" in result else ""
    print(f"wrote {result['output']} ({result['model']} x{result['scale']}{check})")


if __name__ == "__main__":
    main()
