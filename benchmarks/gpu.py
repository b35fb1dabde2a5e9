#!/usr/bin/env python
"""Every GPU number of BENCHMARKS.md in one go, on a machine with a CUDA device.

    python benchmarks/gpu.py --out gpu_results              # CUDA: ~10 minutes on one H100/H200
    python benchmarks/gpu.py --dry-run --out /tmp/gpu_dry   # any machine: tiny sizes on the CPU

Writes ``<out>/gpu.json`` (everything) and ``<out>/gpu.md`` (the tables for BENCHMARKS.md):

1. **Training**, DRN-S x4 (``benchmarks/train_throughput.py``, our Lightning module, random
   batches, batch 16 of 192 px HR patches): samples/s and peak memory for fp32, bf16-mixed,
   bf16-mixed + channels_last, and bf16-mixed + channels_last + ``model.compile=true``.
2. **Upscale**, DRN-S x4 (random weights: speed does not depend on them), a 480x270 LR frame to
   1920x1080, untiled and tiled 256 (exact statistics): output megapixels/s and peak memory for
   torch fp32 / bf16 / fp16 autocast and, when onnxruntime-gpu is installed, the onnxruntime
   graph on its CUDA (or TensorRT) provider.
3. **Data loading**: patches/s of the video source with 8 workers (``benchmarks/video_decode.py``,
   48 px LR patches, rejection on) on the clips given (default: ``../shared/data/video/*.mp4``,
   else the bundled clip): what one GPU step needs must not wait on it.

``--dry-run`` runs the same code paths at tiny sizes on the CPU (what the test suite checks).
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
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")


def training(device: str, dry: bool, work: Path) -> list[dict[str, Any]]:
    size = (["--n-blocks", "1", "--n-feats", "8", "--patch", "32", "--batch", "2", "--steps", "1", "--warmup", "1",
             "--reps", "1"] if dry else ["--patch", "192", "--batch", "16", "--steps", "20", "--warmup", "5", "--reps", "3"])
    rows = [("fp32", [], "ours"), ("bf16-mixed", ["--precision", "bf16-mixed"], "ours"),
            ("bf16-mixed + channels_last", ["--precision", "bf16-mixed", "--channels-last"], "ours"),
            ("bf16-mixed + channels_last + compile", ["--precision", "bf16-mixed", "--channels-last"], "ours-compile")]
    if dry:
        rows = rows[:3]  # inductor's first compilation alone takes minutes on a small CPU
    out = []
    for name, flags, variant in rows:
        path = work / f"train_{len(out)}.json"
        _run(["benchmarks/train_throughput.py", "--device", device, *size, *flags, "--variants", variant,
              "--no-check", "--json", str(path)])
        r = json.loads(path.read_text())["results"][variant]
        out.append({"config": name, "samples_per_s": round(r["median_samples_per_s"], 2),
                    "ms_per_step": round(r["median_ms_per_step"], 1),
                    "peak_mem_mib": round(max(r["peak_mem_abs_mib"]), 0)})
        print("train", out[-1], flush=True)
    return out


def upscale(device: torch.device, dry: bool, reps: int) -> list[dict[str, Any]]:
    from sr_adapt.inference.onnx import onnx_model, onnxruntime_available, ort_providers
    from sr_adapt.inference.tiling import TiledUpscaler
    from sr_adapt.models.drn import DRN

    torch.manual_seed(0)
    net = (DRN(scale=4, n_blocks=1, n_feats=8) if dry else DRN.variant("s", 4)).eval().to(device)
    w, h = (32, 24) if dry else (480, 270)
    x = torch.rand(1, 3, h, w, device=device)
    engines: list[tuple[str, Any, str]] = [("torch fp32", net, "fp32"), ("torch bf16", net, "bf16")]
    if device.type == "cuda":
        engines.append(("torch fp16", net, "fp16"))
    if onnxruntime_available():
        try:
            provider = ort_providers(device)[0]
            cache = tempfile.mkdtemp(prefix="sr_adapt_gpu_graphs_")
            engines.append((f"onnxruntime fp32 ({provider})", onnx_model(net, cache, "fp32", device), "fp32"))
        except Exception as e:  # noqa: BLE001 - e.g. onnxruntime without a GPU provider: recorded
            print(f"onnxruntime skipped: {type(e).__name__}: {e}", flush=True)
    rows = []
    for name, model, precision in engines:
        for tile in (None, 16 if dry else 256):
            tiler = TiledUpscaler(model, tile=tile, tile_batch=4, precision=precision, device=device)
            tiler(x)  # warm-up (cuDNN autotune, graph load, statistics)
            if device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                tiler(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t)
            mp = h * w * 16 / 1e6
            rows.append({"engine": name, "tile": tile or "untiled", "output_mp_per_s": round(mp / statistics.median(times), 3),
                         "seconds": round(statistics.median(times), 4),
                         "peak_mem_mib": round(torch.cuda.max_memory_allocated() / 2**20) if device.type == "cuda" else None})
            print("upscale", rows[-1], flush=True)
    return rows


def loading(clips: list[str], dry: bool, work: Path) -> list[dict[str, Any]]:
    if not clips:
        shared = sorted(str(p) for p in (REPO.parent / "shared" / "data" / "video").glob("*.mp4"))
        clips = shared or [str(REPO / "sr_adapt" / "assets" / "sample_data" / "video" / "bikes.mp4")]
    path = work / "video.json"
    _run(["benchmarks/video_decode.py", *clips, "--workers", *(["0"] if dry else ["8"]), "--lr-patches", "48",
          "--samples", "8" if dry else "1024", "--batch", "16", "--random-reads", "2" if dry else "20", "--json", str(path)])
    rows = json.loads(path.read_text())["dataset"]
    return [{"workers": r["workers"], "rejection": r.get("rejection"), "lr_patch": r.get("lr_patch"),
             "patches_per_s": round(r["patches_per_s"], 1)} for r in rows]


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Device: {result['device_name']} (torch {result['torch']}){' — DRY RUN, tiny sizes' if result['dry_run'] else ''}", "",
             "| training config | samples/s | ms/step | peak memory (MiB) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['config']} | {r['samples_per_s']} | {r['ms_per_step']} | {r['peak_mem_mib']} |" for r in result["training"]]
    lines += ["", "| upscale engine | tile | output MP/s | peak memory (MiB) |", "|---|---|---:|---:|"]
    lines += [f"| {r['engine']} | {r['tile']} | {r['output_mp_per_s']} | {r['peak_mem_mib']} |" for r in result["upscale"]]
    lines += ["", "| video source | workers | LR patch | patches/s |", "|---|---:|---:|---:|"]
    lines += [f"| rejection {'on' if r['rejection'] else 'off'} | {r['workers']} | {r['lr_patch']} | {r['patches_per_s']} |"
              for r in result["loading"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU: checks the script, measures nothing")
    ap.add_argument("--clips", nargs="*", default=[])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run this on a GPU machine, or --dry-run to check the script on the CPU")
    device = torch.device("cpu" if args.dry_run else "cuda")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = {
            "dry_run": args.dry_run, "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "CPU",
            "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "training": training(str(device), args.dry_run, work),
            "upscale": upscale(device, args.dry_run, 1 if args.dry_run else args.reps),
            "loading": loading(args.clips, args.dry_run, work),
        }
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2))
    (args.out / "gpu.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
