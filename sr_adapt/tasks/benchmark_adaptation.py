"""``sr-adapt-benchmark-adaptation`` / ``python scripts/benchmark_adaptation.py``: measured LR-only
adaptation: does it help on a degradation the model never saw?

    python scripts/benchmark_adaptation.py hr_dir=../shared/data/benchmarks/Set14 output=adapt.json \
        paths.data_dir=../shared/data [degradation=aniso_jpeg] [source_ckpt=run/checkpoints/last.ckpt]


1. target domain: HR images of ``hr_dir`` degraded by ``degradation`` (blur, downscale,
   noise, JPEG) into LR images; the HR images are kept only for scoring;
2. source model: a DRN trained on bicubic pairs (``source_ckpt``, or trained here with
   the ``pretrain`` experiment);
3. adaptation: fine-tune it with the ``adapt`` experiment: paired source data + the target
   LR images as LR-only samples (dual loss only);
4. report target-domain Y-PSNR/SSIM of bicubic, the unadapted and the adapted model, and of
   any non-adapting ``baselines`` (checkpoints of other models, e.g. a DRRN trained on bicubic).

Each training phase is a training run (:func:`sr_adapt.training.fit.fit`, in this process) of the
``train`` config in its own folder under the benchmark's run folder (own checkpoints, logs and
metrics.json), so a phase can be inspected or re-run on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.config import CONF_PATH, HYDRA_VERSION, compose
from sr_adapt.data.degradations import Degradation
from sr_adapt.data.transforms import mod_crop
from sr_adapt.errors import ConfigError, SRAdaptError
from sr_adapt.evaluation.protocol import evaluate_folder
from sr_adapt.io.atomic import atomic_write_json
from sr_adapt.io.images import list_images, load_image, save_image
from sr_adapt.models.bicubic import Bicubic
from sr_adapt.tasks.common import cli, pick_device
from sr_adapt.training.fit import fit

log = logging.getLogger("sr_adapt.benchmark_adaptation")


def make_target_set(hr_dir: Path, out_dir: Path, degradation: Degradation) -> Path:
    """Writes ``out_dir/X{s}/{stem}x{s}.png`` = degradation(mod-cropped HR); returns the LR folder."""
    s = degradation.scale
    lr_dir = out_dir / f"X{s}"
    for i, path in enumerate(list_images(hr_dir, "hr_dir")):
        hr = mod_crop(load_image(path), s)
        save_image(degradation(hr[None], index=i)[0], lr_dir / f"{path.stem}x{s}.png")
    return lr_dir


def run_training(
    run_dir: Path, experiment: str, overrides: Sequence[str], values: Mapping[str, Any], paths: Mapping[str, Any]
) -> Path:
    """One training phase in this process, in ``run_dir``; returns its last checkpoint.

    ``overrides`` are Hydra override strings (the user's ``*.overrides``); ``values`` are set on
    the composed config as they are (paths with quotes or commas need no escaping); ``paths``
    are the benchmark's resolved ``paths.*``.
    """
    cfg = compose("train", [f"experiment={experiment}", *overrides])
    for key in ("root_dir", "data_dir", "log_dir"):
        OmegaConf.update(cfg, f"paths.{key}", str(paths[key]))
    OmegaConf.update(cfg, "paths.output_dir", str(run_dir))
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    log.info("training %s in %s", experiment, run_dir)
    try:
        fit(cfg)
    except SRAdaptError as e:
        raise SRAdaptError(f"training run in {run_dir} failed: {e}") from None
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise SRAdaptError(f"training run in {run_dir} left no {ckpt}")
    return ckpt


def _score(net: torch.nn.Module, hr_dir: Path, lr_dir: Path, scale: int, device: torch.device) -> dict[str, Any]:
    result = evaluate_folder(net.to(device).eval(), hr_dir, scale, device, lr_dir=lr_dir)
    return {"psnr": result["psnr"], "ssim": result["ssim"], "images": result["images"]}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Target set, source model, adaptation, scores; prints the table and writes the JSON report."""
    check_config(cfg)
    start = time.perf_counter()
    paths = OmegaConf.to_container(cfg.paths, resolve=True)
    work = Path(cfg.work_dir)
    hr_dir = Path(cfg.hr_dir)
    scale = int(cfg.scale)
    degradation = Degradation(scale=scale, **OmegaConf.to_container(cfg.degradation, resolve=True))
    device = pick_device(str(cfg.device))
    lr_dir = make_target_set(hr_dir, work / "target_lr", degradation)
    log.info("target set: %s degraded by %s -> %s", hr_dir, degradation.describe(), lr_dir)

    timings: dict[str, float] = {}
    if cfg.source_ckpt:
        source_ckpt = Path(cfg.source_ckpt)
    else:
        t = time.perf_counter()
        source_ckpt = run_training(work / "pretrain", cfg.pretrain.experiment, list(cfg.pretrain.overrides), {}, paths)
        timings["pretrain_s"] = time.perf_counter() - t
    source = load_checkpoint(source_ckpt, expect={"scale": scale})

    t = time.perf_counter()
    adapt_values = {
        "scale": scale,
        "model.init_from": str(source_ckpt),
        "data.train_sources.target.lr_dir": str(lr_dir),
        "data.val_sets": {"target": {"hr_dir": str(hr_dir), "lr_dir": str(lr_dir)}},
    }
    adapt_overrides = list(cfg.adapt.overrides)
    adapted_ckpt = run_training(work / "adapt", cfg.adapt.experiment, adapt_overrides, adapt_values, paths)
    timings["adapt_s"] = time.perf_counter() - t

    report: dict[str, Any] = {
        "target": {"hr_dir": str(hr_dir), "lr_dir": str(lr_dir), "degradation": degradation.describe(), "scale": scale},
        "bicubic": _score(Bicubic(scale), hr_dir, lr_dir, scale, device),
        "unadapted": _score(source.net, hr_dir, lr_dir, scale, device),
        "adapted": _score(load_checkpoint(adapted_ckpt, expect={"scale": scale}).net, hr_dir, lr_dir, scale, device),
        "baselines": {},
        "source_ckpt": str(source_ckpt),
        "adapted_ckpt": str(adapted_ckpt),
        "adapt_overrides": adapt_overrides,
        "adapt_values": adapt_values,
    }
    for path in cfg.get("baselines") or []:
        loaded = load_checkpoint(path, expect={"scale": scale})
        name = Path(str(path)).stem
        report["baselines"][name] = {
            **_score(loaded.net, hr_dir, lr_dir, scale, device),
            "model": str(loaded.meta.get("variant", loaded.net.arch)),
            "ckpt": str(path),
        }
    report["gain_db"] = report["adapted"]["psnr"] - report["unadapted"]["psnr"]
    timings["total_s"] = time.perf_counter() - start
    report["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    print(format_report(report))
    if cfg.output:
        atomic_write_json(report, cfg.output)
    return report


def format_report(report: dict[str, Any]) -> str:
    lines = [f"target: {report['target']['degradation']} ({report['target']['hr_dir']})",
             f"{'model':<12}{'PSNR':>8}{'SSIM':>8}"]
    for key in ("bicubic", "unadapted", "adapted"):
        lines.append(f"{key:<12}{report[key]['psnr']:>8.2f}{report[key]['ssim']:>8.4f}")
    for name, r in report.get("baselines", {}).items():
        lines.append(f"{name:<12}{r['psnr']:>8.2f}{r['ssim']:>8.4f}  ({r['model']}, not adapted)")
    lines.append(f"gain of adaptation: {report['gain_db']:+.2f} dB")
    return "\n".join(lines)


def check_config(cfg: DictConfig) -> None:
    if not cfg.get("hr_dir"):
        raise ConfigError("hr_dir is required: a folder of HR images of the target domain (e.g. hr_dir=.../Set14)")


@hydra.main(version_base=HYDRA_VERSION, config_path=CONF_PATH, config_name="benchmark_adaptation")
@cli
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
