"""The target degradation of a run: given (``degradation_file``), reused from the run folder, or
estimated from the run's LR-only training sources before training.

A run needs one when the model's target dual is not ``shared``, it corrects its input
(``model.correct_input``) or the batches hold target-domain or internal pairs. The estimate is one
:class:`EstimateRequest` -- the same for a training run and the adaptation benchmark: LR images, the
reference HR images (evenly spread over the paired HR set, centre crops), the settings of the
``degradation_estimate`` config group -- that returns the record with its input correction
(:mod:`sr_adapt.degradation.correction`) fitted on those references. A run writes it to
``<run>/degradation.pt`` (and shows it in ``degradation.png``) so that a resumed run or another run
reuses it (``degradation_file=``).

The video codec is not estimated from pixels: ``degradation_estimate.codec=auto`` reads the
quantizer the clips were coded with (:func:`clip_qp`), an integer gives the H.264 QP, ``none``
leaves the codec out (its blocking is then modelled as JPEG).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from sr_adapt.config import instantiate
from sr_adapt.data.sources.internal import kernel_margin
from sr_adapt.degradation import DegradationRecord, load_degradation
from sr_adapt.degradation.correction import correction_filter
from sr_adapt.degradation.kernels import kernel_moments
from sr_adapt.degradation.estimate import (DEFAULT_DOWNSAMPLE, DEFAULT_METHOD, DOWNSAMPLE_FAMILIES, ESTIMATE_METHODS,
                                           estimate_degradation)
from sr_adapt.errors import ConfigError, DataError
from sr_adapt.io.images import array_to_tensor, image_size, list_images, save_image
from sr_adapt.io.atomic import show_path
from sr_adapt.io.video import mean_qp
from sr_adapt.ops.cpu import threads_for_load, usable_cores

log = logging.getLogger("sr_adapt.training")

ESTIMATE_IMAGES = 16  # whole LR images (frames) pooled for an estimate
REFERENCE_IMAGES = 16  # source HR images the estimate is calibrated on and the input correction fitted on
MAX_SIDE = 512  # centre crop of each image (pixels): bounds the time of an estimate


def needs_degradation(cfg: DictConfig) -> bool:
    return (cfg.model.get("target_dual", "shared") != "shared" or bool(cfg.model.get("correct_input", False))
            or any(float(cfg.data.get(k, 0) or 0) > 0 for k in ("target_pair_ratio", "internal_pair_ratio")))


def _centre(x: Tensor, side: int = MAX_SIDE) -> Tensor:
    h, w = x.shape[-2:]
    y0, x0 = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return x[..., y0 : y0 + side, x0 : x0 + side]


def reference_images(hr_images: Sequence[Any], count: int = REFERENCE_IMAGES) -> list[Tensor]:
    """Up to ``count`` reference HR images evenly spread over ``hr_images`` (callables returning (3, H, W)
    in [0,1], so that only the chosen ones are decoded), centre-cropped to :data:`MAX_SIDE`."""
    n = len(hr_images)
    picks = sorted({int(i) for i in np.linspace(0, n - 1, min(n, count)).round()}) if n else []
    return [_centre(hr_images[i]()) for i in picks]


@dataclass
class EstimateRequest:
    """What an estimate of the target degradation needs, assembled the same way by a training run and
    by the adaptation benchmark.

    Attributes:
        images: LR images (3, H, W) in [0,1] that share the degradation (centre crops).
        names: one per image (messages; ``clip@shot<k>#i`` names are checked shot by shot).
        reference: clean HR images of the source domain (:func:`reference_images`): the calibration of
            the estimate's noise / JPEG / cross-scale blur and the fit of the input correction.
        scale: the factor.
        options: the ``degradation_estimate`` settings (:func:`estimate_options`), ``codec`` resolved to
            ``video_qp``.
        key: names the images in messages.
    """

    images: list[Tensor]
    names: list[str]
    reference: list[Tensor]
    scale: int
    options: dict[str, Any] = field(default_factory=dict)
    key: str = "estimate"

    def estimate(self) -> DegradationRecord:
        """The record estimated from the images, with its input correction."""
        if not self.reference:
            raise DataError(f"{self.key}: no reference HR images to calibrate the estimate on")
        with threads_for_load() as (threads, busy):
            log.info("estimating the target degradation from %d images (method %s) on %d thread%s%s", len(self.images),
                     self.options.get("method", DEFAULT_METHOD), threads, "s" if threads > 1 else "",
                     f" (the machine is busy: {busy:.1f} of {usable_cores()} cores in use)" if busy >= 0.5 else "")
            record = estimate_degradation(self.images, self.scale, self.reference, self.names, key=self.key,
                                          **self.options)
            return self.corrected(record)

    def corrected(self, record: DegradationRecord) -> DegradationRecord:
        """``record`` with the input correction fitted for it on the references (also for a known
        degradation: the benchmark's truth, a peer's kernel)."""
        t0 = time.perf_counter()
        record.correction = correction_filter(record, self.reference, key=f"{self.key} (reference HR images)")
        record.meta["correction_seconds"] = round(time.perf_counter() - t0, 2)
        return record


def _sources(cfg: DictConfig) -> tuple[list, list]:
    """(LR-only sources, paired source HR folders) of the run's training data, instantiated."""
    lr_only, paired = [], []
    for name, spec in (cfg.data.get("train_sources") or {}).items():
        if spec is None or "degradation" in spec:  # target pairs need the estimate themselves
            continue
        src = instantiate(spec)(scale=cfg.scale, patch_size=cfg.data.patch_size, config_key=f"data.train_sources.{name}")
        if not getattr(src, "paired", True):
            lr_only.append(src)
        elif hasattr(src, "array"):
            paired.append(src)
    return lr_only, paired


def estimate_for_run(cfg: DictConfig, out_path: Path) -> Path:
    """Estimates the degradation of the run's LR-only sources; writes ``out_path`` (+ a .png picture)."""
    lr_only, paired = _sources(cfg)
    if not lr_only:
        raise ConfigError("degradation_file=null and the run needs a target degradation (model.target_dual / "
                          "model.correct_input / target or internal pairs), but data.train_sources has no LR-only "
                          "source to estimate it from: add one (video frames, an LR folder) or give degradation_file=PATH")
    per = max(1, -(-ESTIMATE_IMAGES // len(lr_only)))
    named = [item for src in lr_only for item in src.estimation_images(per)]
    options = estimate_options(cfg)
    options["video_qp"] = clip_qp(options.pop("codec"), [v for src in lr_only for v in getattr(src, "videos", [])])
    request = EstimateRequest([_centre(im) for _, im in named], [n for n, _ in named], run_references(cfg, paired),
                              int(cfg.scale), options, "data.train_sources (LR-only)")
    record = request.estimate()
    with threads_for_load():  # the shots' estimates, on the cores left free like the whole one
        shots = _check_shots(named, request, record.meta.get("method"))
    if shots:
        record.meta["shots"] = shots
    record.save(out_path)
    save_image(array_to_tensor(record.picture()), out_path.with_suffix(".png"))
    log.info("target degradation estimated from %d frames: %s -> %s", len(request.images), record.describe(), out_path)
    return out_path


def run_references(cfg: DictConfig, paired: list | None = None) -> list[Tensor]:
    """The reference HR images of a run: spread over its paired HR sources."""
    paired = _sources(cfg)[1] if paired is None else paired
    if not paired:
        raise ConfigError("estimating the target degradation needs clean HR images to calibrate on: add a paired "
                          "HR source to data.train_sources (e.g. data/source@data.train_sources.paired=sample_hr)")
    loaders = [(lambda src=src, i=i: array_to_tensor(src.array(i))) for src in paired for i in range(len(src.files))]
    return reference_images(loaders)


SHOT_SIGMA_SPREAD = 1.0  # HR px: shots of one clip whose blur estimates differ more do not share a degradation
SHOT_NOISE_SPREAD = 2.0  # 8-bit levels


def estimate_options(cfg: DictConfig) -> dict[str, Any]:
    """``degradation_estimate`` of the run (method, kernel family, anisotropy, codec, estimator file), checked."""
    options = {"method": DEFAULT_METHOD, "downsample": DEFAULT_DOWNSAMPLE, "anisotropic": False, "codec": "auto",
               "estimator": None}
    given = cfg.get("degradation_estimate") or {}
    unknown = sorted(set(given) - set(options))
    if unknown:
        raise ConfigError(f"degradation_estimate.{unknown[0]}: unknown key; the estimate takes {', '.join(options)}")
    options.update({k: given[k] for k in given})
    if options["method"] not in ESTIMATE_METHODS:
        raise ConfigError(f"degradation_estimate.method={options['method']}: choose one of {', '.join(ESTIMATE_METHODS)}")
    if options["downsample"] not in DOWNSAMPLE_FAMILIES:
        raise ConfigError(f"degradation_estimate.downsample={options['downsample']}: choose one of "
                          f"{', '.join(DOWNSAMPLE_FAMILIES)}")
    options["anisotropic"] = bool(options["anisotropic"])
    if options["estimator"] is not None:
        options["estimator"] = str(options["estimator"])
        if not Path(options["estimator"]).expanduser().is_file():
            raise ConfigError(f"degradation_estimate.estimator={options['estimator']}: no such file (a kernel estimator "
                              "written by scripts/train_kernel_estimator.py; null: the shipped one)")
    codec = options["codec"]
    if isinstance(codec, bool) or not (codec in ("auto", "none") or (isinstance(codec, int) and 0 <= codec <= 51)):
        raise ConfigError(f"degradation_estimate.codec={codec}: choose auto (read from the clips), none, or the "
                          "H.264 quantizer (QP 0..51) of the codec stage")
    return options


#: The stage's quantizer is this much finer than the clip's mean: P/B frames are predicted from
#: earlier frames and lose less than one intra frame coded at their QP (measured on two x264 clips
#: of a 1280x720 source at x4: BENCHMARKS.md, "Video codec").
CODEC_QP_OFFSET = 2.0
QP_SPREAD = 4.0  # clips whose mean quantizers differ more are not one degradation


def clip_qp(codec: str | int, videos: list[Path]) -> int | None:
    """The H.264 quantizer of the codec stage: ``codec`` itself (an int), None (``none``), or for
    ``auto`` the clips' mean block QP (:func:`~sr_adapt.io.video.mean_qp`, the median over the
    clips) less :data:`CODEC_QP_OFFSET`; None when the clips' codec reports no quantizer."""
    if codec == "none":
        return None
    if not isinstance(codec, str):
        return int(codec)
    found = {}
    for path in videos:
        qp = mean_qp(path, config_key="data.train_sources (LR-only)")
        if qp is not None:
            found[Path(path).name] = qp
    if not found:
        if videos:
            log.info("the clips' codec reports no quantizer: the codec stage is not modelled (its blocking is "
                     "estimated as JPEG); set degradation_estimate.codec=QP to give one")
        return None
    if len(found) < len(videos):
        log.warning("only %d of %d clips report a quantizer (%s): using it for all", len(found), len(videos),
                    ", ".join(found))
    values = sorted(found.values())
    if values[-1] - values[0] > QP_SPREAD:
        log.warning("the clips were coded at different quantizers (%s): using the median; adapt to one kind of clip "
                    "at a time for a better model", ", ".join(f"{k} {v:.1f}" for k, v in found.items()))
    qp = int(round(float(np.median(values)) - CODEC_QP_OFFSET))
    log.info("codec stage: H.264 qp %d (clips' mean %.1f - %.0f), read from %s", qp, float(np.median(values)),
             CODEC_QP_OFFSET, ", ".join(found))
    return max(0, min(51, qp))


def kernel_width(record: DegradationRecord) -> float:
    """The root mean square of the kernel's principal sigmas (HR px): one number to compare kernels by."""
    m = kernel_moments(record.kernel, record.scale)
    return float(np.sqrt((m["sigma_major"] ** 2 + m["sigma_minor"] ** 2) / 2))


def _check_shots(named: list[tuple[str, Tensor]], request: EstimateRequest, method: str | None = None) -> dict[str, list]:
    """Per-shot estimates of clips with scene cuts (frames named ``clip@shot<k>#i``, two frames or
    more per shot), with the ``method`` the whole estimate used (``auto`` could choose differently per shot);
    raises :class:`DataError` when the shots of a clip disagree beyond the estimate's own spread (one
    degradation cannot serve them)."""
    options = {**request.options, **({"method": method} if method else {})}
    groups: dict[str, dict[str, list[Tensor]]] = {}
    for name, image in named:
        if "@shot" in name:
            clip, rest = name.split("@shot", 1)
            groups.setdefault(clip, {}).setdefault(rest.split("#", 1)[0], []).append(_centre(image))
    out = {}
    key = request.key
    for clip, shots in groups.items():
        usable = {k: v for k, v in shots.items() if len(v) >= 2}
        if len(usable) < 2:
            continue
        per = {}
        for k, v in usable.items():
            try:
                per[k] = estimate_degradation(v, request.scale, request.reference, key=f"{key} {clip} shot {k}",
                                              **options)
            except DataError as e:  # a flat shot says nothing about the blur: the others decide
                log.info("shot %s of %s not checked: %s", k, clip, e)
        if len(per) < 2:
            continue
        sigmas = {k: kernel_width(r) for k, r in per.items()}
        noises = {k: float(np.mean(r.noise_sigma)) for k, r in per.items()}
        out[clip] = [[k, round(sigmas[k], 2), round(noises[k], 2)] for k in per]
        if max(sigmas.values()) - min(sigmas.values()) > SHOT_SIGMA_SPREAD or \
                max(noises.values()) - min(noises.values()) > SHOT_NOISE_SPREAD:
            detail = "; ".join(f"shot {k}: blur {sigmas[k]:.2f} HR px, noise {noises[k]:.1f}/255" for k in per)
            raise DataError(f"{key}: the shots of {clip} do not share one degradation ({detail}). Adapt to one shot "
                            "at a time (cut the clip, or its time_range), or give degradation_file=PATH")
        log.info("%s: %d shots agree (blur %s HR px)", clip, len(per), ", ".join(f"{v:.2f}" for v in sigmas.values()))
    return out


def resolve_degradation(cfg: DictConfig, out_dir: Path) -> None:
    """Sets ``cfg.degradation_file`` when the run needs one: checks a given file, reuses
    ``<out_dir>/degradation.pt`` (resume) or estimates it. A run that corrects its input
    (``model.correct_input``) with a given file that has no input correction gets a copy with one
    (fitted on the run's reference images) in ``<out_dir>/degradation.pt``."""
    if not needs_degradation(cfg):
        return
    given = cfg.get("degradation_file")
    path = out_dir / "degradation.pt"
    if given:
        record = load_degradation(given, "degradation_file", int(cfg.scale))  # fail before any training
        if not cfg.model.get("correct_input", False) or record.correction is not None:
            return
        if not path.is_file():
            request = EstimateRequest([], [], run_references(cfg), int(cfg.scale), key="degradation_file")
            request.corrected(record).save(path)
            log.info("degradation_file=%s has no input correction: fitted one on the run's reference images -> %s",
                     show_path(Path(given)), show_path(path))
    elif path.is_file():
        log.info("reusing the target degradation of this run: %s", show_path(path))
    else:
        try:
            estimate_for_run(cfg, path)
        except DataError as e:
            raise DataError(f"estimating the target degradation (degradation_file=null): {e}") from None
    OmegaConf.update(cfg, "degradation_file", str(path), force_add=True)


def fit_internal_pairs(cfg: DictConfig) -> str | None:
    """For a folder of LR-only target images of any size (the adaptation benchmark's): internal pairs need
    images of at least the patch plus the kernel's margin, so smaller ones are left out of them (all of them:
    the source is dropped and its share goes to the target pairs). Returns what was changed, or None; a
    training run itself refuses frames too small (:class:`~sr_adapt.data.sources.internal.InternalPairsDataset`)."""
    spec = (cfg.data.get("train_sources") or {}).get("internal_pairs")
    target = (cfg.data.get("train_sources") or {}).get("target")
    if spec is None or target is None or not cfg.get("degradation_file") or not float(cfg.data.internal_pair_ratio):
        return None
    need = int(cfg.data.patch_size) + 2 * kernel_margin(load_degradation(cfg.degradation_file, "degradation_file"))
    sizes = [image_size(f) for f in list_images(Path(target.lr_dir), "data.train_sources.target.lr_dir")]
    usable = sum(min(size) >= need for size in sizes)
    if usable == len(sizes):
        return None
    if usable:
        source = OmegaConf.to_container(target, resolve=True)
        OmegaConf.update(cfg, "data.train_sources.internal_pairs.source", {**source, "skip_bad": True}, merge=False)
        return f"internal pairs from the {usable} of {len(sizes)} target images of at least {need} px"
    ratio = float(cfg.data.internal_pair_ratio)
    OmegaConf.update(cfg, "data.target_pair_ratio", float(cfg.data.target_pair_ratio) + ratio)
    OmegaConf.update(cfg, "data.internal_pair_ratio", 0.0)
    OmegaConf.update(cfg, "data.train_sources.internal_pairs", None, merge=False)
    return (f"no internal pairs: the target images are smaller than {need} px (patch + the kernel's margin); "
            f"their share {ratio:g} goes to the target pairs")
