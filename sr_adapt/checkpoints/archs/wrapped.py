"""Community SR weights through spandrel (RCAN, SwinIR, HAT, DAT, SPAN, RRDBNet, SRVGGNet, ...).

spandrel recognises the architecture and its hyper-parameters from a state_dict's keys and shapes and
builds the module; we wrap it in :class:`~sr_adapt.models.wrapped.WrappedSR`. Files are read by our
safe readers (``torch.load(weights_only=True)``, safetensors), never by unpickling code. Our own
checkpoints of a wrapped network store its state_dict under ``model.*`` and arch ``wrapped``.

spandrel imports every architecture it knows, two of them through torchvision, so torchvision must
import (README: installing). Only single-image SR models with RGB input and output are accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from sr_adapt.checkpoints.archs.base import ArchAdapter, LoadedModel, RawCheckpoint
from sr_adapt.checkpoints.keys import preview
from sr_adapt.errors import CheckpointError, UnknownArchitectureError
from sr_adapt.models.wrapped import WrappedSR

__all__ = ["WrappedAdapter", "build_community", "spandrel_registry", "wrap_state_dict"]

_INSTALL = ("pip install 'spandrel>=0.4,<0.5' with a torchvision that imports beside your torch "
            "(README: Installing)")


def spandrel_registry() -> Any:
    """spandrel's architecture registry; UnknownArchitectureError saying how to install it when it does not import
    (the weights cannot be recognised then)."""
    try:
        import spandrel  # noqa: PLC0415  (imports ~40 architectures: only when a file needs it)
    except ImportError as e:
        raise UnknownArchitectureError(f"reading community weights needs spandrel, which does not import here ({e}): "
                              f"{_INSTALL}") from None
    except RuntimeError as e:  # torchvision built for another torch: "operator torchvision::nms does not exist"
        raise UnknownArchitectureError(f"spandrel does not import: its torchvision does not match this torch ({e}): {_INSTALL}") from None
    return spandrel


def wrap_state_dict(state_dict: Mapping[str, Tensor], where: str, input_filter: Tensor | None = None) -> WrappedSR:
    """The SR network of a community state_dict (any wrapping spandrel canonicalises: ``params_ema``,
    ``params``, ``state_dict``, ``module.``), wrapped; CheckpointError naming what was found otherwise."""
    spandrel = spandrel_registry()
    state_dict = spandrel.canonicalize_state_dict(dict(state_dict))  # unwraps params_ema, params, module. ...
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError:
        raise UnknownArchitectureError(f"{where}: not an architecture sr_adapt or spandrel knows (keys "
                              f"{preview([str(k) for k in state_dict])})") from None
    except (KeyError, ValueError, RuntimeError, AssertionError, IndexError) as e:
        raise CheckpointError(f"{where}: spandrel recognised the keys but could not build the model: "
                              f"{type(e).__name__}: {e}") from None
    name = descriptor.architecture.name
    purpose = getattr(descriptor, "purpose", "?")
    if purpose != "SR" or not isinstance(descriptor, spandrel.ImageModelDescriptor):
        what = {"FaceSR": "face restoration", "Restoration": f"restoration at x{descriptor.scale}",
                "Inpainting": "inpainting"}.get(purpose, purpose)
        raise CheckpointError(f"{where}: holds a {name} model for {what}, not single-image super-resolution")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise CheckpointError(f"{where}: holds a {name} model with {descriptor.input_channels} input and "
                              f"{descriptor.output_channels} output channels; sr_adapt adapts RGB models")
    req = descriptor.size_requirements
    net = WrappedSR(descriptor.model, descriptor.scale, name, multiple_of=req.multiple_of, minimum=req.minimum)
    if input_filter is not None:
        net.set_input_filter(input_filter)
    return net.float()


def build_community(architecture: str, scale: int, **kwargs: Any) -> WrappedSR:
    """A freshly initialised community architecture (spandrel's module ``architecture``, e.g. ``SPAN``,
    built with its own constructor ``kwargs``), wrapped: training one from scratch
    (``experiment=span_source_x4``). Built through its state_dict, so that its files load back."""
    spandrel = spandrel_registry()
    import importlib  # noqa: PLC0415

    try:
        cls = getattr(importlib.import_module(f"spandrel.architectures.{architecture}"), architecture)
    except (ImportError, AttributeError):
        known = sorted(a.architecture.id for a in spandrel.MAIN_REGISTRY.architectures())
        raise CheckpointError(f"model.net.architecture={architecture}: not one of spandrel's: {', '.join(known)}") from None
    try:
        model = cls(**kwargs)
    except TypeError as e:
        raise CheckpointError(f"model.net.kwargs: {architecture} does not take these keywords: {e}") from None
    net = wrap_state_dict(model.state_dict(), f"model.net.architecture={architecture}")
    if net.scale != int(scale):
        raise CheckpointError(f"model.net.kwargs build a x{net.scale} {architecture}, but scale={scale}: set its scale "
                              "keyword (upscale / scale) to ${scale}")
    return net


def _check_expect(net: WrappedSR, expect: Mapping[str, Any] | None, path: Path) -> None:
    expect = dict(expect or {})
    arch = expect.get("arch")
    if arch is not None and str(arch).lower() != WrappedSR.arch:
        raise CheckpointError(f"{path}: holds a {net.architecture} x{net.scale} (community weights), not a {arch}: "
                              "use model=adapt (the network of the file) instead of a DRN/DRRN model config")
    if expect.get("architecture") not in (None, net.architecture):
        raise CheckpointError(f"{path}: holds a {net.architecture}, not the {expect['architecture']} requested")
    if expect.get("scale") is not None and int(expect["scale"]) != net.scale:
        raise CheckpointError(f"{path}: holds a x{net.scale} {net.architecture} (one scale per file), not x"
                              f"{expect['scale']}: set scale={net.scale}")


class WrappedAdapter(ArchAdapter):
    """Our checkpoints of wrapped networks, and community files (tried after DRN and DRRN)."""

    name = WrappedSR.arch

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        return False  # community files are tried last, by load_checkpoint (building one is the detection)

    def infer_config(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        raise CheckpointError("community weights are read by spandrel")

    def describe(self, config: Mapping[str, Any]) -> str:
        return f"{config.get('architecture', '?')} x{config.get('scale', '?')}"

    def build(self, raw: RawCheckpoint, expect: Mapping[str, Any] | None) -> LoadedModel:
        sd = dict(raw.primal)
        filt = sd.pop("input_filter.weight", None)
        if raw.source == "sr_adapt":
            sd = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
        net = wrap_state_dict(sd, str(raw.path), filt)
        stored = raw.meta.get("hparams") or {}
        if stored.get("architecture") not in (None, net.architecture):
            raise CheckpointError(f"{raw.path}: records a {stored['architecture']} but its weights are a {net.architecture}")
        _check_expect(net, expect, raw.path)
        config = net.hparams()
        return LoadedModel(net=net, duals=None, source=raw.source if raw.source == "sr_adapt" else "spandrel",
                           path=raw.path, meta={**raw.meta, "config": config, "hparams": config,
                                                "variant": self.describe(config)})
