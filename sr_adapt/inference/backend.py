"""Which engine runs inference: eager PyTorch or an onnxruntime graph of the same weights.

``backend=auto`` picks PyTorch on a GPU (cuDNN, autocast) and for bf16 / fp16 (on a CPU with AMX, bf16 is
the fastest of all: BENCHMARKS.md), onnxruntime for int8, and for fp32 on a CPU whichever finishes the job
first by measurement (:func:`choose_cpu_backend`): the two engines' speed on this machine, measured once
per CPU and weights and cached, against the job's size -- onnxruntime's graph runs DRN 1.1-1.4x faster on
these CPUs, but starting it costs about a second that a small image does not win back (issue 25: Set14
comic untiled, 6.9 s with onnxruntime against 5.8 s with PyTorch for the whole command). PyTorch models
run channels_last.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sr_adapt.errors import ConfigError
from sr_adapt.inference.onnx import ONNX_PRECISIONS, onnx_model, onnxruntime_available, weights_digest
from sr_adapt.inference.tiling import check_precision
from sr_adapt.io.atomic import atomic_write_json
from sr_adapt.io.images import list_images, load_image
from sr_adapt.models.base import SRModel
from sr_adapt.ops.cpu import cpu_identity

__all__ = ["BACKENDS", "choose_cpu_backend", "measure_cpu_backends", "plan_backend", "resolve_backend", "with_backend"]

log = logging.getLogger("sr_adapt.inference")

BACKENDS = ("auto", "torch", "onnxruntime")
CALIBRATION_IMAGES = 16


def resolve_backend(backend: str, device: torch.device, precision: str = "fp32") -> str:
    """``torch`` or ``onnxruntime`` for ``backend`` (auto | torch | onnxruntime) on ``device``;
    auto: onnxruntime for fp32 / int8 on a CPU, PyTorch on a GPU and for bf16 / fp16 (autocast)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend={backend}: choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        graph = device.type == "cpu" and precision in ONNX_PRECISIONS and onnxruntime_available()
        return "onnxruntime" if graph else "torch"
    if backend == "onnxruntime" and not onnxruntime_available():
        raise ConfigError("backend=onnxruntime: onnxruntime is not installed (pip install onnxruntime); "
                          "or use backend=torch")
    return backend


def plan_backend(backend: str, precision: str, device: torch.device) -> tuple[str, str]:
    """``(backend, tiler precision)`` for the ``backend`` / ``precision`` keys on ``device``,
    checked before any model is loaded."""
    chosen = resolve_backend(backend, device, precision)
    if chosen == "torch":
        if precision == "int8":
            raise ConfigError("precision=int8 needs backend=onnxruntime (the quantized graph); with backend=torch "
                              "use fp32, bf16 or fp16 (CUDA)")
        check_precision(precision, device)
        return chosen, precision
    if precision not in ONNX_PRECISIONS:
        raise ConfigError(f"precision={precision} with backend={backend} (onnxruntime here): choose "
                          f"{' or '.join(ONNX_PRECISIONS)}, or backend=torch for bf16/fp16 autocast")
    if precision == "int8" and device.type == "cuda":
        raise ConfigError("precision=int8 is a CPU graph: on a GPU use precision=fp32, or backend=torch precision=bf16")
    return chosen, "fp32"


PROBE_STEP, PROBE_MAX = 64, 384  # LR px: the engines are timed on a square of the job's call size, rounded up to
# a multiple of PROBE_STEP and at most PROBE_MAX (per-pixel speed depends on it: measured on this CPU, onnxruntime's
# advantage over PyTorch at 2 threads shrinks with the size and reverses for large untiled frames; BENCHMARKS.md)


def probe_side(call_pixels: int) -> int:
    """The side of the timing probe for network calls of ``call_pixels`` input pixels (a tile with its margins,
    or a whole image)."""
    side = math.ceil(math.sqrt(max(call_pixels, 1)) / PROBE_STEP) * PROBE_STEP
    return max(PROBE_STEP, min(PROBE_MAX, side))


def _fastest(fn: Callable[[], Any], runs: int) -> float:
    fn()  # warm-up: first-call allocations, oneDNN primitive creation
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure_cpu_backends(net: SRModel, cache_dir: str | os.PathLike, side: int = 128) -> dict[str, float]:
    """Seconds per LR megapixel of ``net`` with PyTorch (channels_last) and with its onnxruntime graph on this
    CPU (a ``side`` square: three timed runs each below 256 px, one above, after a warm-up), and the seconds
    onnxruntime takes to start (import + session)."""
    probe = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    mpx = side * side / 1e6
    runs = 3 if side < 256 else 1
    model = net.float().cpu().eval().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch_s = _fastest(lambda: model.super_resolve(probe.contiguous(memory_format=torch.channels_last)), runs)
    import_s = 0.0
    if "onnxruntime" not in sys.modules:  # a job's process pays the import: part of the start
        t0 = time.perf_counter()
        importlib.import_module("onnxruntime")
        import_s = time.perf_counter() - t0
    onnx_model(net, cache_dir, "fp32")  # exports the graph once if it is not cached: not a per-job cost
    t0 = time.perf_counter()
    graph = onnx_model(net, cache_dir, "fp32")
    start = import_s + time.perf_counter() - t0
    ort_s = _fastest(lambda: graph.super_resolve(probe), runs)
    return {"torch_s_per_mpx": torch_s / mpx, "onnxruntime_s_per_mpx": ort_s / mpx, "onnxruntime_start_s": start}


def choose_cpu_backend(net: SRModel, cache_dir: str | os.PathLike, lr_pixels: int,
                       call_pixels: int | None = None) -> tuple[str, str]:
    """``(torch | onnxruntime, why)`` for an fp32 job of ``lr_pixels`` input pixels, run through the network in
    calls of ``call_pixels`` (a tile with its margins, or a whole image; default: the whole job) on this CPU: the
    engine whose start plus pixels times its measured speed is lower. The speeds come from
    ``cache_dir/<weights digest>-x<scale>-cpu-backends.json`` (one entry per :func:`cpu_identity`, thread count
    and :func:`probe_side`; measured with :func:`measure_cpu_backends` the first time: 1-25 s by the size)."""
    path = Path(cache_dir).expanduser() / f"{weights_digest(net)}-x{net.scale}-cpu-backends.json"
    side = probe_side(call_pixels or lr_pixels)
    key = f"{cpu_identity()}, {torch.get_num_threads()} threads, {side} px calls"
    table: Any = {}
    if path.is_file():
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):
            table = {}
    table = table if isinstance(table, dict) else {}  # a damaged cache is measured again
    speeds = table.get(key)
    if not isinstance(speeds, dict) or not {"torch_s_per_mpx", "onnxruntime_s_per_mpx", "onnxruntime_start_s"} <= set(speeds):
        log.info("timing PyTorch and onnxruntime once on this CPU for backend=auto (%s)", key)
        try:
            speeds = measure_cpu_backends(net, cache_dir, side)
        except ImportError as e:  # installed but broken: PyTorch, as without it
            return "torch", f"onnxruntime does not load ({e})"
        table[key] = {k: round(v, 4) for k, v in speeds.items()}
        atomic_write_json(table, path)
    mpx = lr_pixels / 1e6
    torch_s = mpx * speeds["torch_s_per_mpx"]
    ort_s = speeds["onnxruntime_start_s"] + mpx * speeds["onnxruntime_s_per_mpx"]
    chosen = "onnxruntime" if ort_s < torch_s else "torch"
    why = (f"{mpx:.3g} LR megapixels: about {torch_s:.1f} s with PyTorch, {ort_s:.1f} s with onnxruntime "
           f"({speeds['onnxruntime_start_s']:.1f} s of it to start), measured on {key}")
    return chosen, why


def with_backend(
    net: SRModel, backend: str, device: torch.device, precision: str = "fp32",
    cache_dir: str | os.PathLike | None = None, calibration_dir: str | os.PathLike | None = None,
    job_size: Callable[[], tuple[int, int] | None] | None = None,
) -> tuple[SRModel, str, str]:
    """``(model, backend, torch_precision)``: ``net`` itself for PyTorch, else its onnxruntime
    model (graph cached in ``cache_dir``; ``precision=int8`` calibrated on ``calibration_dir``).
    ``torch_precision`` is what the tiler's autocast uses (fp32 for graphs). ``job_size``: returns the job's
    (input pixels, pixels of one network call), with which ``backend=auto`` chooses by measurement between the
    two fp32 engines on a CPU (:func:`choose_cpu_backend`); called only then (it may read every input's header),
    and without it or when it returns None, onnxruntime."""
    chosen, tiler_precision = plan_backend(backend, precision, device)
    if chosen == "onnxruntime" and not net.graph_any_size:
        if backend != "auto":
            raise ConfigError(f"backend={backend}: the ONNX graph of this {getattr(net, 'architecture', net.arch)} runs "
                              "only at the size it was traced at (windows, grids or padding); use backend=torch")
        log.info("backend=auto: torch (an ONNX graph of this network runs only at one image size)")
        chosen = "torch"
    size = (job_size() if backend == "auto" and chosen == "onnxruntime" and precision == "fp32" and job_size
            and cache_dir is not None and net.num_parameters() > 0 else None)
    if size:
        chosen, why = choose_cpu_backend(net, cache_dir, *size)
        log.info("backend=auto: %s (%s)", chosen, why)
    if chosen == "torch":  # channels_last: oneDNN / cuDNN convolutions without layout reorders (1.3x on a CPU)
        return net.to(memory_format=torch.channels_last), chosen, tiler_precision
    if net.num_parameters() == 0:  # plain resampling (bicubic): nothing to gain, its graph has fixed sizes
        return net, "torch", "fp32"
    if cache_dir is None:
        raise ConfigError("backend=onnxruntime needs a cache folder for its graphs (paths.cache_dir)")
    calibration = None
    if precision == "int8":
        if not calibration_dir:
            raise ConfigError("precision=int8 needs int8_calibration_dir: a folder of clean HR images")
        files = list_images(Path(calibration_dir), "int8_calibration_dir")[:CALIBRATION_IMAGES]
        calibration = [load_image(f) for f in files]
    model = onnx_model(net, cache_dir, precision, device, calibration)
    return model, chosen, tiler_precision
