"""``sr-adapt-benchmark-adaptation`` / ``python scripts/benchmark_adaptation.py``: does adapting to
LR-only target images help, measured against a control and a ceiling?

    python scripts/benchmark_adaptation.py hr_dir=../shared/data/benchmarks/Set14 output=adapt.json \
        [degradation=aniso_jpeg] [seeds=[1,2]] [paired_hr_dir=../shared/data/train/T91]

1. target domain: HR images of ``hr_dir`` degraded by ``degradation`` (blur, downscale, noise,
   JPEG) into LR images; the HR images are kept only for scoring;
2. estimate: the target degradation estimated from those LR images alone
   (:func:`sr_adapt.degradation.estimate.estimate_degradation`), its error against the truth;
3. source model: the shipped bicubic-trained DRN (``source_ckpt``; null: trained here first);
4. arms, each a fine-tuning of the source model for ``adapt.steps`` steps per seed that differ
   only in their ``arms.<name>`` overrides and degradation file: ``control`` (no target image),
   ``adapted`` (target images + the estimate), ``oracle`` (the true degradation);
5. report target-domain Y-PSNR/SSIM of bicubic, the unadapted model, every arm (mean, spread and
   per seed) and any non-adapting ``baselines``, the gain over the control and the share of the
   control-to-oracle gap closed, and the seconds of each phase.

Each training run is :func:`sr_adapt.training.fit.fit` of the ``train`` config, in this process, in
its own folder ``<run>/<arm>_seed<k>`` (checkpoints, logs, metrics.json).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.config import CONF_PATH, HYDRA_VERSION, compose
from sr_adapt.degradation import Degradation, DegradationRecord
from sr_adapt.degradation.estimate import estimate_degradation
from sr_adapt.data.transforms import mod_crop
from sr_adapt.errors import ConfigError, SRAdaptError
from sr_adapt.evaluation.protocol import evaluate_folder
from sr_adapt.io.atomic import atomic_write_json
from sr_adapt.io.images import list_images, load_image, save_image
from sr_adapt.models.bicubic import Bicubic
from sr_adapt.ops.metrics import psnr
from sr_adapt.tasks.common import cli, pick_device
from sr_adapt.training.fit import fit
from sr_adapt.training.target_degradation import clip_qp, estimate_options

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
    run_dir: Path, experiment: str, overrides: Sequence[str], values: Mapping[str, Any], paths: Mapping[str, Any],
    epoch_steps: int | None = None,
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
    if epoch_steps:  # one epoch: validated once, at the end
        OmegaConf.update(cfg, "data.epoch_size", int(epoch_steps) * int(cfg.data.batch_size), force_add=True)
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


def _estimate(lr_dir: Path, truth: DegradationRecord, cfg: DictConfig, work: Path) -> tuple[DegradationRecord, dict]:
    """The estimate from the target LR images alone, saved with its picture; its error against ``truth``."""
    files = list_images(lr_dir, "target LR")
    images = [load_image(f) for f in files]
    reference = [mod_crop(load_image(f), truth.scale) for f in list_images(Path(cfg.paired_hr_dir), "paired_hr_dir")]
    options = estimate_options(cfg)
    codec = options.pop("codec")  # a clip records its codec: auto takes the truth's, as read from a file
    options["video_qp"] = truth.video_qp if codec == "auto" else clip_qp(codec, [])
    record = estimate_degradation(images, truth.scale, reference[:8], [f.name for f in files], key="hr_dir (target LR)",
                                  **options)
    for name, rec in (("degradation_estimate", record), ("degradation_truth", truth)):
        rec.save(work / f"{name}.pt")
        save_image(torch.from_numpy(rec.picture()).permute(2, 0, 1).float() / 255, work / f"{name}.png")
    return record, estimate_error(record, truth)


def estimate_error(estimate: DegradationRecord, truth: DegradationRecord) -> dict[str, Any]:
    """How far an estimate is from the truth: blur sigmas (HR px), angle, noise, JPEG, the kernels'
    relative L2 distance and the PSNR between what the two kernels make of a random HR image."""
    e, t = estimate.summary(), truth.summary()
    size = max(estimate.kernel.shape[-1], truth.kernel.shape[-1])

    def padded(k: Tensor) -> Tensor:
        p = (size - k.shape[-1]) // 2
        return torch.nn.functional.pad(k, (p, p, p, p))

    ke, kt = padded(estimate.kernel), padded(truth.kernel)
    probe = torch.rand(1, 3, 64 * truth.scale, 64 * truth.scale, generator=torch.Generator().manual_seed(0))
    lr_psnr = float(psnr(estimate.downscale(probe), truth.downscale(probe), shave=2).mean())
    return {
        "sigma_major": round(e["sigma_major"] - t["sigma_major"], 3),
        "sigma_minor": round(e["sigma_minor"] - t["sigma_minor"], 3),
        "noise_sigma": round(float(np.mean(e["noise_sigma"]) - np.mean(t["noise_sigma"])), 3),
        "jpeg_quality": e["jpeg_quality"] - t["jpeg_quality"],
        "kernel_rel_l2": round(float((ke - kt).norm() / kt.norm()), 4),
        "lr_psnr_db": round(lr_psnr, 2),
        "estimate": e, "truth": t,
    }


def _mean_std(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ps, ss = [r["psnr"] for r in runs], [r["ssim"] for r in runs]
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "psnr_std": float(np.std(ps)),
            "ssim_std": float(np.std(ss)), "runs": runs}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Target set, estimate, source model, arms, scores; prints the table and writes the JSON report."""
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
    truth = DegradationRecord.from_synthetic(degradation)

    timings: dict[str, float] = {}
    arms = {k: v for k, v in (cfg.get("arms") or {}).items() if v is not None}
    estimate, error = None, None
    if any(a.get("degradation", "none") == "estimate" for a in arms.values()):
        t = time.perf_counter()
        estimate, error = _estimate(lr_dir, truth, cfg, work)
        timings["estimate_s"] = time.perf_counter() - t
        log.info("estimate: %s (truth: %s)", estimate.describe(), truth.describe())
    if cfg.source_ckpt:
        source_ckpt = Path(cfg.source_ckpt)
    else:
        t = time.perf_counter()
        source_ckpt = run_training(work / "pretrain", cfg.pretrain.experiment, list(cfg.pretrain.overrides), {}, paths)
        timings["pretrain_s"] = time.perf_counter() - t
    source = load_checkpoint(source_ckpt, expect={"scale": scale})

    files = {"none": None, "estimate": str(work / "degradation_estimate.pt"), "truth": str(work / "degradation_truth.pt")}
    if "truth" in {a.get("degradation") for a in arms.values()} and estimate is None:
        truth.save(files["truth"])
    steps = int(cfg.adapt.steps)
    report_arms: dict[str, Any] = {}
    for name, arm in arms.items():
        kind = str(arm.get("degradation", "none"))
        runs = []
        for seed in cfg.seeds:
            t = time.perf_counter()
            overrides = [*cfg.adapt.overrides, *arm.get("overrides", [])]
            values = {
                "scale": scale, "seed": int(seed), "trainer.max_steps": steps,
                "model.init_from": str(source_ckpt),
                "degradation_file": files.get(kind, kind),
                "data.train_sources.paired.hr_dir": str(cfg.paired_hr_dir),
                "data.train_sources.paired.skip_bad": True,  # e.g. T91's one image smaller than the patch
                "data.train_sources.target.lr_dir": str(lr_dir),
                "data.val_sets": {"target": {"hr_dir": str(hr_dir), "lr_dir": str(lr_dir)}},
            }
            ckpt = run_training(work / f"{name}_seed{seed}", cfg.adapt.experiment, overrides, values, paths,
                                epoch_steps=steps)
            score = _score(load_checkpoint(ckpt, expect={"scale": scale}).net, hr_dir, lr_dir, scale, device)
            runs.append({"seed": int(seed), **score, "ckpt": str(ckpt), "seconds": round(time.perf_counter() - t, 1)})
            timings[f"{name}_seed{seed}_s"] = time.perf_counter() - t
        report_arms[name] = {"degradation": kind, "overrides": list(arm.get("overrides", [])), **_mean_std(runs)}

    report: dict[str, Any] = {
        "target": {"hr_dir": str(hr_dir), "lr_dir": str(lr_dir), "degradation": degradation.describe(), "scale": scale},
        "bicubic": _score(Bicubic(scale), hr_dir, lr_dir, scale, device),
        "unadapted": _score(source.net, hr_dir, lr_dir, scale, device),
        **report_arms,
        "arms": list(report_arms),
        "estimate_error": error,
        "baselines": {},
        "seeds": [int(s) for s in cfg.seeds],
        "source_ckpt": str(source_ckpt),
        "paired_hr_dir": str(cfg.paired_hr_dir),
        "adapt": {"experiment": cfg.adapt.experiment, "steps": steps, "overrides": list(cfg.adapt.overrides)},
    }
    for path in cfg.get("baselines") or []:
        loaded = load_checkpoint(path, expect={"scale": scale})
        name = Path(str(path)).stem
        report["baselines"][name] = {
            **_score(loaded.net, hr_dir, lr_dir, scale, device),
            "model": str(loaded.meta.get("variant", loaded.net.arch)),
            "ckpt": str(path),
        }
    if "adapted" in report_arms and "control" in report_arms:
        report["gain_db"] = report["adapted"]["psnr"] - report["control"]["psnr"]
        if "oracle" in report_arms:
            gap = report["oracle"]["psnr"] - report["control"]["psnr"]
            report["gap_closed"] = report["gain_db"] / gap if abs(gap) > 1e-6 else None
    timings["total_s"] = time.perf_counter() - start
    report["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    print(format_report(report))
    if cfg.output:
        atomic_write_json(report, cfg.output)
    return report


def format_report(report: dict[str, Any]) -> str:
    seeds = report.get("seeds", [])
    lines = [f"target: {report['target']['degradation']} ({report['target']['hr_dir']}), seeds {seeds}",
             f"{'model':<12}{'PSNR':>8}{'+-':>6}{'SSIM':>8}"]
    for key in ("bicubic", "unadapted", *report.get("arms", [])):
        r = report[key]
        lines.append(f"{key:<12}{r['psnr']:>8.2f}{r.get('psnr_std', 0.0):>6.2f}{r['ssim']:>8.4f}")
    for name, r in report.get("baselines", {}).items():
        lines.append(f"{name:<12}{r['psnr']:>8.2f}{'':>6}{r['ssim']:>8.4f}  ({r['model']}, not adapted)")
    err = report.get("estimate_error")
    if err:
        lines.append(f"estimate - truth: sigma {err['sigma_major']:+.2f}/{err['sigma_minor']:+.2f} HR px, noise "
                     f"{err['noise_sigma']:+.2f}/255, JPEG {err['jpeg_quality']:+d}, kernel rel. L2 {err['kernel_rel_l2']:.3f}, "
                     f"LR agreement {err['lr_psnr_db']:.1f} dB")
    if "gain_db" in report:
        closed = report.get("gap_closed")
        lines.append(f"adapted - control: {report['gain_db']:+.2f} dB"
                     + (f"; control-to-oracle gap closed: {closed:.0%}" if closed is not None else ""))
    lines.append(f"seconds: {report['seconds']}")
    return "\n".join(lines)


def check_config(cfg: DictConfig) -> None:
    if not cfg.get("hr_dir"):
        raise ConfigError("hr_dir is required: a folder of HR images of the target domain (e.g. hr_dir=.../Set14)")
    for name, arm in (cfg.get("arms") or {}).items():
        kind = str(arm.get("degradation", "none")) if arm is not None else "none"
        if kind not in ("none", "estimate", "truth") and not Path(kind).is_file():
            raise ConfigError(f"arms.{name}.degradation={kind!r} must be none, estimate, truth or the path of a "
                              "degradation file (.pt, e.g. written by an earlier run)")


@hydra.main(version_base=HYDRA_VERSION, config_path=CONF_PATH, config_name="benchmark_adaptation")
@cli
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
