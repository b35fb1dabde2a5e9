"""ONNX graphs of our models (dynamic height/width) and running them with onnxruntime.

Graphs (NCHW float32, batch, height and width dynamic):

* RGB models (DRN, Bicubic-free nets): input ``lr`` (N, 3, h, w) RGB in [0, 1] -> output ``sr``
  (N, 3, h*s, w*s) RGB clamped to [0, 1] (``super_resolve`` followed by a clamp).
* Luma-only models (DRRN): input ``y`` (N, 1, H, W), the Y (studio swing, in [0, 1]) of the
  MATLAB-bicubic upsampled image quantized to 8 bit -> output ``y_sr`` (N, 1, H, W) Y clamped to
  [0, 1]. The bicubic upsampling and the colour conversion stay outside the graph (one graph
  serves every scale, as the network itself does).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sr_adapt.errors import SRAdaptError
from sr_adapt.io.atomic import atomic_path
from sr_adapt.models.base import SRModel



class _RGBGraph(nn.Module):
    def __init__(self, net: SRModel) -> None:
        super().__init__()
        self.net = net

    def forward(self, lr: Tensor) -> Tensor:
        return self.net.super_resolve(lr).clamp(0.0, 1.0)


class _LumaGraph(nn.Module):
    def __init__(self, net: SRModel) -> None:
        super().__init__()
        self.net = net

    def forward(self, y: Tensor) -> Tensor:
        return self.net(y).clamp(0.0, 1.0)


def graph_module(net: SRModel) -> tuple[nn.Module, str, str, int]:
    """(module to export, input name, output name, input channels) for ``net``."""
    if net.y_only:
        return _LumaGraph(net).eval(), "y", "y_sr", 1
    return _RGBGraph(net).eval(), "lr", "sr", 3


def export_onnx(net: SRModel, path: str | os.PathLike, opset: int = 17, sample_hw: tuple[int, int] = (32, 40)) -> Path:
    """Writes ``net`` (eval mode, CPU, fp32) as an ONNX graph with dynamic N/H/W, atomically."""
    module, in_name, out_name, channels = graph_module(net.float().cpu().eval())
    dummy = torch.rand(1, channels, *sample_hw)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notices
        torch.onnx.export(
            module, (dummy,), buf, input_names=[in_name], output_names=[out_name], opset_version=opset,
            dynamic_axes={in_name: {0: "batch", 2: "height", 3: "width"}, out_name: {0: "batch", 2: "out_height", 3: "out_width"}},
            dynamo=False,
        )
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def ort_session(path: str | os.PathLike | bytes, threads: int | None = None) -> Any:
    """A CPU onnxruntime session (``threads`` intra-op threads; default: onnxruntime's)."""
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError:
        raise SRAdaptError("onnxruntime is not installed: pip install -e '.[export]'") from None
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path) if not isinstance(path, bytes) else path, opts, providers=["CPUExecutionProvider"])


def run_onnx(session: Any, x: Tensor) -> Tensor:
    """Runs the graph's single input on ``x`` (float32 NCHW) and returns its output as a tensor."""
    name = session.get_inputs()[0].name
    inp_type = session.get_inputs()[0].type
    arr = x.detach().cpu().numpy().astype(np.float16 if "float16" in inp_type else np.float32)
    return torch.from_numpy(session.run(None, {name: arr})[0].astype(np.float32))


@torch.no_grad()
def verify_onnx(net: SRModel, path: str | os.PathLike, sizes: tuple[tuple[int, int], ...] = ((24, 32), (37, 19)), seed: int = 0) -> float:
    """Max |onnxruntime - PyTorch| over random inputs of several sizes (batch 2); the graph's range."""
    module, _, _, channels = graph_module(net.float().cpu().eval())
    session = ort_session(path)
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    for h, w in sizes:
        x = torch.rand(2, channels, h, w, generator=g)
        worst = max(worst, float((run_onnx(session, x) - module(x)).abs().max()))
    return worst
