"""``sr-adapt-evaluate`` / ``python scripts/evaluate.py``: score a model on benchmark sets with the paper protocol.

    python scripts/evaluate.py model=bicubic scale=4 benchmarks=[set5,set14] output=bicubic.json
    python scripts/evaluate.py model=drn_s scale=4 ckpt_path=DRNS4x.pt benchmarks=[set5] save_dir=sr/
    python scripts/evaluate.py ckpt_path=model_epoch_50.pth scales=[2,3,4] benchmarks=[set5]   # DRRN port file
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, open_dict

from sr_adapt.config import CONF_PATH, HYDRA_VERSION
from sr_adapt.errors import ConfigError, SRAdaptError
from sr_adapt.evaluation.benchmarks import resolve_benchmarks
from sr_adapt.evaluation.protocol import evaluate_folder
from sr_adapt.inference.backend import plan_backend, with_backend
from sr_adapt.io.atomic import atomic_write_json
from sr_adapt.io.images import image_size, list_images
from sr_adapt.tasks.common import build_model, cli, eval_scales, pick_device

log = logging.getLogger("sr_adapt.evaluate")


def run(cfg: DictConfig) -> dict[str, Any]:
    """Scores the model on every benchmark and scale; prints the table, writes the JSON report."""
    device = pick_device(str(cfg.get("device", "auto")))
    scales = eval_scales(cfg)
    with open_dict(cfg):
        cfg.scale = scales[0]
    backend, precision = str(cfg.get("backend", "auto")), str(cfg.get("precision", "fp32"))
    plan_backend(backend, precision, device)
    net, name = build_model(cfg)
    folders = resolve_benchmarks(cfg.benchmarks, cfg.paths.get("benchmarks"))
    net, backend, tiler_precision = with_backend(net.to(device).eval(), backend, device, precision, cfg.paths.cache_dir,
                                                 cfg.get("reference_images"),
                                                 job_size=lambda: _lr_pixels(folders, scales, cfg))
    for scale in scales:
        if scale not in net.supported_scales():
            raise ConfigError(
                f"scale={scale}: {name} serves scale(s) {list(net.supported_scales())}; "
                "pick one of those (scale=... or scales=[...])"
            )
    fixed_size = cfg.get("fixed_size")
    ensemble = bool(cfg.get("ensemble", False))
    lr_dir = Path(cfg.lr_dir) if cfg.get("lr_dir") else None
    if lr_dir is not None and len(folders) > 1:
        raise ConfigError(f"lr_dir={lr_dir} pairs LR files with one benchmark; give a single entry in benchmarks")
    if fixed_size is not None and (int(fixed_size) < 16):
        raise ConfigError(f"fixed_size={fixed_size}: give an input size >= 16 pixels (the seed's protocol uses 256)")
    report: dict[str, Any] = {
        "model": {
            "name": name, "scale": scales[0], "scales": scales, "params": net.num_parameters(),
            "ckpt_path": cfg.get("ckpt_path"), "fixed_size": fixed_size, "ensemble": ensemble,
            "lr_dir": str(lr_dir) if lr_dir else None, "backend": backend, "precision": precision,
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
                                     ensemble=ensemble, precision=tiler_precision)
            result.update(scale=scale, seconds=round(time.perf_counter() - start, 3))
            report["results"][key] = result
    print(format_table(report))
    if cfg.get("output"):
        atomic_write_json(report, cfg.output)
        log.info("wrote %s", cfg.output)
    return report


def _lr_pixels(folders: list[Path], scales: list[int], cfg: DictConfig) -> tuple[int, int] | None:
    """(the evaluation's input pixels, those of its largest image): HR sizes from the headers over the scales, what
    ``backend=auto`` weighs the engines by (whole images, one call each); None when a folder cannot be listed
    (the evaluation itself then names it)."""
    try:
        hr = [h * w for f in folders for h, w in (image_size(p) for p in list_images(f, "benchmarks"))]
    except SRAdaptError:
        return None
    fixed = cfg.get("fixed_size")
    if fixed:  # every input is a fixed_size square
        total, largest = len(hr) * len(scales) * int(fixed) ** 2, int(fixed) ** 2
    else:
        total, largest = sum(sum(hr) // (s * s) for s in scales), max(hr) // min(scales) ** 2
    return total * (8 if cfg.get("ensemble") else 1), largest


def format_table(report: dict[str, Any]) -> str:
    m = report["model"]
    lines = [
        f"{m['name']} x{'/x'.join(map(str, m['scales']))} ({m['params']:,} parameters)",
        f"{'benchmark':<16}{'scale':>6}{'images':>7}{'PSNR':>9}{'SSIM':>8}",
    ]
    for bench, r in report["results"].items():
        lines.append(f"{bench:<16}{'x' + str(r['scale']):>6}{r['images']:>7}{r['psnr']:>9.2f}{r['ssim']:>8.4f}")
    return "\n".join(lines)


@hydra.main(version_base=HYDRA_VERSION, config_path=CONF_PATH, config_name="evaluate")
@cli
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
