"""Benchmark evaluation with the paper protocol.

Protocol (DRN / BasicSR / MATLAB): HR mod-cropped to the scale, LR = MATLAB bicubic
downscale quantized to 8 bit (or a given LR folder), SR output quantized to 8 bit,
PSNR and SSIM on the studio-swing Y channel with ``shave = scale`` pixels removed at
every border, dataset value = mean of the per-image values.

Luma-only models (DRRN) are scored on their own Y output (quantized to 8 bit) against the Y
of the HR image, so the RGB round trip of their saved images does not enter the numbers; the
HR Y is the same unrounded ``rgb_to_y`` of the 8-bit HR image as for RGB models (MATLAB's
``rgb2ycbcr`` on uint8 would round it: < 0.01 dB at these PSNRs).

``fixed_size=N`` is the deployment protocol of fixed-shape graphs: the network input is resized
(MATLAB bicubic, 8 bit) to N x N -- for a luma model the bicubic-upsampled Y, for an RGB model
the LR image -- and the ground truth to the output size, N x N or sN x sN.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, open_dict
from torch import Tensor

from sr_adapt.data.image_io import save_image
from sr_adapt.data.paired import BenchmarkFolderDataset
from sr_adapt.errors import ConfigError
from sr_adapt.inference.ensemble import self_ensemble
from sr_adapt.io.atomic import atomic_write_json
from sr_adapt.io.checkpoints import load_checkpoint
from sr_adapt.models.base import SRModel
from sr_adapt.ops.color import quantize, rgb_to_y
from sr_adapt.ops.metrics import psnr, ssim
from sr_adapt.ops.resize import imresize
from sr_adapt.utils.hydra import instantiate

log = logging.getLogger("sr_adapt.evaluate")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available (use device=cpu)")
    return torch.device(name)


def build_eval_model(cfg: DictConfig) -> tuple[SRModel, str]:
    """The net of ``cfg.model`` with the weights of ``cfg.ckpt_path``; returns (net, name).

    ``model=auto`` takes the architecture from the checkpoint (only the scale is checked);
    a named model (``model=drn_s``) must match the checkpoint exactly (variant and scale).
    """
    ckpt_path = cfg.get("ckpt_path")
    if cfg.model.get("net") is None:
        if not ckpt_path:
            raise ConfigError("model=auto needs ckpt_path=FILE (or choose a model, e.g. model=bicubic)")
        loaded = load_checkpoint(ckpt_path, expect={"scale": int(cfg.scale)})
        return loaded.net, cfg.get("model_name") or loaded.meta.get("variant", loaded.net.arch)
    net: SRModel = instantiate(cfg.model.net)
    name = cfg.get("model_name") or cfg.model.net._target_.rsplit(".", 1)[-1]
    if ckpt_path:
        net = load_checkpoint(ckpt_path, expect={"arch": net.arch, **net.hparams()}).net
    elif net.num_parameters() > 0:
        raise ConfigError(f"model={name} has trainable weights: pass ckpt_path=FILE (ours, official .pt or .pdparams)")
    return net, name


def resolve_benchmarks(cfg: DictConfig) -> list[Path]:
    """``benchmarks`` entries: a named set in ``paths.benchmarks`` (set5, set14, ...) or a folder path."""
    named = cfg.paths.get("benchmarks", {}) or {}
    folders = []
    for entry in cfg.benchmarks:
        key = str(entry)
        folders.append(Path(named[key.lower()]) if key.lower() in named else Path(key))
    if not folders:
        raise ConfigError("benchmarks is empty: give benchmarks=[set5] or benchmarks=[/path/to/HR_folder]")
    return folders


@torch.no_grad()
def protocol_pair(
    net: SRModel, lr: Tensor, hr: Tensor, fixed_size: int | None = None, ensemble: bool = False
) -> tuple[Tensor, Tensor]:
    """(prediction, target) to score with :func:`psnr`/:func:`ssim` (``shave = net.scale``).

    Args:
        lr: (B, 3, h, w) RGB in [0, 1]; hr: (B, 3, h*s, w*s) RGB in [0, 1], s = ``net.scale``.
        fixed_size: resize the network input to this square size first (see module docstring).
        ensemble: x8 geometric self-ensemble (mean over flips / transpositions of the input).
    Returns:
        RGB models: quantized (B, 3, H, W) SR and ``hr``; luma models: quantized (B, 1, H, W) SR Y
        and the Y of ``hr``.
    """
    s = net.scale

    def run(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
        return quantize((self_ensemble(fn, x) if ensemble else fn(x)).float())

    if fixed_size is None:
        if net.y_only:
            return run(net.super_resolve_y, lr), rgb_to_y(hr)
        return run(net.super_resolve, lr), hr
    size = (int(fixed_size), int(fixed_size))
    if net.y_only:
        y_up = quantize(net.upsample_input(lr)[:, :1])
        return run(net, quantize(imresize(y_up, size=size))), quantize(imresize(rgb_to_y(hr), size=size))
    return run(net.super_resolve, quantize(imresize(lr, size=size))), quantize(imresize(hr, size=(size[0] * s, size[1] * s)))


@torch.no_grad()
def evaluate_folder(
    net: SRModel, folder: Path, scale: int, device: torch.device, save_dir: Path | None = None,
    lr_dir: Path | None = None, fixed_size: int | None = None, ensemble: bool = False,
) -> dict[str, Any]:
    """PSNR/SSIM of ``net`` (set to ``scale``) on the HR images of ``folder``; optionally saves the SR PNGs.

    LR inputs are the MATLAB-bicubic downscale of HR, or the files of ``lr_dir``
    (``lr_dir[/X{s}]/{stem}x{s}.png``: another degradation). Saved images are the RGB output of
    ``super_resolve`` (luma models: their Y with bicubic Cb/Cr), whatever ``fixed_size`` is.
    """
    net.set_scale(scale)
    dataset = BenchmarkFolderDataset(folder, scale, lr_dir=lr_dir, config_key="benchmarks")
    per_image: dict[str, dict[str, float]] = {}
    for item in dataset:
        lr = item["lr"].unsqueeze(0).to(device)
        hr = item["hr"].unsqueeze(0).to(device)
        pred, target = protocol_pair(net, lr, hr, fixed_size, ensemble)
        per_image[item["name"]] = {
            "psnr": float(psnr(pred, target, shave=scale)[0]),
            "ssim": float(ssim(pred, target, shave=scale)[0]),
        }
        if save_dir is not None:
            if not net.y_only and fixed_size is None:
                sr = pred
            elif ensemble:
                sr = quantize(self_ensemble(net.super_resolve, lr).float())
            else:
                sr = quantize(net.super_resolve(lr).float())
            save_image(sr[0].cpu(), save_dir / f"{item['name']}.png")  # PNG whatever the input format
    n = len(per_image)
    return {
        "psnr": sum(v["psnr"] for v in per_image.values()) / n,
        "ssim": sum(v["ssim"] for v in per_image.values()) / n,
        "images": n,
        "per_image": per_image,
    }


def eval_scales(cfg: DictConfig) -> list[int]:
    """``scales=[2,3,4]`` when given (one model at several scales), else ``[scale]``."""
    scales = cfg.get("scales")
    if scales is None:
        return [int(cfg.scale)]
    if isinstance(scales, (int, str)):
        scales = [scales]
    if not scales:
        raise ConfigError("scales is empty: give scales=[2,3,4] or leave it null to use scale")
    return [int(s) for s in scales]


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    device = pick_device(str(cfg.get("device", "auto")))
    scales = eval_scales(cfg)
    with open_dict(cfg):
        cfg.scale = scales[0]
    net, name = build_eval_model(cfg)
    net = net.to(device).eval()
    for scale in scales:
        if scale not in net.supported_scales():
            raise ConfigError(
                f"scale={scale}: {name} serves scale(s) {list(net.supported_scales())}; "
                "pick one of those (scale=... or scales=[...])"
            )
    fixed_size = cfg.get("fixed_size")
    ensemble = bool(cfg.get("ensemble", False))
    folders = resolve_benchmarks(cfg)
    lr_dir = Path(cfg.lr_dir) if cfg.get("lr_dir") else None
    if lr_dir is not None and len(folders) > 1:
        raise ConfigError(f"lr_dir={lr_dir} pairs LR files with one benchmark; give a single entry in benchmarks")
    if fixed_size is not None and (int(fixed_size) < 16):
        raise ConfigError(f"fixed_size={fixed_size}: give an input size >= 16 pixels (the seed's protocol uses 256)")
    report: dict[str, Any] = {
        "model": {
            "name": name, "scale": scales[0], "scales": scales, "params": net.num_parameters(),
            "ckpt_path": cfg.get("ckpt_path"), "fixed_size": fixed_size, "ensemble": ensemble,
            "lr_dir": str(lr_dir) if lr_dir else None,
        },
        "results": {},
    }
    save_root = Path(cfg.save_dir) if cfg.get("save_dir") else None
    for scale in scales:
        for folder in folders:
            start = time.perf_counter()
            key = folder.name if len(scales) == 1 else f"{folder.name}_x{scale}"
            save_dir = None
            if save_root is not None:
                save_dir = save_root / key if len(folders) * len(scales) > 1 else save_root
            result = evaluate_folder(net, folder, scale, device, save_dir, lr_dir=lr_dir, fixed_size=fixed_size,
                                     ensemble=ensemble)
            result.update(scale=scale, seconds=round(time.perf_counter() - start, 3))
            report["results"][key] = result
    print(format_table(report))
    if cfg.get("output"):
        atomic_write_json(report, cfg.output)
        log.info("wrote %s", cfg.output)
    return report


def format_table(report: dict[str, Any]) -> str:
    m = report["model"]
    lines = [
        f"{m['name']} x{'/x'.join(map(str, m['scales']))} ({m['params']:,} parameters)",
        f"{'benchmark':<16}{'scale':>6}{'images':>7}{'PSNR':>9}{'SSIM':>8}",
    ]
    for bench, r in report["results"].items():
        lines.append(f"{bench:<16}{'x' + str(r['scale']):>6}{r['images']:>7}{r['psnr']:>9.2f}{r['ssim']:>8.4f}")
    return "\n".join(lines)
