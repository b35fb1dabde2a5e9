"""Inference backends and tile margins, whole process, side by side in one run.

    python benchmarks/inference_backends.py --ckpt sr_adapt/assets/weights/drn_x4_source.pt \
        --set5 ../shared/data/benchmarks/Set5 --lr-size 480x270 --tile 128 --reps 2 --json backends.json

Rows (``scripts/upscale.py`` in a fresh process each time, same weights, same input image, same
tile): ``backend`` x ``precision`` x ``tile_margin`` (exact bound / auto). The graph cache is a
fresh folder: the first call of each row is *cold* (it pays the export, int8 calibration or margin
measurement once), the next ``--reps`` are *warm* (what every later call costs); rows alternate
within each repetition (bf16: PyTorch autocast, fast on CPUs with AMX). Ratios are against ``torch fp32 exact`` warm.

Set5 (``scripts/evaluate.py``): Y-PSNR of torch fp32, onnxruntime fp32 and int8, torch bf16
autocast (ΔdB vs torch fp32).

Margins: for every ``tile_margin=auto`` row, the measured margin, the exact bound, the pixels run
through the network per frame pixel at ``--tile`` on an ``--lr-size`` frame, and the max error
on the probe (8-bit levels).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROWS = [("torch", "fp32", "exact"), ("onnxruntime", "fp32", "exact"), ("onnxruntime", "int8", "exact"),
        ("torch", "bf16", "exact"), ("torch", "fp32", "auto"), ("onnxruntime", "fp32", "auto"),
        ("onnxruntime", "int8", "auto"), ("torch", "bf16", "auto")]


def frame(path: Path, width: int, height: int, source: str | None) -> None:
    """A real-content LR frame: a crop of ``source`` (or the bundled photos' mosaic), resized to cover."""
    import torch

    from sr_adapt.io.images import list_images, load_image, save_image
    from sr_adapt.ops.resize import imresize

    if source:
        img = load_image(source)[None]
    else:
        from sr_adapt.config import ASSETS_DIR
        from sr_adapt.inference.margins import probe_image

        hr = [load_image(f) for f in list_images(ASSETS_DIR / "sample_data" / "DF2K" / "HR", "x")]
        img = probe_image(hr, 1, max(width, height))
    h, w = img.shape[-2:]
    k = max(width / w, height / h)
    if k > 1:
        img = imresize(img, scale=k).clamp(0, 1)
    top, left = (img.shape[-2] - height) // 2, (img.shape[-1] - width) // 2
    save_image(img[0, :, top : top + height, left : left + width].clamp(0, 1), path)


def run(args: list[str], env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=str(REPO / "sr_adapt/assets/weights/drn_x4_source.pt"))
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--extra", default="", help="extra keys for both commands, e.g. 'model=drrn'")
    ap.add_argument("--set5", default=str(REPO.parent / "shared/data/benchmarks/Set5"))
    ap.add_argument("--source", default=None, help="image the LR frame is cut from (default: bundled photos)")
    ap.add_argument("--lr-size", default="480x270")
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--rows", default=None, help="comma-separated backend:precision:margin (default: all six)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = [tuple(r.split(":")) for r in args.rows.split(",")] if args.rows else ROWS
    w, h = map(int, args.lr_size.split("x"))
    extra = args.extra.split() if args.extra else []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = {**os.environ, "SR_ADAPT_CACHE_DIR": str(work / "cache"), "WANDB_MODE": "offline"}
        src = work / "frame.png"
        frame(src, w, h, args.source)
        times: dict[str, dict] = {}

        def upscale(row: tuple[str, ...]) -> float:
            b, p, m = row
            out = work / f"{b}_{p}_{m}.png"
            t, _ = run(["scripts/upscale.py", f"ckpt_path={args.ckpt}", f"scale={args.scale}", *extra, f"input={src}",
                        f"output={out}", f"tile={args.tile}", f"backend={b}", f"precision={p}", f"tile_margin={m}",
                        "device=cpu", f"hydra.run.dir={work}/h"], env)
            return t

        for row in rows:
            times[":".join(row)] = {"cold_s": round(upscale(row), 2), "warm_s": []}
        for _ in range(args.reps):
            for row in rows:
                times[":".join(row)]["warm_s"].append(round(upscale(row), 2))
        ref = statistics.median(times["torch:fp32:exact"]["warm_s"]) if "torch:fp32:exact" in times else None
        for v in times.values():
            v["warm_median_s"] = statistics.median(v["warm_s"])
            v["speedup_vs_torch_exact"] = round(ref / v["warm_median_s"], 2) if ref else None
            print(v, flush=True)

        margins = {}
        from sr_adapt.inference.tiling import axis_tiles

        for f in sorted((work / "cache").glob("*-margin-*.json")):
            m = json.loads(f.read_text())
            cost = {}
            for name, margin in (("exact", m["exact_margin"]), ("auto", m["margin"])):
                ys, xs = axis_tiles(h, args.tile, margin), axis_tiles(w, args.tile, margin)
                cost[name] = round(len(ys) * ys[0][3] * len(xs) * xs[0][3] / (w * h), 3)
            margins[f.name] = {"margin": m["margin"], "exact_margin": m["exact_margin"],
                               "max_error_levels": round(m["max_error"] * 255, 3), "tried_levels": {
                                   k: round(v * 255, 2) for k, v in m["tried"].items()},
                               "pixels_per_frame_pixel": cost}
            print(f.name, margins[f.name], flush=True)

        set5 = {}
        if Path(args.set5).is_dir():
            for b, p in (("torch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("torch", "bf16")):
                out = work / f"set5_{b}_{p}.json"
                run(["scripts/evaluate.py", f"ckpt_path={args.ckpt}", f"scale={args.scale}", *extra,
                     f"benchmarks=[{args.set5}]", f"backend={b}", f"precision={p}", "device=cpu", f"output={out}",
                     f"hydra.run.dir={work}/h"], env)
                r = json.loads(out.read_text())["results"]
                set5[f"{b}:{p}"] = {k: round(v, 4) for k, v in next(iter(r.values())).items() if k in ("psnr", "ssim")}
            base = set5["torch:fp32"]["psnr"]
            for v in set5.values():
                v["delta_db"] = round(v["psnr"] - base, 4)
            print(set5, flush=True)

    import onnxruntime
    import torch

    result = {"ckpt": args.ckpt, "scale": args.scale, "extra": extra, "lr_size": [w, h], "tile": args.tile,
              "reps": args.reps, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "onnxruntime": onnxruntime.__version__, "load_avg": os.getloadavg(), "upscale": times,
              "margins": margins, "set5": set5}
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
