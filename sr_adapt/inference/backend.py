"""Which engine runs inference: eager PyTorch or an onnxruntime graph of the same weights.

``backend=auto`` picks onnxruntime on the CPU for fp32 and int8 when it is installed (the same
pixels as PyTorch within 1/255 and 1.4x faster for a whole command on a 2-core CPU, BENCHMARKS.md)
and PyTorch on a GPU (cuDNN, autocast) and for bf16 / fp16 (on a CPU with AMX, bf16 is the fastest
of all: BENCHMARKS.md). PyTorch models run channels_last.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sr_adapt.errors import ConfigError
from sr_adapt.inference.onnx import ONNX_PRECISIONS, onnx_model, onnxruntime_available
from sr_adapt.inference.tiling import check_precision
from sr_adapt.io.images import list_images, load_image
from sr_adapt.models.base import SRModel

__all__ = ["BACKENDS", "plan_backend", "resolve_backend", "with_backend"]

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


def with_backend(
    net: SRModel, backend: str, device: torch.device, precision: str = "fp32",
    cache_dir: str | os.PathLike | None = None, calibration_dir: str | os.PathLike | None = None,
) -> tuple[SRModel, str, str]:
    """``(model, backend, torch_precision)``: ``net`` itself for PyTorch, else its onnxruntime
    model (graph cached in ``cache_dir``; ``precision=int8`` calibrated on ``calibration_dir``).
    ``torch_precision`` is what the tiler's autocast uses (fp32 for graphs)."""
    chosen, tiler_precision = plan_backend(backend, precision, device)
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
