"""Estimating the degradation of LR-only images: blur kernel, noise, noise patches.

Pooled over all the images given (the frames of a shot share one degradation).

**Noise** (:func:`estimate_noise`): the image convolved with the Laplacian-like mask
``[[1,-2,1],[-2,4,-2],[1,-2,1]] / 6`` keeps white noise at its standard deviation and removes
locally linear content (Immerkaer 1996); its standard deviation is taken over the flattest
8x8 blocks (lowest smoothed-gradient energy). Zero-mean noise patches (a plane removed) are
harvested from the flattest 16x16 blocks, as RealSR injects them into training pairs.

**Kernel**, two methods (``method``), chosen per estimate by default (``auto``: learned, but cross_scale on
compressed images and at scales without an estimator; :func:`estimate_degradation`). ``learned``: the
free-form kernel read off the images by the shipped estimator (:mod:`.kernel_net`: any shape -- anisotropic,
DIV2KRK's noisy Gaussians, motion lines, bicubic after a blur --, so there is no family to choose).
``cross_scale`` (any scale; :mod:`.blur_estimate`): a Gaussian blur in a chosen family.

**Blur** (``cross_scale``): :mod:`.blur_estimate`.

**JPEG** (:func:`estimate_jpeg`): the lag-1 differences across the 8x8 block grid against those
at the neighbouring phases; the quality by calibration on the reference.

**Video codec**: not estimated from pixels but given (``video_qp``: the H.264 quantizer, read from
the clip by :func:`sr_adapt.training.target_degradation.clip_qp`); the reference is then degraded through the same
codec for every calibration, so the codec's smoothing is not mistaken for blur or its blocking for JPEG.

Limits (measured, BENCHMARKS.md): noise under strong JPEG is nearly invisible in flat regions, so its
pre-JPEG level, and through it the blur, depend on how flat the reference images are.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sr_adapt.degradation.blur_estimate import (DEFAULT_DOWNSAMPLE, DOWNSAMPLE_FAMILIES, cross_scale_kernel,
                                                  degrade_reference, lag_energy, lumas)
from sr_adapt.degradation.kernel_net import load_kernel_estimator, shipped_estimator_path
from sr_adapt.degradation.kernels import gaussian_kernel, lr_agreement
from sr_adapt.degradation.record import DegradationRecord
from sr_adapt.degradation.synthetic import Degradation
from sr_adapt.errors import ConfigError, DataError
from sr_adapt.ops.color import rgb_to_y

__all__ = ["DEFAULT_METHOD", "ESTIMATE_METHODS", "NO_SHIFT_DB", "check_images", "estimate_degradation",
           "estimate_jpeg", "estimate_noise"]

log = logging.getLogger("sr_adapt.degradation")

MIN_SIDE = 32  # LR pixels: smaller images cannot be estimated from
MIN_DETAIL = 2e-4  # mean squared lag-1 luma difference ([0,1] units) below which a set is "too flat"
_LAPLACE = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]) / 6.0


def check_images(images: Sequence[Tensor], names: Sequence[str], key: str) -> None:
    """Raises :class:`DataError` naming ``key`` if the images are too few, too small or too flat."""
    if not images:
        raise DataError(f"{key}: no LR images to estimate the degradation from")
    small = [f"{n} ({im.shape[-1]}x{im.shape[-2]})" for im, n in zip(images, names) if min(im.shape[-2:]) < MIN_SIDE]
    if small:
        raise DataError(f"{key}: images smaller than {MIN_SIDE}x{MIN_SIDE} LR pixels cannot be estimated from: "
                        f"{', '.join(small[:5])}; remove them or give larger frames")
    detail = float(np.mean([lag_energy(rgb_to_y(im[None]), (0, 1), 1) for im in images]))
    if detail < MIN_DETAIL:
        raise DataError(f"{key}: the images are too flat to estimate a blur from (mean squared detail {detail:.2e} < "
                        f"{MIN_DETAIL:.0e}): give frames with edges and texture, or a degradation_file")


# --- noise ---------------------------------------------------------------------------------
def _blocks(x: Tensor, n: int) -> Tensor:
    """(C, H, W) -> (C, N, n, n) non-overlapping blocks."""
    c, h, w = x.shape
    x = x[:, : h - h % n, : w - w % n]
    return x.unfold(1, n, n).unfold(2, n, n).reshape(c, -1, n, n)


def _structure(img: Tensor) -> Tensor:
    """(3, H, W) -> (H, W) gradient magnitude of the smoothed luma (little affected by noise)."""
    y = rgb_to_y(img[None])
    g = gaussian_kernel(1.0)[None, None]
    y = F.conv2d(F.pad(y, (3, 3, 3, 3), mode="reflect"), g)
    gy, gx = y[..., 1:, :-1] - y[..., :-1, :-1], y[..., :-1, 1:] - y[..., :-1, :-1]
    return F.pad((gx**2 + gy**2).sqrt(), (0, 1, 0, 1), mode="replicate")[0, 0]


def estimate_noise(images: Sequence[Tensor], flat_fraction: float = 0.1, n_patches: int = 256,
                   patch: int = 16) -> tuple[tuple[float, float, float], Tensor]:
    """Per-channel noise std (8-bit levels) and a bank of zero-mean noise patches (N, 3, patch, patch) in [0,1] units.

    Args:
        images: (3, H, W) in [0,1].
        flat_fraction: share of 8x8 blocks (the flattest) the std is measured on.
    """
    stds, structs, bank, bank_score = [], [], [], []
    yy, xx = torch.meshgrid(torch.arange(patch, dtype=torch.float32), torch.arange(patch, dtype=torch.float32), indexing="ij")
    basis = torch.stack([torch.ones_like(xx), xx - xx.mean(), yy - yy.mean()], -1).reshape(-1, 3)
    proj = basis @ torch.linalg.pinv(basis)  # plane fit
    for img in images:
        r = F.conv2d(img[:, None], _LAPLACE[None, None])[:, 0]  # (3, H-2, W-2)
        st = _structure(img)[1:-1, 1:-1]
        rb = _blocks(r, 8)
        stds.append(rb.flatten(2).std(2).T)  # (N, 3)
        structs.append(_blocks(st[None], 8)[0].flatten(1).mean(1))
        pb = _blocks(img, patch)  # (3, N, p, p)
        sb = _blocks(_structure(img)[None], patch)[0].flatten(1).mean(1)
        flat = pb.permute(1, 0, 2, 3).reshape(pb.shape[1], 3, -1)
        bank.append((flat - flat @ proj.T).reshape(-1, 3, patch, patch))
        bank_score.append(sb)
    stds_all, structs_all = torch.cat(stds), torch.cat(structs)
    k = max(int(len(structs_all) * flat_fraction), 1)
    flat_idx = structs_all.argsort()[:k]
    sigma = stds_all[flat_idx].median(0).values * 255.0
    patches, scores = torch.cat(bank), torch.cat(bank_score)
    keep = scores.argsort()[: min(n_patches, max(len(scores) // 10, 1))]
    return tuple(float(v) for v in sigma), patches[keep].contiguous()


def _block_ratios(lumas: Sequence[Tensor]) -> list[float]:
    """(8,) mean |lag-1 luma difference| at each phase of the 8 px grid over that at its two neighbours."""
    total = torch.zeros(8, dtype=torch.float64)
    for y in lumas:
        for d in (y[..., :, 1:] - y[..., :, :-1], (y[..., 1:, :] - y[..., :-1, :]).transpose(-1, -2)):
            e = d.abs().mean(dim=(0, 1, 2))  # per column
            phase = torch.arange(e.shape[0]) % 8
            total += torch.stack([e[phase == k].mean() for k in range(8)]).double()
    return [float(total[k] / (0.5 * (total[k - 1] + total[(k + 1) % 8])).clamp(min=1e-12)) for k in range(8)]


def blockiness(lumas: Sequence[Tensor]) -> float:
    """Mean |lag-1 luma difference| across the 8x8 JPEG block boundaries over that at the two
    neighbouring phases (about 1 without a JPEG grid; JPEG q75 on LR images gives 1.05-1.07)."""
    return _block_ratios(lumas)[7]


def blockiness_spread(lumas: Sequence[Tensor]) -> float:
    """How far the same ratio strays from 1 at the phases away from the block boundary (1-5): the
    content's own variation, large for a few small images (0.03-0.15 for one 128 px LR image)."""
    return max(abs(r - 1.0) for r in _block_ratios(lumas)[1:6])


JPEG_QUALITIES = (30, 40, 50, 60, 70, 80, 90)
JPEG_MIN_BLOCKINESS = 1.03  # below: no JPEG grid detected
# Fewer LR pixels than this (one small image): clean ones read up to 1.09 (Set14 lenna's 128 px LR, whose false
# q77 cost its correction 2.1 dB; Set5 head 1.08, baby 1.06), so the grid must reach JPEG_MIN_BLOCKINESS_FEW.
JPEG_FEW_PIXELS = 100_000
JPEG_MIN_BLOCKINESS_FEW = 1.10
JPEG_GRID_MARGIN = 2.0  # the grid's excess must be this many times the other phases' largest (blockiness_spread)
NOISE_FLOOR = 1.0  # 8-bit levels: a lower estimate is the rounding and texture (a clean image reads 0.4-0.5)
MIN_NOISE_PATCHES = 16  # fewer harvested patches: Gaussian noise of their level instead of tiling them
NOISE_GRID = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
CODEC_NOISE_RISE = 1.0  # 8-bit levels: a codec stage that keeps less of NOISE_GRID's range hides the noise level


def estimate_jpeg(images_y: Sequence[Tensor], reference_hr: Sequence[Tensor], scale: int) -> int:
    """JPEG quality matching the images' blockiness on the reference (0: no JPEG grid found)."""
    b = blockiness(images_y)
    few = sum(y.numel() for y in images_y) < JPEG_FEW_PIXELS
    if b < (JPEG_MIN_BLOCKINESS_FEW if few else JPEG_MIN_BLOCKINESS) or \
            b - 1.0 < JPEG_GRID_MARGIN * blockiness_spread(images_y):
        return 0  # no grid, or none that stands out of the content's own variation across phases
    curve = [blockiness(lumas(degrade_reference(reference_hr, scale, 1.0, 1.0, q))) for q in JPEG_QUALITIES]
    # blockiness falls with quality: interpolate on the reversed (increasing) curve
    c = np.minimum.accumulate(np.asarray(curve))[::-1]
    return int(round(float(np.interp(b, c, np.asarray(JPEG_QUALITIES, dtype=np.float64)[::-1]))))


ESTIMATE_METHODS = ("auto", "learned", "cross_scale")
DEFAULT_METHOD = "auto"
#: dB of LR agreement (:func:`~sr_adapt.degradation.kernels.lr_agreement` on the reference images) above
#: which an estimated kernel is the source model's bicubic one: no shift, no correction of the input.
#: Measured (BENCHMARKS.md, "Choosing the estimate"): the learned estimate of bicubic LR images reads
#: 38.96-43.5 dB per image (42.0 pooled over Set14); of DIV2KRK kernels, at most 38.5 (19 images).
NO_SHIFT_DB = 39.0


def estimate_degradation(images: Sequence[Tensor], scale: int, reference_hr: Sequence[Tensor],
                         names: Sequence[str] | None = None, key: str = "estimate",
                         anisotropic: bool = False, downsample: str = DEFAULT_DOWNSAMPLE,
                         video_qp: int | None = None, method: str = DEFAULT_METHOD,
                         estimator: str | None = None) -> DegradationRecord:
    """Kernel, noise, noise patches and JPEG quality of LR images (3, H, W) in [0,1], calibrated on
    ``reference_hr`` (clean HR images of the source domain, (3, H, W) in [0,1]).

    ``anisotropic``: fit an anisotropic Gaussian to the four directional blurs. Off by default: on
    a few images the directional statistic also follows the orientation of the content (edges of
    one direction), which makes a spurious anisotropy of +-0.5 px; the isotropic estimate (the
    root mean square of the four) is the more reliable one.

    ``downsample``: the kernel family, decimate (Gaussian blur then plain s-fold sampling: camera-like,
    the default), bicubic, or auto (bicubic unless the images are sharper than bicubic); see
    :func:`.blur_estimate.estimate_blur`.

    ``video_qp``: the images are frames of a clip coded with H.264 at about this quantizer (known
    from the file): the record gets that codec stage instead of a JPEG estimate, and the calibrations see it.

    ``method``: ``learned`` (the free-form kernel read by the trained estimator,
    :mod:`.kernel_net`: ``estimator``, a file, or the shipped one; ``anisotropic`` and ``downsample`` do not
    apply: any shape, any family), ``cross_scale`` (the parametric Gaussian above) or ``auto``: learned,
    but cross_scale where no estimator exists for the scale or where the images are compressed (a JPEG grid found, or a codec stage given): under
    compression the learned kernel's fine shape is unreliable and the input correction built on it
    amplifies the artefacts, while the cross-scale Gaussian is calibrated through the same compression
    (BENCHMARKS.md, "Choosing the estimate").

    Whatever the method, a kernel that agrees with the source model's bicubic one to :data:`NO_SHIFT_DB`
    on the references is taken as that bicubic kernel (``meta["no_shift_db"]``): a correction for a kernel
    almost right but not quite is a sharpening that costs what it should save."""
    t0 = time.perf_counter()
    names = list(names or [f"image {i}" for i in range(len(images))])
    check_images(images, names, key)
    if not reference_hr:
        raise DataError(f"{key}: no reference HR images to calibrate the blur estimate on")
    images_y = lumas(images)
    quality = estimate_jpeg(images_y, reference_hr, scale) if video_qp is None else 0
    sigma_rgb, patches = estimate_noise(images)
    noise = float(np.mean(sigma_rgb))
    if quality or video_qp is not None:  # the noise seen after compression is weaker: find the level before it
        seen = np.maximum.accumulate([float(np.mean(estimate_noise(degrade_reference(reference_hr, scale, 1.0, n, quality,
                                                                                     video_qp=video_qp))[0]))
                                      for n in NOISE_GRID])
        if video_qp is not None and seen[-1] - seen[0] < CODEC_NOISE_RISE:
            noise = 0.0  # the codec flattens any noise level alike: what remains is its own, which it makes itself
        else:
            noise = float(np.interp(noise, seen, NOISE_GRID))
        sigma_rgb = (noise, noise, noise)
    if noise < NOISE_FLOOR:  # the 8-bit rounding (0.29 levels rms) and leftover texture, not a noise stage
        sigma_rgb, patches, noise = (0.0, 0.0, 0.0), None, 0.0
    elif len(patches) < MIN_NOISE_PATCHES:  # a few patches tiled would add their own pattern: Gaussian instead
        patches = None
    if method not in ESTIMATE_METHODS:
        raise ConfigError(f"{key}: method={method!r}: choose one of {', '.join(ESTIMATE_METHODS)}")
    if downsample not in DOWNSAMPLE_FAMILIES:
        raise ConfigError(f"{key}: downsample={downsample!r}: choose one of {', '.join(DOWNSAMPLE_FAMILIES)}")
    compressed = bool(quality) or video_qp is not None  # harvested patches would be compression residue
    chosen = method
    if method == "auto":
        learnable = estimator is not None or shipped_estimator_path(scale).is_file()
        chosen = "learned" if learnable and not compressed else "cross_scale"
    if chosen == "learned":
        kernel = load_kernel_estimator(scale, estimator, "degradation_estimate.estimator" if estimator
                                       else "degradation_estimate.method").estimate(images)
        meta = {"method": "learned"}
    else:
        kernel, meta = cross_scale_kernel(images_y, reference_hr, scale, noise, quality, video_qp, downsample, anisotropic)
    if method == "auto":
        meta["chosen_by"] = "auto: " + ("compressed" if compressed else "not compressed" if chosen == "learned"
                                        else f"no estimator for x{scale}")
    bicubic = Degradation(scale).kernel()
    agreement = lr_agreement(kernel, bicubic, scale, reference_hr)
    if agreement >= NO_SHIFT_DB:
        kernel, meta["no_shift_db"] = bicubic, round(agreement, 2)
    meta.update({"images": len(images), "seconds": round(time.perf_counter() - t0, 2),
                 "reference_images": len(reference_hr)})
    rec = DegradationRecord.standard(scale, kernel, sigma_rgb, None if compressed else patches, quality, meta, video_qp)
    _check_estimate(rec, key)
    log.info("estimated degradation from %d images in %.1fs (%s%s): %s", len(images), meta["seconds"], meta["method"],
             f", within {agreement:.1f} dB of bicubic: no shift" if "no_shift_db" in meta else "", rec.describe())
    return rec


def _check_estimate(rec: DegradationRecord, key: str) -> None:
    """The record's own checks (NaN, mass at the border, ...) with the names of the images' key."""
    try:
        rec.check(key)
    except ConfigError as e:
        raise DataError(f"the estimate did not converge: {e}") from None
