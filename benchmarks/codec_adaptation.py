"""Real-codec check of the video adaptation: a clip is the HR truth, its LR version is made by x4
bicubic downscaling and H.264 at a low rate (PyAV/libx264, inter-coded), the model adapts on the LR
clip only (``experiment=drn_unpaired_video``: estimate, then adapt) and is scored against the HR frames.

    python benchmarks/codec_adaptation.py --video ../shared/data/video/bigbuckbunny.mp4 --out codec.json \
        --work /tmp/codec_work --seeds 1 2

Arms (same steps and seeds): ``control`` (no LR frame: target_dual=shared, no LR-only and no target
pairs in the batch); ``adapted_nocodec`` (the estimate without a codec stage,
``degradation_estimate.codec=none``: the codec's blocking is looked for as JPEG); ``adapted``
(``codec=auto``: the stage's quantizer read from the clip); ``oracle`` (the true kernel, x4 bicubic,
with that same codec stage: the ceiling of the estimate, not of the codec model). Scored on the last
third of the frames (not trained on): Y-PSNR/SSIM, shave = scale, of bicubic, the unadapted source
model and each arm.
"""

from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.config import ASSETS_DIR, compose
from sr_adapt.degradation import load_degradation
from sr_adapt.degradation.synthetic import Degradation
from sr_adapt.data.transforms import mod_crop
from sr_adapt.evaluation.protocol import protocol_pair
from sr_adapt.io.video import probe_video, read_frames
from sr_adapt.io.video_writer import VideoWriter
from sr_adapt.models.bicubic import Bicubic
from sr_adapt.ops.color import quantize
from sr_adapt.ops.metrics import psnr, ssim
from sr_adapt.ops.resize import imresize
from sr_adapt.training.fit import fit
from sr_adapt.training.target_degradation import clip_qp


def make_lr_clip(video: Path, out: Path, scale: int, crf: int) -> tuple[torch.Tensor, dict]:
    """Writes the x``scale`` bicubic + H.264 (crf) LR clip; returns the HR frames (N, 3, H, W)."""
    info = probe_video(video)
    hr = read_frames(video, indices=list(range(info.frames - 8)))
    hr = mod_crop(hr, scale)
    lr = quantize(imresize(hr, scale=1.0 / scale))
    arr = (lr * 255).round().byte().permute(0, 2, 3, 1).numpy()
    with VideoWriter(out, arr.shape[2], arr.shape[1], Fraction(info.fps).limit_denominator(1001), crf=crf) as w:
        w.write(arr)
    seconds = len(arr) / info.fps
    return hr, {"frames": len(arr), "fps": info.fps, "kbps": round(out.stat().st_size * 8 / 1000 / seconds, 1),
                "hr_size": list(hr.shape[-2:]), "lr_size": list(arr.shape[1:3])}


@torch.no_grad()
def score(net: torch.nn.Module, lr: torch.Tensor, hr: torch.Tensor, scale: int) -> dict:
    """The paper protocol (:func:`protocol_pair`, Y channel, shave = scale), frame by frame."""
    net.eval()
    ps, ss = [], []
    for x, y in zip(lr, hr):
        sr, target = protocol_pair(net, x[None], y[None, :, : x.shape[-2] * scale, : x.shape[-1] * scale])
        ps.append(float(psnr(sr, target, shave=scale)))
        ss.append(float(ssim(sr, target, shave=scale)))
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "frames": len(ps)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", type=Path, required=True, help="HR clip (one shot)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True, help="scratch folder (LR clip, runs)")
    ap.add_argument("--arms", nargs="+", default=["control", "adapted_nocodec", "adapted", "oracle"])
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--crf", type=int, default=35, help="libx264 constant rate factor of the LR clip (higher: worse)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--patch", type=int, default=64, help="HR patch size of training (the experiment's 192 is for a GPU)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--eval-frames", type=int, default=12)
    ap.add_argument("--overrides", nargs="*", default=[], help="extra Hydra overrides for every arm")
    args = ap.parse_args()

    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    lr_clip = args.work / "lr.mp4"
    hr, clip = make_lr_clip(args.video, lr_clip, args.scale, args.crf)
    n = len(hr)
    split = int(n * 2 / 3)
    fps = clip["fps"]
    eval_idx = np.linspace(split + 2, n - 1, args.eval_frames).round().astype(int).tolist()
    lr_eval = read_frames(lr_clip, indices=eval_idx)
    hr_eval = hr[eval_idx]
    source = ASSETS_DIR / "weights" / "drn_x4_source.pt"
    report: dict = {"video": str(args.video), "clip": clip, "crf": args.crf, "steps": args.steps, "seeds": args.seeds,
                    "train_time_range": [0.0, round(split / fps, 2)], "eval_frames": eval_idx,
                    "bicubic": score(Bicubic(args.scale), lr_eval, hr_eval, args.scale),
                    "unadapted": score(load_checkpoint(source).net, lr_eval, hr_eval, args.scale)}
    qp = clip_qp("auto", [lr_clip])
    oracle = Degradation(args.scale, 0.0, video_qp=qp).record().save(args.work / "oracle.pt")
    report["codec_qp"] = qp
    arms = {"control": ["data.unpaired_ratio=0.0", "data.target_pair_ratio=0.0", "data.internal_pair_ratio=0.0",
                        "~data.train_sources.target_pairs", "~data.train_sources.internal_pairs", "model.target_dual=shared",
                        "model.correct_input=false"],
            "adapted_nocodec": ["degradation_estimate.codec=none"],
            "adapted": ["degradation_estimate.codec=auto"],
            "oracle": [f"degradation_file={oracle}"]}
    arms = {k: v for k, v in arms.items() if k in args.arms}
    for arm, extra in arms.items():
        runs = []
        for seed in args.seeds:
            run_dir = args.work / f"{arm}_seed{seed}"
            cfg = compose("train", [
                "experiment=drn_unpaired_video", "logger=csv", f"seed={seed}", f"trainer.max_steps={args.steps}",
                f"data.epoch_size={args.steps * 16}", f"data.patch_size={args.patch}", "data.num_workers=2", "model.optimizer.lr=2.0e-4",
                "model.scheduler.eta_min=1.0e-6", "callbacks.adaptation_monitor.every_n_steps=0",
                f"paths.output_dir={run_dir}", f"paths.root_dir={Path.cwd()}", f"paths.log_dir={args.work}/logs",
                *extra, *args.overrides])
            cfg.data.train_sources.video.paths = [str(lr_clip)]
            cfg.data.train_sources.video.time_range = [0.0, split / fps]
            cfg.callbacks.adaptation_monitor.times = [(split + 2) / fps]
            t = time.perf_counter()
            fit(cfg)
            net = load_checkpoint(run_dir / "checkpoints" / "last.ckpt").net
            runs.append({"seed": seed, **score(net, lr_eval, hr_eval, args.scale), "seconds": round(time.perf_counter() - t, 1)})
        report[arm] = {"psnr": float(np.mean([r["psnr"] for r in runs])), "psnr_std": float(np.std([r["psnr"] for r in runs])),
                       "ssim": float(np.mean([r["ssim"] for r in runs])), "runs": runs}
    for arm in ("adapted_nocodec", "adapted"):
        degradation = args.work / f"{arm}_seed{args.seeds[0]}" / "degradation.pt"
        if degradation.is_file():
            rec = load_degradation(degradation)
            report[arm]["estimate"] = {**rec.summary(), **rec.meta}
    if "control" in report:
        report["gain_db"] = {arm: report[arm]["psnr"] - report["control"]["psnr"] for arm in arms if arm != "control"}
    report["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.write_text(json.dumps(report, indent=2))
    for key in ("bicubic", "unadapted", *arms):
        spread = f" ± {report[key]['psnr_std']:.2f}" if "psnr_std" in report[key] else ""
        print(f"{key:<16} {report[key]['psnr']:.2f}{spread} dB  {report[key]['ssim']:.4f}")
    print(f"LR clip {clip['kbps']} kbps, codec stage qp {qp}; {report['seconds']} s")


if __name__ == "__main__":
    main()
