"""The adaptation benchmark's measures and report: how far a kernel estimate is from the truth (DualSR's
LR-agreement score among them), an arm's mean and spread over seeds, and the report as text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from sr_adapt.degradation import DegradationRecord
from sr_adapt.degradation.kernels import lr_agreement

__all__ = ["estimate_error", "format_report", "mean_std"]


def estimate_error(estimate: DegradationRecord, truth: DegradationRecord, hr: Tensor | None = None) -> dict[str, Any]:
    """How far an estimate is from the truth: blur sigmas (HR px), angle, noise, JPEG, the kernels'
    relative L2 distance and, as DualSR scores kernels, the Y-PSNR between what the two kernels make of
    the HR image ``hr`` ((3, H, W); a random image when None)."""
    e, t = estimate.summary(), truth.summary()
    size = max(estimate.kernel.shape[-1], truth.kernel.shape[-1])

    def padded(k: Tensor) -> Tensor:
        p = (size - k.shape[-1]) // 2
        return torch.nn.functional.pad(k, (p, p, p, p))

    ke, kt = padded(estimate.kernel), padded(truth.kernel)
    if hr is None:
        probe = torch.rand(1, 3, 64 * truth.scale, 64 * truth.scale, generator=torch.Generator().manual_seed(0))
    else:
        probe = hr
    lr_psnr = lr_agreement(estimate.kernel, truth.kernel, truth.scale, [probe])
    return {
        "sigma_major": round(e["sigma_major"] - t["sigma_major"], 3),
        "sigma_minor": round(e["sigma_minor"] - t["sigma_minor"], 3),
        "noise_sigma": round(float(np.mean(e["noise_sigma"]) - np.mean(t["noise_sigma"])), 3),
        "jpeg_quality": e["jpeg_quality"] - t["jpeg_quality"],
        "kernel_rel_l2": round(float((ke - kt).norm() / kt.norm()), 4),
        "lr_psnr_db": round(lr_psnr, 2),
        "estimate": e, "truth": t,
    }


def mean_std(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ps, ss = [r["psnr"] for r in runs], [r["ssim"] for r in runs]
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "psnr_std": float(np.std(ps)),
            "ssim_std": float(np.std(ss)), "runs": runs}


def _error_line(what: str, err: Mapping[str, Any]) -> str:
    return (f"{what} - truth: sigma {err['sigma_major']:+.2f}/{err['sigma_minor']:+.2f} HR px, noise "
            f"{err['noise_sigma']:+.2f}/255, JPEG {err['jpeg_quality']:+d}, kernel rel. L2 {err['kernel_rel_l2']:.3f}, "
            f"LR agreement {err['lr_psnr_db']:.1f} dB")


def format_report(report: dict[str, Any]) -> str:
    seeds = report.get("seeds", [])
    arms = report.get("arms", [])
    lines = [f"target: {report['target']['degradation']} ({report['target']['hr_dir']}), seeds {seeds}"
             + (", adapted per image" if report.get("per_image") else ""),
             f"{'model':<12}{'PSNR':>8}{'+-':>6}{'SSIM':>8}"]
    for key in ("bicubic", "unadapted", *arms):
        r = report[key]
        lines.append(f"{key:<12}{r['psnr']:>8.2f}{r.get('psnr_std', 0.0):>6.2f}{r['ssim']:>8.4f}")
    for name, r in report.get("baselines", {}).items():
        lines.append(f"{name:<12}{r['psnr']:>8.2f}{'':>6}{r['ssim']:>8.4f}  ({r['model']}, not adapted)")
    for what in ("estimate", "kernelgan"):
        err = report.get(f"{what}_error")
        if err:
            lines.append(_error_line(what, err))
    images = report.get("images")
    if images:
        cols = ["bicubic", "unadapted", *arms]
        lines.append(f"{'image':<14}" + "".join(f"{c[:10]:>11}" for c in cols) + f"{'est. dB':>9}{'est. s':>8}")
        for stem, row in images.items():
            err = row.get("estimate_error") or {}
            cells = [row[c] if isinstance(row[c], float) else row[c]["psnr"] for c in cols]
            lines.append(f"{stem[:14]:<14}" + "".join(f"{v:>11.2f}" for v in cells)
                         + f"{err.get('lr_psnr_db', float('nan')):>9.1f}{row['seconds'].get('estimate_s', float('nan')):>8.2f}")
        scores = ", ".join(f"{w} {report[f'{w}_lr_psnr_db']:.1f} dB" for w in ("estimate", "kernelgan")
                           if f"{w}_lr_psnr_db" in report)
        if scores:
            lines.append(f"kernel estimates, LR agreement with the truth (mean): {scores}")
        lines.append(f"seconds per image: {report.get('seconds_per_image')}")
    if "gain_db" in report:
        closed = report.get("gap_closed")
        lines.append(f"adapted - control: {report['gain_db']:+.2f} dB, adapted - unadapted: "
                     f"{report['gain_over_unadapted_db']:+.2f} dB"
                     + (f"; control-to-oracle gap closed: {closed:.0%}" if closed is not None else ""))
    lines.append(f"seconds: {report['seconds']}")
    return "\n".join(lines)
