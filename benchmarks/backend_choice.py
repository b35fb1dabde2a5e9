"""backend=auto on a CPU against both fp32 engines, whole process, by input size.

    python benchmarks/backend_choice.py --ckpt sr_adapt/assets/weights/drn_x4_source.pt \
        --image ../shared/data/benchmarks/Set14/comic.png --sizes 120x90,480x270,960x540 --reps 2 --json choice.json

For each input (the given image, then crops of it / of its tiling to each size), ``scripts/upscale.py`` runs in a
fresh process with ``backend=torch``, ``onnxruntime`` and ``auto`` (untiled, ``tile=0``, fp32), alternating
within each repetition; the graph and the engines' timing (``auto``'s one-off measurement) are made in a first,
untimed call. Reports the fastest of the repetitions per row, what ``auto`` chose and its time against the
faster fixed engine (the goal: within 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_input(src: Path, size: str, out: Path) -> Path:
    import torch

    sys.path.insert(0, str(REPO))
    from sr_adapt.io.images import load_image, save_image

    w, h = (int(v) for v in size.split("x"))
    img = load_image(src)
    reps = (-(-h // img.shape[1]), -(-w // img.shape[2]))
    tiled = torch.cat([torch.cat([img] * reps[1], dim=2)] * reps[0], dim=1)  # mirror-free tiling to cover
    save_image(tiled[:, :h, :w], out)
    return out


def upscale(ckpt: str, image: Path, backend: str, cache: Path, out: Path) -> tuple[float, str]:
    env = {**os.environ, "SR_ADAPT_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "upscale.py"), f"ckpt_path={ckpt}", f"input={image}",
                           f"output={out}", "tile=0", f"backend={backend}", f"hydra.run.dir={out.parent / 'hydra'}"],
                          capture_output=True, text=True, env=env, cwd=REPO)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-2000:])
    chosen = next((line.split(" on cpu: backend ", 1)[1].split(",")[0] for line in (proc.stdout + proc.stderr).splitlines()
                   if " on cpu: backend " in line), "?")
    return seconds, chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--image", required=True, type=Path)
    ap.add_argument("--sizes", default="480x270,960x540")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    from sr_adapt.ops.cpu import cpu_identity

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"
        inputs = [("given", args.image)] + [(s, make_input(args.image, s, tmp / f"in_{s}.png"))
                                            for s in args.sizes.split(",") if s]
        for name, image in inputs:
            upscale(args.ckpt, image, "auto", cache, tmp / "warm.png")  # graph export + auto's measurement, untimed
            upscale(args.ckpt, image, "onnxruntime", cache, tmp / "warm.png")
            times: dict[str, list[float]] = {"torch": [], "onnxruntime": [], "auto": []}
            chosen = "?"
            for _ in range(args.reps):
                for backend in times:
                    seconds, used = upscale(args.ckpt, image, backend, cache, tmp / "out.png")
                    times[backend].append(seconds)
                    chosen = used if backend == "auto" else chosen
            best = {k: min(v) for k, v in times.items()}
            fastest = min(best["torch"], best["onnxruntime"])
            row = {"input": name, "torch_s": round(best["torch"], 2), "onnxruntime_s": round(best["onnxruntime"], 2),
                   "auto_s": round(best["auto"], 2), "auto_chose": chosen,
                   "auto_vs_fastest": round(best["auto"] / fastest, 3)}
            rows.append(row)
            print(row, flush=True)
    report = {"cpu": cpu_identity(), "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
