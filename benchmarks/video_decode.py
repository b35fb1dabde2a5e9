#!/usr/bin/env python
"""Video decoding throughput of :class:`sr_adapt.data.sources.video.VideoFrameDataset` (decord, CPU).

Measured, on the clips given (default: every ``*.mp4`` in ``../shared/data/video`` beside
the checkout):

1. per clip, raw decord (one reader, ``num_threads=1``):
   - open time (decord indexes every packet when it opens a file);
   - sequential decode, frames/s (``vr.next()`` through the whole clip);
   - random-access single-frame decode, frames/s (``vr[i]`` at random eligible frames
     followed by ``vr.seek(0)``, as the dataset does).
2. the dataset over all clips together (``video_weighting="sqrt"``), LR patches/s through
   a DataLoader (batch ``--batch``) for each LR patch size (``--lr-patches``, scale 4),
   with rejection on (defaults: flat/dark/duplicate) and off, for each ``--workers``
   count. One untimed warm-up batch first (worker start, reader opening). With
   ``num_workers=0`` the dataset's own counters also give decoded frames per patch.

Examples::

    python benchmarks/video_decode.py
    python benchmarks/video_decode.py clips/*.mkv --samples 256 --workers 0 2 4 --json out.json
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import torch  # before decord
from torch.utils.data import DataLoader

from sr_adapt.data.sources.video import VideoFrameDataset
from sr_adapt.io.video import frame_to_array, open_video_reader, probe_video

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLOB = str(Path(os.environ.get("SR_ADAPT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")) / "video" / "*.mp4")
SCALE = 4
NO_REJECTION = {"min_std": 0.0, "min_mean": 0.0, "dup_threshold": 0.0}


def raw_decode(path: Path, n_random: int, end_margin: int, seed: int) -> dict[str, Any]:
    info = probe_video(path)
    t0 = time.perf_counter()
    vr = open_video_reader(path)
    t_open = time.perf_counter() - t0

    t0 = time.perf_counter()
    n_seq = 0
    while True:
        try:
            frame_to_array(vr.next())
        except StopIteration:
            break
        n_seq += 1
    t_seq = time.perf_counter() - t0
    vr.seek(0)

    rng = random.Random(seed)
    last = max(1, info.frames - min(end_margin, info.frames // 2))
    idx = [rng.randrange(last) for _ in range(n_random)]
    t0 = time.perf_counter()
    for i in idx:
        frame_to_array(vr[i])
        vr.seek(0)
    t_rand = time.perf_counter() - t0
    keys = list(vr.get_key_indices())
    del vr
    return {
        "clip": path.name,
        "frames": info.frames,
        "fps": info.fps,
        "size": f"{info.width}x{info.height}",
        "keyframes": len(keys),
        "open_ms": 1e3 * t_open,
        "seq_frames": n_seq,
        "seq_fps": n_seq / t_seq,
        "random_fps": n_random / t_rand,
    }


def dataset_throughput(
    paths: list[Path], lr_patch: int, rejection: bool, workers: int, samples: int, batch: int, seed: int
) -> dict[str, Any]:
    kw = {} if rejection else NO_REJECTION
    ds = VideoFrameDataset(
        [str(p) for p in paths], scale=SCALE, patch_size=lr_patch * SCALE, length=samples + batch, seed=seed, **kw
    )
    loader = DataLoader(ds, batch_size=batch, num_workers=workers, timeout=600 if workers else 0)
    it = iter(loader)
    next(it)  # warm-up: worker start-up, first reader opens
    if workers == 0:
        before = dict(ds.stats | ds.readers.stats)
    t0 = time.perf_counter()
    n = 0
    for b in it:
        n += len(b["name"])
    dt = time.perf_counter() - t0
    row = {
        "lr_patch": lr_patch,
        "rejection": rejection,
        "workers": workers,
        "patches": n,
        "seconds": dt,
        "patches_per_s": n / dt,
        "decodes_per_patch": None,
        "rejected_per_patch": None,
    }
    if workers == 0:
        now = ds.stats | ds.readers.stats
        d = {k: now[k] - before.get(k, 0) for k in now}
        row["decodes_per_patch"] = d["frames_decoded"] / max(d["samples"], 1)
        row["rejected_per_patch"] = (d["flat"] + d["dark"] + d["duplicate"]) / max(d["samples"], 1)
        row["gave_up"] = d["gave_up"]
    del loader, it
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*", help=f"video files or globs (default {DEFAULT_GLOB})")
    ap.add_argument("--samples", type=int, default=96, help="timed patches per dataset configuration")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--lr-patches", type=int, nargs="+", default=[48, 96], help="LR patch sizes (scale 4)")
    ap.add_argument("--random-reads", type=int, default=40, help="random single-frame reads per clip (raw)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write all rows and the setup here")
    args = ap.parse_args(argv)

    patterns = args.paths or [DEFAULT_GLOB]
    paths = sorted({Path(m) for p in patterns for m in (glob.glob(p) if glob.has_magic(p) else [p])})
    if not paths:
        print(f"no videos found for {patterns}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)

    raw = [raw_decode(p, args.random_reads, 8, args.seed) for p in paths]
    print("Raw decord, one reader, num_threads=1")
    print(f"{'clip':<22}{'frames':>7}{'size':>11}{'keyfr':>7}{'open ms':>9}{'seq fr/s':>10}{'rand fr/s':>11}")
    for r in raw:
        print(
            f"{r['clip']:<22}{r['frames']:>7}{r['size']:>11}{r['keyframes']:>7}{r['open_ms']:>9.1f}"
            f"{r['seq_fps']:>10.1f}{r['random_fps']:>11.1f}"
        )

    rows = []
    print(f"\nVideoFrameDataset over {len(paths)} clip(s), scale {SCALE}, batch {args.batch}, {args.samples} patches")
    print(f"{'LR patch':>9}{'rejection':>11}{'workers':>9}{'patches/s':>11}{'decodes/patch':>15}{'rejects/patch':>15}")
    for lr_patch in args.lr_patches:
        for rejection in (True, False):
            for workers in args.workers:
                r = dataset_throughput(paths, lr_patch, rejection, workers, args.samples, args.batch, args.seed)
                rows.append(r)
                dpp = f"{r['decodes_per_patch']:.2f}" if r["decodes_per_patch"] is not None else "-"
                rpp = f"{r['rejected_per_patch']:.2f}" if r["rejected_per_patch"] is not None else "-"
                print(
                    f"{lr_patch:>9}{'on' if rejection else 'off':>11}{workers:>9}{r['patches_per_s']:>11.1f}"
                    f"{dpp:>15}{rpp:>15}",
                    flush=True,
                )

    if args.json:
        setup = {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "decord": __import__("decord").__version__,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"setup": setup, "raw": raw, "dataset": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
