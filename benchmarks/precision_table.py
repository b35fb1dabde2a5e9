"""Deployment precision table: Set5 PSNR and CPU latency of fp32 / fp16 / int8 ONNX graphs.

    python benchmarks/precision_table.py --ckpt run/checkpoints/last.ckpt --scale 4 \
        --set5 ../shared/data/benchmarks/Set5 --calib ../shared/data/train/T91 --json drn.json

Rows, all on the same weights and the evaluate protocol (``sr_adapt.evaluation.protocol.evaluate_folder``:
MATLAB-bicubic LR, 8-bit output, Y-PSNR with shave = scale; luma models scored on their Y):

* ``torch fp32``: the PyTorch model (reference);
* ``onnx fp32``: the graph of ``scripts/export.py`` in onnxruntime;
* ``onnx fp16``: the same graph with fp16 weights and activations
  (``onnxruntime.transformers.float16``, inputs/outputs kept fp32);
* ``onnx int8 static``: onnxruntime static quantization, QDQ format, int8 per-channel weights,
  uint8 activations calibrated (MinMax) on LR crops of the ``--calib`` images (never Set5);
* ``onnx int8 static ends-fp32``: the same, with the first 2 and the last 3 nodes of the graph kept
  in float (input layers, output conv, residual add / mean shift, clamp): the usual SR practice;
* ``onnx int8 dynamic``: ``quantize_dynamic`` (int8 weights, activations quantized at run time).

Latency: median over ``--runs`` runs (after 2 warm-ups) of one ``--latency-size`` input
(RGB models: the LR image; luma models: the upsampled Y), onnxruntime CPU provider with
``--threads`` intra-op threads; torch with the same number of threads.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from sr_adapt.io.images import list_images, load_image
from sr_adapt.evaluation.protocol import evaluate_folder
from sr_adapt.inference.onnx import OnnxRuntimeModel, calibration_inputs, export_onnx, ort_session, run_onnx
from sr_adapt.checkpoints import load_checkpoint
from sr_adapt.models.base import SRModel
from sr_adapt.ops.color import quantize


def graph_input(net: SRModel, lr: torch.Tensor) -> torch.Tensor:
    """What the exported graph takes for an LR image: LR RGB, or the upsampled 8-bit Y."""
    return quantize(net.upsample_input(lr)[:, :1]) if net.y_only else lr


def calibration_feeds(net: SRModel, folder: Path, n: int, crop: int) -> list[np.ndarray]:
    """The graph inputs of :func:`sr_adapt.inference.onnx.calibration_inputs` on ``folder``'s images."""
    images = [load_image(p) for p in list_images(folder, "--calib")[:n]]
    return [next(iter(feed.values())) for feed in calibration_inputs(net, images, crop)]


def quantize_graphs(fp32: Path, work: Path, calib: list[np.ndarray], input_name: str) -> dict[str, Path]:
    from onnxruntime.quantization import (
        CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = work / "pre.onnx"
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self):
            arr = next(self.it, None)
            return None if arr is None else {input_name: arr}

    import onnx

    nodes = [n.name for n in onnx.load(str(pre)).graph.node]
    out = {"onnx int8 static": work / "int8_static.onnx", "onnx int8 static ends-fp32": work / "int8_static_ends.onnx",
           "onnx int8 dynamic": work / "int8_dynamic.onnx"}
    for key, exclude in (("onnx int8 static", []), ("onnx int8 static ends-fp32", nodes[:2] + nodes[-3:])):
        quantize_static(str(pre), str(out[key]), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=exclude)
    quantize_dynamic(str(pre), str(out["onnx int8 dynamic"]), weight_type=QuantType.QInt8)
    return out


def fp16_graph(fp32: Path, work: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True)
    path = work / "fp16.onnx"
    onnx.save(model, str(path))
    return path


def latency(fn, x: torch.Tensor, runs: int) -> float:
    for _ in range(2):
        fn(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--set5", default="../shared/data/benchmarks/Set5")
    ap.add_argument("--calib", default="../shared/data/train/T91")
    ap.add_argument("--calib-images", type=int, default=16)
    ap.add_argument("--calib-crop", type=int, default=48, help="LR crop size of the calibration inputs")
    ap.add_argument("--latency-size", default="128x128", help="LR input WxH for the latency runs")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", default="torch fp32,onnx fp32,onnx fp16,onnx int8 static,onnx int8 static ends-fp32,onnx int8 dynamic")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    loaded = load_checkpoint(args.ckpt, expect={"scale": args.scale})
    net = loaded.net.eval()
    net.set_scale(args.scale)
    set5 = Path(args.set5)
    w, h = map(int, args.latency_size.split("x"))
    lat_x = graph_input(net, torch.rand(1, 3, h, w))
    rows = args.rows.split(",")
    result: dict = {"ckpt": args.ckpt, "arch": net.arch, "params": net.num_parameters(), "scale": args.scale,
                    "latency_input": list(lat_x.shape), "threads": args.threads, "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fp32 = export_onnx(net, work / "fp32.onnx")
        graphs: dict[str, Path] = {"onnx fp32": fp32}
        if "onnx fp16" in rows:
            graphs["onnx fp16"] = fp16_graph(fp32, work)
        if any("int8" in r for r in rows):
            calib = calibration_feeds(net, Path(args.calib), args.calib_images, args.calib_crop)
            graphs.update(quantize_graphs(fp32, work, calib, "y" if net.y_only else "lr"))
        for name in rows:
            start = time.perf_counter()
            if name == "torch fp32":
                model: SRModel = net
                with torch.no_grad():
                    fn = (lambda x: net(x)) if net.y_only else net.super_resolve
                    lat = latency(lambda x: fn(x), lat_x, args.runs)
            else:
                try:
                    session = ort_session(graphs[name], threads=args.threads)
                except Exception as e:  # noqa: BLE001 - e.g. a missing CPU kernel: record it
                    result["rows"][name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
                    continue
                model = OnnxRuntimeModel(session, net)
                lat = latency(lambda x: run_onnx(session, x), lat_x, args.runs)
            with torch.no_grad():
                r = evaluate_folder(model, set5, args.scale, torch.device("cpu"))
            size = os.path.getsize(graphs[name]) if name in graphs else None
            result["rows"][name] = {"psnr": round(r["psnr"], 3), "ssim": round(r["ssim"], 4), "latency_ms": round(lat, 1),
                                    "file_mib": round(size / 2**20, 2) if size else None,
                                    "seconds": round(time.perf_counter() - start, 1)}
            print(name, result["rows"][name], flush=True)
    result["load_avg"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
