"""Upscaling throughput: output megapixels/s of tiled and untiled inference vs the plain forward.

    python benchmarks/upscale_throughput.py --lr-size 480x270 --tile 256 --reps 2 --json out.json
    python benchmarks/upscale_throughput.py --memory-only --lr-size 960x540 --tile 256   # 1080p -> 4K

Variants, alternated within each repetition on the same weights and input:

* ``plain``: ``net.super_resolve(x)`` under ``torch.no_grad`` (the reference);
* ``untiled``: :class:`TiledUpscaler` with ``tile=0`` (one forward, our wrapper's overhead);
* ``tiled-cold``: tiled, exact, no previous statistics (a still image: 2-3 passes);
* ``tiled-warm``: tiled, exact, statistics of the previous frame (video steady state: 1 pass);
* ``tiled-local``: tiled, per-tile statistics (one pass, approximate).

``--memory-only`` measures, in a fresh process, the peak resident memory of one tile batch of a
whole-frame job (the model, the input frame, the output buffer and one batch of crops through
the network: every tile has the same crop size, so this is the peak of the whole frame).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch


def build_net(ckpt: str | None) -> torch.nn.Module:
    if ckpt:
        from sr_adapt.checkpoints import load_checkpoint

        return load_checkpoint(ckpt).net.eval()
    from sr_adapt.models.drn import DRN

    torch.manual_seed(0)
    return DRN.variant("s", 4).eval()  # DRN-S x4, random weights (speed does not depend on them)


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_probe(args: argparse.Namespace) -> dict:
    from sr_adapt.inference.tiling import TiledUpscaler, axis_tiles

    w, h = map(int, args.lr_size.split("x"))
    net = build_net(args.ckpt)
    s = net.scale
    x = torch.rand(1, 3, h, w)
    out = torch.empty(1, 3, h * s, w * s)  # the output frame buffer, as in a real run
    out.zero_()
    tiler = TiledUpscaler(net, tile=args.tile, tile_batch=args.tile_batch)
    ys, xs = axis_tiles(h, args.tile, tiler.margin), axis_tiles(w, args.tile, tiler.margin)
    before = rss_mib()
    crops = x[:, :, : ys[0][3], : xs[0][3]].expand(args.tile_batch, -1, -1, -1).contiguous()
    start = time.perf_counter()
    with torch.no_grad():
        net.super_resolve(crops)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "lr_size": [h, w], "out_size": [h * s, w * s], "tile": args.tile, "tile_batch": args.tile_batch,
        "margin": tiler.margin, "crop": [ys[0][3], xs[0][3]], "tiles_per_pass": len(ys) * len(xs),
        "rss_before_forward_mib": round(before, 1), "peak_rss_mib": round(peak, 1),
        "forward_rise_mib": round(peak - before, 1), "seconds_per_tile_batch": round(seconds, 2),
    }


def throughput(args: argparse.Namespace) -> dict:
    from sr_adapt.inference.tiling import TiledUpscaler

    torch.set_num_threads(args.threads)
    w, h = map(int, args.lr_size.split("x"))
    net = build_net(args.ckpt)
    s = net.scale
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, h, w, generator=g)
    mp = h * s * w * s / 1e6
    untiled = TiledUpscaler(net, tile=0)
    warm = TiledUpscaler(net, tile=args.tile, tile_batch=args.tile_batch)
    local = TiledUpscaler(net, tile=args.tile, tile_batch=args.tile_batch, exact_stats=False)

    def plain() -> torch.Tensor:
        with torch.no_grad():
            return net.super_resolve(x)

    variants = {"plain": plain, "untiled": lambda: untiled(x), "tiled-warm": lambda: warm(x), "tiled-local": lambda: local(x)}
    variants = {k: v for k, v in variants.items() if k in args.variants.split(",")}
    times: dict[str, list[float]] = {k: [] for k in variants}
    outputs: dict[str, torch.Tensor] = {}
    passes: dict[str, int] = {}
    # The first call of the exact tiler is a still image's cost (no previous statistics); it leaves
    # this frame's statistics, so its later calls are the steady state of a video.
    start = time.perf_counter()
    outputs["tiled-cold"] = warm(x)
    times["tiled-cold"] = [time.perf_counter() - start]
    passes["tiled-cold"] = warm.last_passes
    for _ in range(args.reps):
        for name, fn in variants.items():
            start = time.perf_counter()
            outputs[name] = fn()
            times[name].append(time.perf_counter() - start)
    ref = outputs["plain"] if "plain" in outputs else plain()
    errors = {k: float((y - ref).abs().max()) * 255 for k, y in outputs.items()}
    passes["tiled-warm"] = warm.last_passes
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = {
        k: {"seconds_median": round(med[k], 2), "seconds": [round(t, 2) for t in times[k]],
            "mpix_per_s": round(mp / med[k], 4), "ratio_vs_plain": round(med["plain"] / med[k], 3) if "plain" in med else None,
            "max_abs_diff_vs_plain_x255": round(errors[k], 5), "passes": passes.get(k, 1)}
        for k in times
    }
    return {"lr_size": [h, w], "out_mpix": round(mp, 3), "tile": args.tile, "tile_batch": args.tile_batch,
            "margin": warm.margin, "threads": args.threads, "torch": torch.__version__, "variants": rows,
            "load_avg": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", default=None, help="checkpoint (default: random-weight DRN-S x4)")
    ap.add_argument("--lr-size", default="480x270", help="input WxH")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--tile-batch", type=int, default=1)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default="plain,untiled,tiled-warm,tiled-local", help="tiled-cold always runs first")
    ap.add_argument("--memory-only", action="store_true")
    ap.add_argument("--_probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args._probe:
        print(json.dumps(memory_probe(args)))
        return
    if args.memory_only:  # fresh process: its peak RSS is this measurement's alone
        cmd = [sys.executable, __file__, "--_probe", "--lr-size", args.lr_size, "--tile", str(args.tile),
               "--tile-batch", str(args.tile_batch)] + (["--ckpt", args.ckpt] if args.ckpt else [])
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    else:
        result = throughput(args)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
