"""The target degradation of a run: given (``degradation_file``), reused from the run folder, or
estimated from the run's LR-only training sources before training.

A run needs one when the model's target dual is not ``shared`` or the batches hold target-domain
pairs (``data.target_pair_ratio > 0``). The estimate pools whole frames from every LR-only source
(:func:`sr_adapt.degradation.estimate.estimate_degradation`), is calibrated on HR images of the
run's paired sources, and is written to ``<run>/degradation.pt`` (and shown in
``degradation.png``) so that a resumed run or another run reuses it (``degradation_file=``).

The video codec is not estimated from pixels: ``degradation_estimate.codec=auto`` reads the
quantizer the clips were coded with (:func:`clip_qp`), an integer gives the H.264 QP, ``none``
leaves the codec out (its blocking is then modelled as JPEG).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from sr_adapt.config import instantiate
from sr_adapt.degradation import load_degradation
from sr_adapt.degradation.estimate import DEFAULT_DOWNSAMPLE, DOWNSAMPLE_FAMILIES, estimate_degradation
from sr_adapt.errors import ConfigError, DataError
from sr_adapt.io.images import array_to_tensor, save_image
from sr_adapt.io.atomic import show_path
from sr_adapt.io.video import mean_qp

log = logging.getLogger("sr_adapt.training")

ESTIMATE_IMAGES = 16  # whole LR images (frames) pooled for an estimate
REFERENCE_IMAGES = 8  # source HR images the estimate is calibrated on
MAX_SIDE = 512  # centre crop of each image (pixels): bounds the time of an estimate


def needs_degradation(cfg: DictConfig) -> bool:
    return cfg.model.get("target_dual", "shared") != "shared" or float(cfg.data.get("target_pair_ratio", 0) or 0) > 0


def _centre(x: Tensor, side: int = MAX_SIDE) -> Tensor:
    h, w = x.shape[-2:]
    y0, x0 = max((h - side) // 2, 0), max((w - side) // 2, 0)
    return x[..., y0 : y0 + side, x0 : x0 + side]


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
                          "data.target_pair_ratio), but data.train_sources has no LR-only source to estimate it from: "
                          "add one (video frames, an LR folder) or give degradation_file=PATH")
    if not paired:
        raise ConfigError("estimating the target degradation needs clean HR images to calibrate on: add a paired "
                          "HR source to data.train_sources (e.g. data/source@data.train_sources.paired=sample_hr)")
    per = max(1, -(-ESTIMATE_IMAGES // len(lr_only)))
    named = [item for src in lr_only for item in src.estimation_images(per)]
    names, images = [n for n, _ in named], [_centre(im) for _, im in named]
    reference = []
    for src in paired:
        for i in np.linspace(0, len(src.files) - 1, min(len(src.files), REFERENCE_IMAGES)).round().astype(int):
            reference.append(_centre(array_to_tensor(src.array(int(i)))))
    reference = reference[:REFERENCE_IMAGES]
    key = "data.train_sources (LR-only)"
    options = estimate_options(cfg)
    options["video_qp"] = clip_qp(options.pop("codec"), [v for src in lr_only for v in getattr(src, "videos", [])])
    record = estimate_degradation(images, int(cfg.scale), reference, names, key=key, **options)
    shots = _check_shots(named, int(cfg.scale), reference, key, options)
    if shots:
        record.meta["shots"] = shots
    record.save(out_path)
    save_image(array_to_tensor(record.picture()), out_path.with_suffix(".png"))
    log.info("target degradation estimated from %d frames: %s -> %s", len(images), record.describe(), out_path)
    return out_path


SHOT_SIGMA_SPREAD = 1.0  # HR px: shots of one clip whose blur estimates differ more do not share a degradation
SHOT_NOISE_SPREAD = 2.0  # 8-bit levels


def estimate_options(cfg: DictConfig) -> dict[str, Any]:
    """``degradation_estimate`` of the run (kernel family, anisotropy, codec), checked."""
    options = {"downsample": DEFAULT_DOWNSAMPLE, "anisotropic": False, "codec": "auto"}
    given = cfg.get("degradation_estimate") or {}
    unknown = sorted(set(given) - set(options))
    if unknown:
        raise ConfigError(f"degradation_estimate.{unknown[0]}: unknown key; the estimate takes {', '.join(options)}")
    options.update({k: given[k] for k in given})
    if options["downsample"] not in DOWNSAMPLE_FAMILIES:
        raise ConfigError(f"degradation_estimate.downsample={options['downsample']}: choose one of "
                          f"{', '.join(DOWNSAMPLE_FAMILIES)}")
    options["anisotropic"] = bool(options["anisotropic"])
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


def _check_shots(named: list[tuple[str, Tensor]], scale: int, reference: list[Tensor], key: str,
                 options: dict[str, Any]) -> dict[str, list]:
    """Per-shot estimates of clips with scene cuts (frames named ``clip@shot<k>#i``, two frames or
    more per shot); raises :class:`DataError` when the shots of a clip disagree beyond the
    estimate's own spread (one degradation cannot serve them)."""
    groups: dict[str, dict[str, list[Tensor]]] = {}
    for name, image in named:
        if "@shot" in name:
            clip, rest = name.split("@shot", 1)
            groups.setdefault(clip, {}).setdefault(rest.split("#", 1)[0], []).append(_centre(image))
    out = {}
    for clip, shots in groups.items():
        usable = {k: v for k, v in shots.items() if len(v) >= 2}
        if len(usable) < 2:
            continue
        per = {}
        for k, v in usable.items():
            try:
                per[k] = estimate_degradation(v, scale, reference, key=f"{key} {clip} shot {k}", **options)
            except DataError as e:  # a flat shot says nothing about the blur: the others decide
                log.info("shot %s of %s not checked: %s", k, clip, e)
        if len(per) < 2:
            continue
        sigmas = {k: r.meta["blur_sigma"][0] for k, r in per.items()}
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
    ``<out_dir>/degradation.pt`` (resume) or estimates it."""
    if not needs_degradation(cfg):
        return
    given = cfg.get("degradation_file")
    if given:
        load_degradation(given, "degradation_file", int(cfg.scale))  # fail before any training
        return
    path = out_dir / "degradation.pt"
    if path.is_file():
        log.info("reusing the target degradation of this run: %s", show_path(path))
    else:
        try:
            estimate_for_run(cfg, path)
        except DataError as e:
            raise DataError(f"estimating the target degradation (degradation_file=null): {e}") from None
    OmegaConf.update(cfg, "degradation_file", str(path), force_add=True)
