"""Randomly initialised community SR networks saved in the key layouts of their public releases (no
download): what ``model.init_from`` / ``ckpt_path`` meet in the wild, built small enough for tests."""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

#: name -> (spandrel architecture, constructor keywords, scale, how the release stores it)
COMMUNITY = {
    # SPAN releases (OpenModelDB): a bare state_dict in .safetensors
    "span": ("SPAN", {"num_in_ch": 3, "num_out_ch": 3, "feature_channels": 16, "upscale": 4}, 4, "safetensors"),
    # SwinIR releases (JingyunLiang/SwinIR): {"params": state_dict}, lightweight = pixelshuffledirect
    "swinir": ("SwinIR", {"upscale": 2, "img_size": 32, "window_size": 8, "embed_dim": 12, "depths": [2],
                          "num_heads": [2], "mlp_ratio": 2.0, "upsampler": "pixelshuffledirect"}, 2, "params"),
    # RCAN (BasicSR model zoo): {"params": state_dict}
    "rcan": ("RCAN", {"scale": 3, "n_resgroups": 1, "n_resblocks": 2, "n_feats": 16, "reduction": 4}, 3, "params"),
    # Real-ESRGAN RealESRGAN_x4plus: {"params_ema": state_dict} of RRDBNet (BasicSR key names)
    "rrdbnet": ("ESRGAN", {"num_filters": 16, "num_blocks": 1, "scale": 4}, 4, "params_ema"),
    # Real-ESRGAN realesr-general-x4v3: {"params": state_dict} of SRVGGNetCompact
    "compact": ("Compact", {"num_feat": 16, "num_conv": 2, "upscale": 4}, 4, "params"),
    # not SR: a DnCNN denoiser (KAIR), a bare state_dict
    "dncnn": ("DnCNN", {"in_nc": 3, "out_nc": 3, "nc": 16, "nb": 5}, 1, "bare"),
}


def spandrel_class(architecture: str) -> type:
    """spandrel's module class of ``architecture`` (its package exports it under that name)."""
    return getattr(importlib.import_module(f"spandrel.architectures.{architecture}"), architecture)


def save_community(name: str, folder: Path, seed: int = 0) -> Path:
    """Builds COMMUNITY[name] with random weights (seeded) and saves it like its public release."""
    architecture, kwargs, _, layout = COMMUNITY[name]
    torch.manual_seed(seed)
    model = spandrel_class(architecture)(**kwargs)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "safetensors":
        from safetensors.torch import save_file

        path = folder / f"{name}.safetensors"
        save_file(sd, str(path))
        return path
    path = folder / f"{name}.pth"
    torch.save(sd if layout == "bare" else {layout: sd}, path)
    return path
