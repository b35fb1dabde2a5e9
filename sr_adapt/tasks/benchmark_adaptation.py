"""``sr-adapt-benchmark-adaptation`` / ``python scripts/benchmark_adaptation.py``: does adapting to
LR-only target images help, measured against a control and a ceiling?

    python scripts/benchmark_adaptation.py hr_dir=../shared/data/benchmarks/Set14 output=adapt.json \
        [degradation=aniso_jpeg|div2krk] [seeds=[1,2]] [paired_hr_dir=../shared/data/train/T91] [per_image=true]

1. target domain: HR images of ``hr_dir`` degraded by ``degradation`` (blur, downscale, noise,
   JPEG; ``div2krk``: a DIV2KRK kernel drawn per image) into LR images; the HR images are kept only
   for scoring;
2. estimate: the target degradation estimated from those LR images alone (one
   :class:`~sr_adapt.training.target_degradation.EstimateRequest`, as a training run makes it), its
   error against the truth; a ``kernelgan`` arm's kernel comes from the KernelGAN-style estimate
   (:mod:`sr_adapt.degradation.kernelgan`) of the same images;
3. source model: the shipped bicubic-trained DRN (``source_ckpt``; null: trained here first);
4. arms, each a fine-tuning of the source model for ``adapt.steps`` steps per seed that differ
   only in their ``arms.<name>`` overrides and degradation: ``control`` (no target image),
   ``adapted`` (target images + the estimate), ``oracle`` (the true degradation), ``kernelgan``;
5. report target-domain Y-PSNR/SSIM of bicubic, the unadapted model, every arm (mean, spread and
   per seed) and any non-adapting ``baselines``, the gain over the control and the share of the
   control-to-oracle gap closed, and the seconds of each phase.

``per_image`` (``auto``: when the degradation draws a kernel per image): every image is its own
target -- its own estimate and its own fine-tuning of the source model in every arm (the oracle with
that image's true kernel); the control, which sees no target image, is trained once per seed and
scored on every image. The report then has a row per image and the seconds per image; a set's score
is the mean of its images'. ``per_image=false`` pools the whole set as one target (a video shot).

Each training run is :func:`sr_adapt.training.fit.fit` of the ``train`` config, in this process, in
its own folder ``<run>/<arm>_seed<k>`` (per image: ``<run>/images/<image>/<arm>_seed<k>``).

Over 400 lines: the per-set and per-image runs share the arms, their records and scoring; the measures
and the report's text are in :mod:`sr_adapt.evaluation.adaptation_report`.
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

from sr_adapt.checkpoints import load_checkpoint, save_weights
from sr_adapt.config import CONF_PATH, HYDRA_VERSION, compose, instantiate
from sr_adapt.data.transforms import mod_crop
from sr_adapt.degradation import Degradation, DegradationRecord
from sr_adapt.degradation.kernelgan import kernelgan_kernel
from sr_adapt.errors import ConfigError, SRAdaptError
from sr_adapt.evaluation.adaptation_report import estimate_error, format_report, mean_std
from sr_adapt.evaluation.protocol import evaluate_folder
from sr_adapt.io.atomic import atomic_write_json
from sr_adapt.io.images import list_images, load_image, save_image
from sr_adapt.models.bicubic import Bicubic
from sr_adapt.tasks.common import cli, pick_device
from sr_adapt.training.fit import fit
from sr_adapt.training.target_degradation import (EstimateRequest, clip_qp, estimate_options, fit_internal_pairs,
                                                  reference_images, resolve_degradation)

log = logging.getLogger("sr_adapt.benchmark_adaptation")

ARM_KINDS = ("none", "estimate", "truth", "kernelgan")


def make_target_set(hr_dir: Path, out_dir: Path, degradation: Degradation) -> tuple[Path, Path, list[str]]:
    """Writes the mod-cropped HR images to ``out_dir/HR/{stem}.png`` and their degradation (image ``i``:
    ``degradation(hr, index=i)``) to ``out_dir/X{s}/{stem}x{s}.png``; returns (HR folder, LR folder, stems)."""
    s = degradation.scale
    hr_out, lr_dir = out_dir / "HR", out_dir / f"X{s}"
    stems = []
    for i, path in enumerate(list_images(hr_dir, "hr_dir")):
        hr = mod_crop(load_image(path), s)
        save_image(hr, hr_out / f"{path.stem}.png")
        save_image(degradation(hr[None], index=i)[0], lr_dir / f"{path.stem}x{s}.png")
        stems.append(path.stem)
    return hr_out, lr_dir, stems


def run_training(
    run_dir: Path, experiment: str, overrides: Sequence[str], values: Mapping[str, Any], paths: Mapping[str, Any],
    epoch_steps: int | None = None,
) -> Path:
    """One training phase in this process, in ``run_dir``; returns its last checkpoint.

    ``overrides`` are Hydra override strings (the user's ``*.overrides``); ``values`` are set on
    the composed config as they are (paths with quotes or commas need no escaping); ``paths``
    are the benchmark's resolved ``paths.*``. With ``trainer.max_steps`` 0 nothing is trained: the
    model is built as the run would start it (its initial weights and input correction) and saved as
    ``run_dir/weights.pt``.
    """
    cfg = compose("train", [f"experiment={experiment}", *overrides])
    for key in ("root_dir", "data_dir", "log_dir"):
        OmegaConf.update(cfg, f"paths.{key}", str(paths[key]))
    OmegaConf.update(cfg, "paths.output_dir", str(run_dir))
    for key, value in values.items():
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    if epoch_steps:  # one epoch: validated once, at the end
        OmegaConf.update(cfg, "data.epoch_size", int(epoch_steps) * int(cfg.data.batch_size), force_add=True)
    note = fit_internal_pairs(cfg)
    if note:
        log.info("%s: %s", run_dir.name, note)
    log.info("training %s in %s", experiment, run_dir)
    if int(cfg.trainer.max_steps) == 0:
        return _initial_weights(cfg, run_dir)
    try:
        fit(cfg)
    except SRAdaptError as e:
        raise SRAdaptError(f"training run in {run_dir} failed: {e}") from None
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    if not ckpt.is_file():
        raise SRAdaptError(f"training run in {run_dir} left no {ckpt}")
    return ckpt


def _initial_weights(cfg: DictConfig, run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    resolve_degradation(cfg, run_dir)
    module = instantiate(cfg.model)
    return save_weights(module.net, getattr(module, "duals", None), run_dir / "weights.pt", {"global_step": 0})


def _score(net: torch.nn.Module, hr_dir: Path, lr_dir: Path, scale: int, device: torch.device) -> dict[str, Any]:
    result = evaluate_folder(net.to(device).eval(), hr_dir, scale, device, lr_dir=lr_dir)
    return {"psnr": result["psnr"], "ssim": result["ssim"], "images": result["images"],
            "per_image": result["per_image"]}


def estimate_request(lr_files: Sequence[Path], truth: DegradationRecord, cfg: DictConfig,
                     reference: list[Tensor]) -> EstimateRequest:
    """The request a training run would make for these LR images (the benchmark's codec: a clip
    records it, so ``auto`` takes the truth's)."""
    options = estimate_options(cfg)
    codec = options.pop("codec")
    options["video_qp"] = truth.video_qp if codec == "auto" else clip_qp(codec, [])
    return EstimateRequest([load_image(f) for f in lr_files], [f.name for f in lr_files], reference, truth.scale,
                           options, "hr_dir (target LR)")


def _save(records: Mapping[str, DegradationRecord | None], work: Path) -> dict[str, str]:
    """Saves each record as ``work/degradation_<name>.pt`` (+ picture); returns arm kind -> file."""
    files = {}
    for name, rec in records.items():
        if rec is None:
            continue
        path = rec.save(work / f"degradation_{name}.pt")
        save_image(torch.from_numpy(rec.picture()).permute(2, 0, 1).float() / 255, path.with_suffix(".png"))
        files[name] = str(path)
    return files


def _trimmed(rec: DegradationRecord, key: str) -> DegradationRecord:
    """A peer's kernel with too much mass at the border of its support (which our checks refuse as
    diverged) trimmed to the inside of it, with a warning; the report keeps the mass trimmed."""
    try:
        rec.check(key)
        return rec
    except ConfigError as e:
        s, k = rec.scale, rec.kernel.clone()
        ring = torch.ones_like(k, dtype=torch.bool)
        ring[s:-s, s:-s] = False
        outer = float(k[ring].abs().sum() / k.abs().sum())
        k[ring] = 0
        log.warning("%s: the KernelGAN-style kernel is not a usable downscaler (%s); its %.0f%% at the border of the "
                    "support is cut off and the rest used", key, e, 100 * outer)
        trimmed = rec.with_kernel(k / k.sum())
        trimmed.meta["trimmed_border_mass"] = round(outer, 3)
        return trimmed


def _target_records(request: EstimateRequest, truth: DegradationRecord, kinds: set[str], cfg: DictConfig,
                    timings: dict[str, float]) -> dict[str, DegradationRecord | None]:
    """The records the arms train with: the estimate, the truth and the KernelGAN-style estimate
    (our noise / JPEG / codec estimate with its kernel), each with its input correction."""
    out: dict[str, DegradationRecord | None] = {"truth": request.corrected(truth)}
    estimate = None
    if kinds & {"estimate", "kernelgan"}:
        t = time.perf_counter()
        estimate = request.estimate()
        timings["estimate_s"] = time.perf_counter() - t
        out["estimate"] = estimate
    if "kernelgan" in kinds:
        t = time.perf_counter()
        found = [kernelgan_kernel(im, truth.scale, int(cfg.kernelgan.iterations), int(cfg.kernelgan.crop),
                                  seed=int(cfg.seeds[0]), key=request.key) for im in request.images]
        timings["kernelgan_s"] = time.perf_counter() - t
        kernel = torch.stack([k for k, _ in found]).mean(0)
        rec = estimate.with_kernel(kernel / kernel.sum())
        rec.meta = {**rec.meta, "method": "kernelgan", "images": len(found), "iterations": int(cfg.kernelgan.iterations),
                    "crops": sorted({info["crop"] for _, info in found})}
        out["kernelgan"] = request.corrected(_trimmed(rec, request.key))
    return out


class _Arms:
    """Trains the arms of one target (the set, or one image) and scores them on it."""

    def __init__(self, cfg: DictConfig, source_ckpt: Path, paths: Mapping[str, Any], device: torch.device) -> None:
        self.cfg, self.source_ckpt, self.paths, self.device = cfg, source_ckpt, paths, device
        self.scale, self.steps = int(cfg.scale), int(cfg.adapt.steps)

    def train(self, run_dir: Path, arm: Mapping[str, Any], seed: int, degradation_file: str | None, hr_dir: Path,
              lr_dir: Path) -> dict[str, Any]:
        t = time.perf_counter()
        overrides = [*self.cfg.adapt.overrides, *arm.get("overrides", [])]
        steps = int(arm.get("steps", self.steps))
        values = {
            "scale": self.scale, "seed": int(seed), "trainer.max_steps": steps,
            "model.init_from": str(self.source_ckpt),
            "degradation_file": degradation_file,
            "data.train_sources.paired.hr_dir": str(self.cfg.paired_hr_dir),
            "data.train_sources.paired.skip_bad": True,  # e.g. T91's one image smaller than the patch
            "data.train_sources.target.lr_dir": str(lr_dir),
            "data.val_sets": {"target": {"hr_dir": str(hr_dir), "lr_dir": str(lr_dir)}},
        }
        ckpt = run_training(run_dir, self.cfg.adapt.experiment, overrides, values, self.paths, epoch_steps=steps)
        return {"seed": int(seed), "ckpt": str(ckpt), "seconds": round(time.perf_counter() - t, 1)}

    def score(self, ckpt: str | Path, hr_dir: Path, lr_dir: Path) -> dict[str, Any]:
        net = load_checkpoint(ckpt, expect={"scale": self.scale}).net
        return _score(net, hr_dir, lr_dir, self.scale, self.device)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Target set, estimate, source model, arms, scores; prints the table and writes the JSON report."""
    check_config(cfg)
    start = time.perf_counter()
    paths = OmegaConf.to_container(cfg.paths, resolve=True)
    work = Path(cfg.work_dir)
    scale = int(cfg.scale)
    degradation = Degradation(scale=scale, **OmegaConf.to_container(cfg.degradation, resolve=True))
    per_image = degradation.per_image if str(cfg.per_image) == "auto" else bool(cfg.per_image)
    device = pick_device(str(cfg.device))
    hr_dir, lr_dir, stems = make_target_set(Path(cfg.hr_dir), work / "target", degradation)
    log.info("target set: %s degraded by %s -> %s (%s)", cfg.hr_dir, degradation.describe(), lr_dir,
             "adapting per image" if per_image else "adapting to the set")
    reference = reference_images([(lambda f=f: mod_crop(load_image(f), scale))
                                  for f in list_images(Path(cfg.paired_hr_dir), "paired_hr_dir")])
    arms = {k: v for k, v in (cfg.get("arms") or {}).items() if v is not None}
    kinds = {str(a.get("degradation", "none")) for a in arms.values()}

    timings: dict[str, float] = {}
    if cfg.source_ckpt:
        source_ckpt = Path(cfg.source_ckpt)
    else:
        t = time.perf_counter()
        source_ckpt = run_training(work / "pretrain", cfg.pretrain.experiment, list(cfg.pretrain.overrides), {}, paths)
        timings["pretrain_s"] = time.perf_counter() - t
    source = load_checkpoint(source_ckpt, expect={"scale": scale})
    trainer = _Arms(cfg, source_ckpt, paths, device)
    report: dict[str, Any] = {
        "target": {"hr_dir": str(cfg.hr_dir), "lr_dir": str(lr_dir), "degradation": degradation.describe(), "scale": scale},
        "per_image": per_image,
        "bicubic": _score(Bicubic(scale), hr_dir, lr_dir, scale, device),
        "unadapted": _score(source.net, hr_dir, lr_dir, scale, device),
    }
    if per_image:
        report_arms, extra = _run_per_image(cfg, degradation, hr_dir, lr_dir, stems, reference, arms, kinds, trainer,
                                            work, timings, report)
    else:
        report_arms, extra = _run_per_set(cfg, degradation, hr_dir, lr_dir, reference, arms, kinds, trainer, work,
                                          timings)
    report.update(report_arms)
    report.update(extra)
    report.update({
        "arms": list(report_arms),
        "baselines": {},
        "seeds": [int(s) for s in cfg.seeds],
        "source_ckpt": str(source_ckpt),
        "paired_hr_dir": str(cfg.paired_hr_dir),
        "reference_images": len(reference),
        "adapt": {"experiment": cfg.adapt.experiment, "steps": int(cfg.adapt.steps), "overrides": list(cfg.adapt.overrides)},
        "degradation_estimate": OmegaConf.to_container(cfg.degradation_estimate, resolve=True),
    })
    for path in cfg.get("baselines") or []:
        loaded = load_checkpoint(path, expect={"scale": scale})
        report["baselines"][Path(str(path)).stem] = {
            **_score(loaded.net, hr_dir, lr_dir, scale, device),
            "model": str(loaded.meta.get("variant", loaded.net.arch)), "ckpt": str(path),
        }
    if "adapted" in report_arms and "control" in report_arms:
        report["gain_db"] = report["adapted"]["psnr"] - report["control"]["psnr"]
        report["gain_over_unadapted_db"] = report["adapted"]["psnr"] - report["unadapted"]["psnr"]
        if "oracle" in report_arms:
            gap = report["oracle"]["psnr"] - report["control"]["psnr"]
            report["gap_closed"] = report["gain_db"] / gap if abs(gap) > 1e-6 else None
    timings["total_s"] = time.perf_counter() - start
    report["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    print(format_report(report))
    if cfg.output:
        atomic_write_json(report, cfg.output)
    return report


def _run_per_set(cfg: DictConfig, degradation: Degradation, hr_dir: Path, lr_dir: Path, reference: list[Tensor],
                 arms: Mapping[str, Any], kinds: set[str], trainer: _Arms, work: Path,
                 timings: dict[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every arm adapts to the whole set at once."""
    truth = degradation.record()
    request = estimate_request(list_images(lr_dir, "target LR"), truth, cfg, reference)
    records = _target_records(request, truth, kinds, cfg, timings)
    files = _save(records, work)
    extra = {"estimate_error": estimate_error(records["estimate"], truth) if "estimate" in records else None}
    if "kernelgan" in records:
        extra["kernelgan_error"] = estimate_error(records["kernelgan"], truth)
    out: dict[str, Any] = {}
    for name, arm in arms.items():
        kind = str(arm.get("degradation", "none"))
        runs = []
        for seed in cfg.seeds:
            run = trainer.train(work / f"{name}_seed{seed}", arm, int(seed), files.get(kind, None if kind == "none" else kind),
                                hr_dir, lr_dir)
            score = trainer.score(run["ckpt"], hr_dir, lr_dir)
            runs.append({**run, "psnr": score["psnr"], "ssim": score["ssim"]})
            timings[f"{name}_seed{seed}_s"] = run["seconds"]
        out[name] = {"degradation": kind, "overrides": list(arm.get("overrides", [])), **mean_std(runs)}
    return out, extra


def _run_per_image(cfg: DictConfig, degradation: Degradation, hr_dir: Path, lr_dir: Path, stems: list[str],
                   reference: list[Tensor], arms: Mapping[str, Any], kinds: set[str], trainer: _Arms, work: Path,
                   timings: dict[str, float], report: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every image is its own target; the control (no target image) is trained once per seed."""
    s = degradation.scale
    images: dict[str, dict[str, Any]] = {}
    per_seed: dict[str, dict[int, list[dict[str, float]]]] = {name: {} for name in arms}
    shared = {name for name, arm in arms.items() if str(arm.get("degradation", "none")) == "none"}
    for name in shared:
        for seed in cfg.seeds:
            run = trainer.train(work / f"{name}_seed{seed}", arms[name], int(seed), None, hr_dir, lr_dir)
            score = trainer.score(run["ckpt"], hr_dir, lr_dir)
            timings[f"{name}_seed{seed}_s"] = run["seconds"]
            per_seed[name][int(seed)] = [{"stem": k, **v, "seconds": run["seconds"], "ckpt": run["ckpt"]}
                                         for k, v in score["per_image"].items()]
    for i, stem in enumerate(stems):
        t_image = time.perf_counter()
        folder = work / "images" / stem
        img_hr, img_lr = folder / "HR", folder / f"X{s}"
        save_image(load_image(hr_dir / f"{stem}.png"), img_hr / f"{stem}.png")
        save_image(load_image(lr_dir / f"{stem}x{s}.png"), img_lr / f"{stem}x{s}.png")
        truth = degradation.record(i)
        request = estimate_request([img_lr / f"{stem}x{s}.png"], truth, cfg, reference)
        seconds: dict[str, float] = {}
        records = _target_records(request, truth, kinds, cfg, seconds)
        files = _save(records, folder)
        row: dict[str, Any] = {"bicubic": report["bicubic"]["per_image"][stem]["psnr"],
                               "unadapted": report["unadapted"]["per_image"][stem]["psnr"]}
        hr_image = load_image(img_hr / f"{stem}.png")
        if "estimate" in records:
            row["estimate_error"] = estimate_error(records["estimate"], truth, hr_image)
        if "kernelgan" in records:
            row["kernelgan_error"] = estimate_error(records["kernelgan"], truth, hr_image)
        for name, arm in arms.items():
            kind = str(arm.get("degradation", "none"))
            if name in shared:
                runs = [r for seed in cfg.seeds for r in per_seed[name][int(seed)] if r["stem"] == stem]
                runs = [{"seed": int(seed), **{k: v for k, v in r.items() if k != "stem"}}
                        for seed, r in zip(cfg.seeds, runs)]
            else:
                runs = []
                for seed in cfg.seeds:
                    run = trainer.train(folder / f"{name}_seed{seed}", arm, int(seed), files.get(kind, kind), img_hr,
                                        img_lr)
                    score = trainer.score(run["ckpt"], img_hr, img_lr)
                    runs.append({**run, "psnr": score["psnr"], "ssim": score["ssim"]})
                    seconds[f"{name}_seed{seed}_s"] = run["seconds"]
                    per_seed[name].setdefault(int(seed), []).append({"stem": stem, "psnr": score["psnr"],
                                                                      "ssim": score["ssim"]})
            row[name] = {"psnr": float(np.mean([r["psnr"] for r in runs])), "runs": runs}
        seconds["image_s"] = time.perf_counter() - t_image
        row["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
        images[stem] = row
        log.info("%s: %s", stem, ", ".join(f"{k} {row[k]['psnr']:.2f}" for k in arms))
    out: dict[str, Any] = {}
    for name, arm in arms.items():
        runs = []
        for seed in cfg.seeds:
            rows = per_seed[name][int(seed)]
            runs.append({"seed": int(seed), "psnr": float(np.mean([r["psnr"] for r in rows])),
                         "ssim": float(np.mean([r["ssim"] for r in rows]))})
        out[name] = {"degradation": str(arm.get("degradation", "none")), "overrides": list(arm.get("overrides", [])),
                     **mean_std(runs)}
    per_image_seconds = {}
    for key in ("estimate_s", "kernelgan_s", *[f"{n}_seed{sd}_s" for n in arms if n not in shared for sd in cfg.seeds]):
        values = [row["seconds"][key] for row in images.values() if key in row["seconds"]]
        if values:
            per_image_seconds[key] = round(float(np.mean(values)), 2)
    extra: dict[str, Any] = {"images": images, "seconds_per_image": per_image_seconds}
    for what in ("estimate", "kernelgan"):  # DualSR's kernel score, mean over the images
        values = [row[f"{what}_error"]["lr_psnr_db"] for row in images.values() if f"{what}_error" in row]
        if values:
            extra[f"{what}_lr_psnr_db"] = round(float(np.mean(values)), 2)
    return out, extra


def check_config(cfg: DictConfig) -> None:
    if not cfg.get("hr_dir"):
        raise ConfigError("hr_dir is required: a folder of HR images of the target domain (e.g. hr_dir=.../Set14)")
    if str(cfg.get("per_image", "auto")) not in ("auto", "True", "False", "true", "false"):
        raise ConfigError(f"per_image={cfg.per_image!r}: choose auto (per image when the degradation draws a kernel per "
                          "image), true or false")
    for name, arm in (cfg.get("arms") or {}).items():
        kind = str(arm.get("degradation", "none")) if arm is not None else "none"
        if kind not in ARM_KINDS and not Path(kind).is_file():
            raise ConfigError(f"arms.{name}.degradation={kind!r} must be none, estimate, truth, kernelgan or the path "
                              "of a degradation file (.pt, e.g. written by an earlier run)")


@hydra.main(version_base=HYDRA_VERSION, config_path=CONF_PATH, config_name="benchmark_adaptation")
@cli
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
