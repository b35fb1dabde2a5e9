"""``sr-adapt-export`` / ``python scripts/export.py``: export a model to ONNX (dynamic height/width)
and check it with onnxruntime, or (``output=*.pt``) to our weights-only file (primal + duals, float32,
no optimizer state: what ships in ``sr_adapt/assets/weights``).

    python scripts/export.py ckpt_path=run/checkpoints/last.ckpt output=drn.onnx
    python scripts/export.py model=drn_s scale=4 ckpt_path=DRNS4x.pt output=drn_s_x4.onnx
    python scripts/export.py ckpt_path=run/checkpoints/last.ckpt output=drn_x4.pt
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from sr_adapt.checkpoints import load_checkpoint, save_weights
from sr_adapt.config import CONF_PATH, HYDRA_VERSION
from sr_adapt.errors import ConfigError, SRAdaptError
from sr_adapt.inference.onnx import export_onnx, verify_onnx
from sr_adapt.io.atomic import check_writable
from sr_adapt.tasks.common import cli, model_at_scale


def run(cfg: DictConfig) -> dict[str, Any]:
    """Loads the model like evaluate, exports it, verifies it with onnxruntime (tolerance ``atol``)."""
    if not cfg.get("output"):
        raise ConfigError("output is missing: give output=model.onnx")
    out = Path(str(cfg.output)).expanduser()
    if out.suffix.lower() not in (".onnx", ".pt"):
        raise ConfigError(f"output={out}: give a .onnx (ONNX graph) or .pt (weights-only) file name")
    if cfg.get("ckpt_path") and Path(str(cfg.ckpt_path)).expanduser().resolve() == out.resolve():
        raise ConfigError(f"output={out} is the checkpoint itself; choose another output path")
    check_writable(out)
    if out.suffix.lower() == ".pt":
        if not cfg.get("ckpt_path"):
            raise ConfigError("output=*.pt writes the weights of ckpt_path: give ckpt_path=FILE")
        loaded = load_checkpoint(cfg.ckpt_path, dual_path=cfg.get("dual_path"), expect={"scale": int(cfg.scale)})
        info = {k: loaded.meta[k] for k in ("global_step",) if k in loaded.meta}
        save_weights(loaded.net, loaded.duals, out, {**info, "exported_from": Path(str(cfg.ckpt_path)).name})
        return {"model": str(loaded.meta.get("variant", loaded.net.arch)), "scale": loaded.net.scale, "output": str(out),
                "duals": loaded.duals is not None, "bytes": out.stat().st_size}
    net, name = model_at_scale(cfg, torch.device("cpu"))
    result: dict[str, Any] = {"model": name, "scale": net.scale, "output": str(out), "y_only": net.y_only}
    if not net.graph_any_size:
        raise ConfigError(f"{name} does not export to ONNX: its traced graph runs only at one image size (windows, "
                          "grids or padding); output=*.pt exports its weights, and upscale runs it with backend=torch")
    try:
        export_onnx(net, out, opset=int(cfg.get("opset", 17)))
        err = verify_onnx(net, out) if cfg.get("verify", True) else None
    except SRAdaptError:
        raise
    except Exception as e:  # the exporter or onnxruntime: an architecture whose graph depends on the image size
        out.unlink(missing_ok=True)
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise SRAdaptError(f"{name} does not export to an ONNX graph that runs at every image size ({first[:200]}); "
                           f"output=*.pt exports its weights, and upscale runs it with backend=torch") from None
    if err is not None:
        result["max_abs_diff"] = err
        if err > float(cfg.get("atol", 1e-3)):
            raise SRAdaptError(f"{out}: onnxruntime output differs from PyTorch by {err:.2e} (> atol={cfg.get('atol', 1e-3)})")
    return result


@hydra.main(version_base=HYDRA_VERSION, config_path=CONF_PATH, config_name="export")
@cli
def main(cfg: DictConfig) -> None:
    result = run(cfg)
    check = f", onnxruntime vs PyTorch max abs diff {result['max_abs_diff']:.1e}" if "max_abs_diff" in result else ""
    print(f"wrote {result['output']} ({result['model']} x{result['scale']}{check})")


if __name__ == "__main__":
    main()
