"""Video upscaling: frames/s of the pipelined path (decode | model | encode in threads) vs compute only.

    python benchmarks/video_pipeline.py --clip sr_adapt/assets/sample_data/video/bikes.mp4 --frames 24 \
        --lr-size 160x68 --reps 2 --json video.json

The clip's first ``--frames`` frames, resized to ``--lr-size``, are written to a temporary H.264
clip (the input). For each model (``--models``: the shipped DRN x4 through the fastest backend
here, and bicubic, a model so cheap that decoding and encoding dominate), alternated per
repetition:

* ``compute``: the upscaler on the already-decoded frames, nothing else (the ceiling);
* ``serial``: :func:`sr_adapt.inference.upscale.upscale_video` with ``pipelined=False``
  (decode, model, encode one after the other);
* ``pipelined``: the same with decoding and encoding in their own threads (the default).

Reported: median frames/s per variant and the ratios to ``compute``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def make_clip(src: Path, dst: Path, frames: int, width: int, height: int) -> int:
    import av

    from sr_adapt.io.video import frame_to_array, open_video_reader
    from sr_adapt.ops.color import from_uint8, to_uint8
    from sr_adapt.ops.resize import imresize

    reader = open_video_reader(src)
    n = min(frames, len(reader))
    arr = frame_to_array(reader.get_batch(list(range(n))))
    x = from_uint8(arr).permute(0, 3, 1, 2)
    x = imresize(x, size=(height, width)).clamp(0, 1)
    out = to_uint8(x).permute(0, 2, 3, 1).numpy()
    with av.open(str(dst), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for f in out:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=str(REPO / "sr_adapt/assets/sample_data/video/bikes.mp4"))
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--lr-size", default="160x68")
    ap.add_argument("--models", default=f"{REPO}/sr_adapt/assets/weights/drn_x4_source.pt,bicubic")
    ap.add_argument("--tile", type=int, default=0, help="0: whole frames, batched by --chunk")
    ap.add_argument("--chunk", default="auto", help="frames per forward: auto (upscale's tile_batch=auto) or N")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from sr_adapt.checkpoints import load_checkpoint
    from sr_adapt.config import default_cache_dir
    from sr_adapt.inference.backend import with_backend
    from sr_adapt.inference.upscale import make_upscaler, tile_batch_for, upscale_video
    from sr_adapt.io.video import frame_to_array, open_video_reader
    from sr_adapt.models.bicubic import Bicubic
    from sr_adapt.ops.color import from_uint8, to_uint8

    w, h = map(int, args.lr_size.split("x"))
    cpu = torch.device("cpu")
    args.chunk = tile_batch_for(args.chunk, cpu)
    result: dict = {"frames": args.frames, "lr_size": [w, h], "chunk": args.chunk, "tile": args.tile, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "in.mp4"
        n = make_clip(Path(args.clip), clip, args.frames, w, h)
        frames = from_uint8(frame_to_array(open_video_reader(clip).get_batch(list(range(n))))).permute(0, 3, 1, 2)
        for spec in args.models.split(","):
            net = Bicubic(4) if spec == "bicubic" else load_checkpoint(spec).net.eval()
            model, backend, precision = with_backend(net, "auto", cpu, "fp32", default_cache_dir())
            fn, _ = make_upscaler(model, cpu, tile=args.tile or None, tile_batch=args.chunk, precision=precision)
            fn(frames[:1])  # warm-up

            def compute() -> None:
                for i in range(0, n, args.chunk):
                    to_uint8(fn(frames[i : i + args.chunk])).permute(0, 2, 3, 1).numpy()

            def video(pipelined: bool) -> None:
                upscale_video(fn, clip, Path(tmp) / "out.mp4", 4, Fraction(25), copy_audio=False, chunk=args.chunk,
                              pipelined=pipelined)

            times: dict[str, list[float]] = {"compute": [], "serial": [], "pipelined": []}
            for rep in range(args.reps):
                order = ["compute", "serial", "pipelined"]
                for name in order if rep % 2 == 0 else order[::-1]:
                    t = time.perf_counter()
                    compute() if name == "compute" else video(name == "pipelined")
                    times[name].append(time.perf_counter() - t)
            fps = {k: n / statistics.median(v) for k, v in times.items()}
            row = {"backend": backend, "fps": {k: round(v, 2) for k, v in fps.items()},
                   "serial_vs_compute": round(fps["serial"] / fps["compute"], 3),
                   "pipelined_vs_compute": round(fps["pipelined"] / fps["compute"], 3),
                   "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()}}
            result["models"][Path(spec).stem] = row
            print(Path(spec).stem, row, flush=True)
    result["load_avg"] = os.getloadavg()
    result["threads"] = torch.get_num_threads()
    text = json.dumps(result, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
