"""Benchmark evaluation with the paper protocol.

Protocol (DRN / BasicSR / MATLAB): HR mod-cropped to the scale, LR = MATLAB bicubic
downscale quantized to 8 bit (or a given LR folder), SR output quantized to 8 bit,
PSNR and SSIM on the studio-swing Y channel with ``shave = scale`` pixels removed at
every border, dataset value = mean of the per-image values.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from sr_adapt.data.image_io import save_image
from sr_adapt.data.paired import BenchmarkFolderDataset
from sr_adapt.errors import ConfigError
from sr_adapt.io.atomic import atomic_write_json
from sr_adapt.io.checkpoints import load_checkpoint
from sr_adapt.models.base import SRModel
from sr_adapt.ops.color import quantize
from sr_adapt.ops.metrics import psnr, ssim
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
def evaluate_folder(
    net: SRModel, folder: Path, scale: int, device: torch.device, save_dir: Path | None = None,
    lr_dir: Path | None = None,
) -> dict[str, Any]:
    """PSNR/SSIM of ``net`` on the HR images of ``folder``; optionally saves the SR PNGs.

    LR inputs are the MATLAB-bicubic downscale of HR, or the files of ``lr_dir``
    (``lr_dir[/X{s}]/{stem}x{s}.png``: another degradation).
    """
    dataset = BenchmarkFolderDataset(folder, scale, lr_dir=lr_dir, config_key="benchmarks")
    per_image: dict[str, dict[str, float]] = {}
    for item in dataset:
        lr = item["lr"].unsqueeze(0).to(device)
        hr = item["hr"].unsqueeze(0).to(device)
        sr = quantize(net.super_resolve(lr).float())
        per_image[item["name"]] = {
            "psnr": float(psnr(sr, hr, shave=scale)[0]),
            "ssim": float(ssim(sr, hr, shave=scale)[0]),
        }
        if save_dir is not None:
            save_image(sr[0].cpu(), save_dir / f"{item['name']}.png")  # PNG whatever the input format
    n = len(per_image)
    return {
        "psnr": sum(v["psnr"] for v in per_image.values()) / n,
        "ssim": sum(v["ssim"] for v in per_image.values()) / n,
        "images": n,
        "per_image": per_image,
    }


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    device = pick_device(str(cfg.get("device", "auto")))
    net, name = build_eval_model(cfg)
    net = net.to(device).eval()
    scale = int(cfg.scale)
    try:
        net.set_scale(scale)
    except ValueError as e:
        raise ConfigError(f"scale={scale}: {e}") from None
    report: dict[str, Any] = {
        "model": {"name": name, "scale": scale, "params": net.num_parameters(), "ckpt_path": cfg.get("ckpt_path")},
        "results": {},
    }
    save_root = Path(cfg.save_dir) if cfg.get("save_dir") else None
    folders = resolve_benchmarks(cfg)
    for folder in folders:
        start = time.perf_counter()
        save_dir = None
        if save_root is not None:
            save_dir = save_root / folder.name if len(folders) > 1 else save_root
        result = evaluate_folder(net, folder, scale, device, save_dir)
        result["seconds"] = round(time.perf_counter() - start, 3)
        report["results"][folder.name] = result
    print(format_table(report))
    if cfg.get("output"):
        atomic_write_json(report, cfg.output)
        log.info("wrote %s", cfg.output)
    return report


def format_table(report: dict[str, Any]) -> str:
    m = report["model"]
    lines = [
        f"{m['name']} x{m['scale']} ({m['params']:,} parameters)",
        f"{'benchmark':<16}{'images':>7}{'PSNR':>9}{'SSIM':>8}",
    ]
    for bench, r in report["results"].items():
        lines.append(f"{bench:<16}{r['images']:>7}{r['psnr']:>9.2f}{r['ssim']:>8.4f}")
    return "\n".join(lines)
