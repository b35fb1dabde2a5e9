"""ONNX graphs of our models (dynamic height/width) and running them with onnxruntime.

Graphs (NCHW float32, batch, height and width dynamic):

* RGB models (DRN, Bicubic-free nets): input ``lr`` (N, 3, h, w) RGB in [0, 1] -> output ``sr``
  (N, 3, h*s, w*s) RGB clamped to [0, 1] (``super_resolve`` followed by a clamp).
* Luma-only models (DRRN): input ``y`` (N, 1, H, W), the Y (studio swing, in [0, 1]) of the
  MATLAB-bicubic upsampled image quantized to 8 bit -> output ``y_sr`` (N, 1, H, W) Y clamped to
  [0, 1]. The bicubic upsampling and the colour conversion stay outside the graph (one graph
  serves every scale, as the network itself does).
* ``pooled=True`` (models with global means, the inference backend's graph): the RGB graph with
  the global means as inputs and outputs, :class:`~sr_adapt.inference.global_stats.PooledForward`:
  inputs ``lr``, ``core``, ``blend``, ``mean_<i>``; outputs ``sr``, ``sum_<i>``, ``area_<i>``, so
  tiles share whole-image statistics exactly as in PyTorch.

The inference backend (:func:`onnx_model`): the graph of given weights is exported once into a
cache folder under the weights' content hash (and, for ``int8``, statically quantized: QDQ,
per-channel int8 convolutions, activations calibrated on LR crops of given images, the first two and
last two convolutions kept in float, as the precision table in BENCHMARKS.md recommends), then
wrapped as an :class:`OnnxRuntimeModel` that evaluation, tiling, self-ensemble and video use like
the PyTorch model.
"""

from __future__ import annotations

import importlib.util
import hashlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sr_adapt.errors import ConfigError, SRAdaptError
from sr_adapt.inference.global_stats import PooledForward
from sr_adapt.io.atomic import atomic_path, atomic_write_json
from sr_adapt.models.base import SRModel
from sr_adapt.ops.color import quantize, ycbcr_to_rgb
from sr_adapt.ops.resize import imresize

log = logging.getLogger("sr_adapt.inference")

#: Bumped whenever the graphs this module writes change, so cached graphs are rebuilt.
GRAPH_VERSION = 4


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


class _PooledGraph(nn.Module):
    def __init__(self, net: SRModel) -> None:
        super().__init__()
        self.pooled = PooledForward(net)

    def forward(self, lr: Tensor, core: Tensor, blend: Tensor, *given: Tensor) -> tuple[Tensor, ...]:
        sr, *rest = self.pooled(lr, core, blend, *given)
        return (sr.clamp(0.0, 1.0), *rest)


def graph_module(net: SRModel) -> tuple[nn.Module, str, str, int]:
    """(module to export, input name, output name, input channels) for ``net``."""
    if net.y_only:
        return _LumaGraph(net).eval(), "y", "y_sr", 1
    return _RGBGraph(net).eval(), "lr", "sr", 3


def export_onnx(
    net: SRModel, path: str | os.PathLike, opset: int = 17, sample_hw: tuple[int, int] = (32, 40), pooled: bool = False,
) -> Path:
    """Writes ``net`` (eval mode, CPU, fp32) as an ONNX graph with dynamic N/H/W, atomically.

    ``pooled``: the graph with the global means as inputs/outputs (module docstring); the same as
    the plain graph for models without global means."""
    net = net.float().cpu().eval()
    module, in_name, out_name, channels = graph_module(net)
    dummy: tuple[Tensor, ...] = (torch.rand(1, channels, *sample_hw),)
    names_in, names_out = [in_name], [out_name]
    dyn = {in_name: {0: "batch", 2: "height", 3: "width"}, out_name: {0: "batch", 2: "out_height", 3: "out_width"}}
    chans = PooledForward(net).channels if pooled and not net.y_only else []
    if chans:
        module = _PooledGraph(net).eval()
        means = [f"mean_{i}" for i in range(len(chans))]
        names_in += ["core", "blend", *means]
        names_out += [f"sum_{i}" for i in range(len(chans))] + [f"area_{i}" for i in range(len(chans))]
        dummy = (dummy[0], torch.ones(1, 1, *sample_hw), torch.zeros(1, 1, 1, 1), *[torch.rand(1, c) for c in chans])
        dyn.update({"core": {0: "batch", 2: "height", 3: "width"}, "blend": {0: "batch"}})
        dyn.update({n: {0: "batch"} for n in names_in[3:] + names_out[1:]})
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notices
        torch.onnx.export(
            module, dummy, buf, input_names=names_in, output_names=names_out, opset_version=opset,
            dynamic_axes=dyn, dynamo=False,
        )
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def onnxruntime_available() -> bool:
    """Whether onnxruntime is installed (found, not imported: a job that runs PyTorch does not pay its import)."""
    return importlib.util.find_spec("onnxruntime") is not None


def ort_providers(device: torch.device | str = "cpu") -> list[str]:
    """Execution providers for ``device``: CUDA (TensorRT first when installed) on a GPU, else CPU."""
    import onnxruntime as ort  # noqa: PLC0415

    if torch.device(device).type != "cuda":
        return ["CPUExecutionProvider"]
    have = set(ort.get_available_providers())
    gpu = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if p in have]
    if not gpu:
        raise ConfigError("backend=onnxruntime on device=cuda needs onnxruntime-gpu (pip install onnxruntime-gpu); "
                          "or use backend=torch")
    return [*gpu, "CPUExecutionProvider"]


def ort_session(path: str | os.PathLike | bytes, threads: int | None = None, device: torch.device | str = "cpu") -> Any:
    """An onnxruntime session on ``device`` (``threads`` intra-op threads; default: onnxruntime's)."""
    try:
        import onnxruntime as ort  # noqa: PLC0415
    except ImportError:
        raise SRAdaptError("onnxruntime is not installed (a dependency of sr_adapt): pip install onnxruntime, or use backend=torch") from None
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = int(threads)
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path) if not isinstance(path, bytes) else path, opts, providers=ort_providers(device))


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


# --- the onnxruntime inference backend --------------------------------------------------------
class OnnxRuntimeModel(SRModel):
    """An onnxruntime graph of ``ref``'s weights behind the :class:`SRModel` interface.

    RGB models: ``super_resolve`` runs the (pooled) graph, clamped to [0, 1] like the exported
    graph; :class:`~sr_adapt.inference.tiling.TiledUpscaler` feeds and reads the global means
    through :meth:`run_pooled`. Luma models: the bicubic upsampling and colour conversion run in
    PyTorch around the graph exactly as in ``DRRN.super_resolve[_y]``. Inputs may be on any
    device; outputs are float32 on the CPU.
    """

    def __init__(self, session: Any, ref: SRModel) -> None:
        super().__init__()
        self.session, self.ref = session, ref.cpu().eval()
        self.scale, self.y_only, self.arch = ref.scale, ref.y_only, ref.arch
        means = sorted((i for i in session.get_inputs() if i.name.startswith("mean_")), key=lambda i: int(i.name[5:]))
        self.pool_channels = [int(i.shape[1]) for i in means]  # the pooled graph's own inputs (N, C_i)
        self.n_pools = len(self.pool_channels)
        self._in_dtype = np.float16 if "float16" in session.get_inputs()[0].type else np.float32

    def hparams(self) -> dict:
        return self.ref.hparams()

    def num_parameters(self) -> int:
        return self.ref.num_parameters()

    def supported_scales(self) -> tuple[int, ...]:
        return self.ref.supported_scales() if self.y_only else (self.scale,)

    def set_scale(self, scale: int) -> None:
        super().set_scale(scale)
        if self.y_only:
            self.ref.set_scale(scale)
        self.scale = int(scale)

    def tile_margin(self) -> int:
        return self.ref.tile_margin()

    def upsample_input(self, x: Tensor) -> Tensor:
        return self.ref.upsample_input(x.cpu().float())

    def _run(self, feeds: dict[str, Tensor]) -> list[Tensor]:
        arrays = {k: v.detach().float().cpu().numpy().astype(self._in_dtype if k in ("lr", "y") else np.float32)
                  for k, v in feeds.items()}
        return [torch.from_numpy(np.asarray(o, dtype=np.float32)) for o in self.session.run(None, arrays)]

    def run_pooled(self, lr: Tensor, core: Tensor, blend: Tensor, given: Sequence[Tensor]) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """(sr, sums, areas) of :class:`~sr_adapt.inference.global_stats.PooledForward` from the graph."""
        feeds = {"lr": lr, "core": core, "blend": blend, **{f"mean_{i}": g for i, g in enumerate(given)}}
        out = self._run(feeds)
        k = self.n_pools
        return out[0], out[1 : 1 + k], out[1 + k :]

    def forward(self, x: Tensor) -> Tensor:
        """Luma models: the graph on a (B, 1, H, W) upsampled Y; RGB models: ``super_resolve``."""
        return self._run({"y": x})[0] if self.y_only else self.super_resolve(x)

    def super_resolve_y(self, x: Tensor) -> Tensor:
        if not self.y_only:
            raise NotImplementedError(f"{self.arch} is not a luma-only model")
        return self(quantize(self.ref.upsample_input(x.cpu().float())[:, :1]))

    def super_resolve(self, x: Tensor) -> Tensor:
        x = x.cpu().float()
        if self.y_only:
            ycbcr = self.ref.upsample_input(x)
            y = self(quantize(ycbcr[:, :1]))
            return ycbcr_to_rgb(torch.cat([y, ycbcr[:, 1:]], dim=1))
        if not self.n_pools:
            return self._run({"lr": x})[0]
        n, _, h, w = x.shape
        zeros = [torch.zeros(n, c) for c in self.pool_channels]
        return self.run_pooled(x, torch.ones(n, 1, h, w), torch.zeros(n, 1, 1, 1), zeros)[0]


def weights_digest(net: SRModel) -> str:
    """Content hash of ``net``'s architecture, hyper-parameters, scale and weights (hex, 16 chars)."""
    h = hashlib.sha256(f"{net.arch}|{sorted(net.hparams().items())}|{net.scale}|graph{GRAPH_VERSION}".encode())
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def calibration_inputs(net: SRModel, images: Sequence[Tensor], crop: int = 48) -> list[dict[str, np.ndarray]]:
    """Graph feeds for int8 calibration: centre LR crops of HR images (3, H, W) in [0, 1], all of one
    size (``crop`` LR px, or the smallest image's; MATLAB-bicubic downscale) -- the LR RGB, or for
    luma models the upsampled 8-bit Y."""
    s = net.scale
    chans = [] if net.y_only else PooledForward(net).channels
    sizes = [min(crop * s, hr.shape[-2] // s * s, hr.shape[-1] // s * s) for hr in images]
    size = min((z for z in sizes if z >= s * 8), default=0)  # one size: the percentile calibration stacks them
    feeds = []
    for hr in images:
        h, w = hr.shape[-2:]
        if min(h, w) < size or not size:
            continue
        top, left = (h - size) // 2, (w - size) // 2
        lr = quantize(imresize(hr[None, :, top : top + size, left : left + size].float(), scale=1 / s))
        if net.y_only:
            feeds.append({"y": quantize(net.upsample_input(lr)[:, :1]).numpy()})
            continue
        feed = {"lr": lr.numpy()}
        if chans:
            feed.update(core=np.ones((1, 1, *lr.shape[-2:]), np.float32), blend=np.zeros((1, 1, 1, 1), np.float32),
                        **{f"mean_{i}": np.zeros((1, c), np.float32) for i, c in enumerate(chans)})
        feeds.append(feed)
    if not feeds:
        raise ConfigError(f"int8 calibration: no image of at least {8 * s}x{8 * s} pixels given")
    return feeds


def quantize_int8(fp32: Path, out: Path, feeds: list[dict[str, np.ndarray]]) -> Path:
    """Static int8 (QDQ) quantization of the convolutions of ``fp32``, written atomically to ``out``.

    Kept in float: the first two and last two ungrouped convolutions (DRN: mean shift and head, tail
    and mean shift back; DRRN: the input and output layers), grouped ones (DRN's bicubic
    pre-upsampling: little compute, and it sets every pixel) and those on per-image vectors (DRN's channel
    attention: no compute to save, and their error scales whole channels). Activation ranges are
    calibrated on ``feeds`` with a percentile (99.999%), not the extremes: measured on Set5 with the
    shipped DRN x4, -0.017 dB vs -0.029 dB for min/max ranges (BENCHMARKS.md).
    """
    import onnx  # noqa: PLC0415
    from onnxruntime.quantization import (  # noqa: PLC0415
        CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: PLC0415

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".quantize.") as work, atomic_path(out) as tmp:
        pre = Path(work) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        graph = onnx.load(str(pre)).graph
        grouped = [n for n in graph.node if n.op_type == "Conv" and _group(n) > 1]  # the bicubic pre-upsampling
        convs = [n for n in graph.node if n.op_type == "Conv" and _group(n) == 1]
        exclude = [n.name for n in grouped + convs[:2] + convs[-2:]] + [n.name for n in convs if _on_vectors(graph, n.input[0])]
        quantize_static(str(pre), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                        nodes_to_exclude=exclude, calibrate_method=CalibrationMethod.Percentile)
    return out


def _group(node: Any) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


def _on_vectors(graph: Any, name: str) -> bool:
    """Whether tensor ``name`` of ``graph`` is (N, C, 1, 1) by shape inference."""
    for info in (*graph.value_info, *graph.input):
        if info.name == name:
            dims = info.type.tensor_type.shape.dim
            return len(dims) == 4 and all(d.HasField("dim_value") and d.dim_value == 1 for d in dims[2:])
    return False


ONNX_PRECISIONS = ("fp32", "int8")


def onnx_model(
    net: SRModel, cache_dir: str | os.PathLike, precision: str = "fp32", device: torch.device | str = "cpu",
    calibration: Sequence[Tensor] | None = None, threads: int | None = None,
) -> OnnxRuntimeModel:
    """``net`` as an :class:`OnnxRuntimeModel`, its graph exported (and quantized) once into
    ``cache_dir/<weights digest>-x<scale>-<precision>.onnx`` and reused by later calls.

    ``calibration``: HR images (3, H, W) in [0, 1] for ``precision=int8`` (LR crops made here)."""
    if precision not in ONNX_PRECISIONS:
        raise ConfigError(f"precision={precision} with backend=onnxruntime: choose {' or '.join(ONNX_PRECISIONS)} "
                          "(bf16/fp16 are PyTorch autocast precisions: backend=torch)")
    if precision == "int8" and torch.device(device).type == "cuda":
        raise ConfigError("precision=int8 is the CPU graph; on a GPU use precision=fp32 (or backend=torch precision=bf16)")
    ref = net.float().cpu().eval()
    cache = Path(cache_dir).expanduser()
    stem = f"{weights_digest(ref)}-x{ref.scale}"
    fp32 = cache / f"{stem}-fp32.onnx"
    if not fp32.is_file():
        log.info("exporting the onnxruntime graph of these weights once: %s", fp32)
        export_onnx(ref, fp32, pooled=True)
        atomic_write_json({"arch": ref.arch, "hparams": ref.hparams(), "graph_version": GRAPH_VERSION}, fp32.with_suffix(".json"))
    path = fp32
    if precision == "int8":
        path = cache / f"{stem}-int8.onnx"
        if not path.is_file():
            if not calibration:
                raise ConfigError("precision=int8 needs calibration images (int8_calibration_dir)")
            log.info("quantizing the graph to int8 once (calibration on %d images): %s", len(calibration), path)
            quantize_int8(fp32, path, calibration_inputs(ref, calibration))
    try:
        session = ort_session(path, threads=threads, device=device)
    except SRAdaptError:
        raise
    except Exception as e:  # noqa: BLE001 - a damaged cache entry: rebuild it once
        log.warning("cached graph %s does not load (%s): rebuilding it", path, type(e).__name__)
        for f in (fp32, path):
            f.unlink(missing_ok=True)
        return onnx_model(net, cache_dir, precision, device, calibration, threads)
    return OnnxRuntimeModel(session, ref)
