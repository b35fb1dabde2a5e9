"""DRRN checkpoints (ours, plain state_dicts, and the public port's pickled modules).

The port's net works on [0, 1] Y like ours, so no conversion is needed; the number of recursions
is not stored in the weights (the port hard-codes B1U25): pass ``n_units`` when it differs.
Files from outside sr_adapt come from the port: B1U25, x2/x3/x4 and its ReLU(entry) residual.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sr_adapt.checkpoints.archs.base import ArchAdapter, LoadedModel, RawCheckpoint
from sr_adapt.checkpoints.keys import load_strict, preview, shape_of
from sr_adapt.errors import CheckpointError
from sr_adapt.models.drrn import DRRN, DRRN_SCALES

__all__ = ["DRRNAdapter", "infer_drrn_config", "drrn_name"]

_DRRN_MARKERS = ("input.weight", "conv1.weight", "conv2.weight", "output.weight")
_DRRN_EXTRA_RE = re.compile(r"^extra_blocks\.(\d+)\.(input|conv1|conv2)\.weight$")


def _looks_like_drrn(keys: Iterable[str]) -> bool:
    keys = set(keys)
    return all(k in keys for k in _DRRN_MARKERS) and all(k in _DRRN_MARKERS or _DRRN_EXTRA_RE.match(k) for k in keys)


def infer_drrn_config(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """``{"n_blocks", "n_feats"}`` of a DRRN state_dict (the recursion count is not in the weights)."""
    if not _looks_like_drrn(state_dict):
        raise CheckpointError(f"not a DRRN state_dict: keys {preview(list(state_dict))}")
    w_in, w_out = state_dict["input.weight"], state_dict["output.weight"]
    if getattr(w_in, "ndim", 0) != 4 or tuple(w_in.shape[1:]) != (1, 3, 3):
        raise CheckpointError(
            f"not a luma DRRN: input.weight has shape {shape_of(w_in)}, expected (C, 1, 3, 3) "
            "(DRRN works on the Y channel only)"
        )
    if getattr(w_out, "ndim", 0) != 4 or int(w_out.shape[0]) != 1:
        raise CheckpointError(f"not a luma DRRN: output.weight has shape {shape_of(w_out)}, expected (1, C, 3, 3)")
    extra = {int(m.group(1)) for k in state_dict if (m := _DRRN_EXTRA_RE.match(k))}
    return {"n_blocks": 1 + len(extra), "n_feats": int(w_in.shape[0])}


def drrn_name(cfg: Mapping[str, Any]) -> str:
    """"DRRN B1U25 (128 channels)"."""
    port = ", port residual" if cfg.get("relu_residual") else ""
    return f"DRRN B{cfg.get('n_blocks')}U{cfg.get('n_units')} ({cfg.get('n_feats')} channels{port})"


class DRRNAdapter(ArchAdapter):
    """Luma-only DRRN nets (no dual models)."""

    name = "drrn"

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        return _looks_like_drrn(state_dict)

    def infer_config(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        return infer_drrn_config(state_dict)

    def describe(self, config: Mapping[str, Any]) -> str:
        return drrn_name(config)

    def build(self, raw: RawCheckpoint, expect: Mapping[str, Any] | None) -> LoadedModel:
        """Depth/width from the weights, recursions/scales from our metadata or ``expect``."""
        path, sd, source, meta = raw.path, raw.primal, raw.source, dict(raw.meta)
        if raw.duals is not None:
            raise CheckpointError(f"{path}: DRRN checkpoint with dual models; DRRN has no dual models")
        try:
            found = infer_drrn_config(sd)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        stored = dict(meta.get("hparams") or {})
        expect = dict(expect or {})
        arch = expect.get("arch")
        if arch is not None and str(arch).lower() != "drrn":
            raise CheckpointError(
                f"{path}: checkpoint holds a DRRN (a luma-only model, {found['n_feats']} channels), but "
                f"arch={arch!r} was requested; use model=drrn (or model=auto) to load it"
            )
        # Files from outside sr_adapt come from the port: B1U25, x2/x3/x4, its ReLU(entry) residual.
        port = {"n_units": 25, "scales": list(DRRN_SCALES), "relu_residual": source != "sr_adapt"}
        hparams: dict[str, Any] = {**port, **stored, **found}
        for k in ("n_units", "scales"):  # not in the weights: the request decides when the file is silent
            if expect.get(k) is not None and (k not in stored or source != "sr_adapt"):
                hparams[k] = list(expect[k]) if k == "scales" else int(expect[k])
        diffs = {k: (expect[k], v) for k, v in found.items() if expect.get(k) is not None and int(expect[k]) != v}
        if expect.get("n_units") is not None and int(expect["n_units"]) != int(hparams["n_units"]):
            diffs["n_units"] = (expect["n_units"], hparams["n_units"])
        if diffs:
            detail = ", ".join(f"{k}: requested {a}, file {b}" for k, (a, b) in diffs.items())
            raise CheckpointError(
                f"{path}: checkpoint holds {drrn_name(hparams)}, which differs from the requested model ({detail}); "
                f"set model.net.{next(iter(diffs))} accordingly or use model=auto"
            )
        scales = [int(v) for v in hparams["scales"]]
        scale = int(expect.get("scale") or stored.get("scale") or scales[0])
        if scale not in scales:
            raise CheckpointError(
                f"{path}: {drrn_name(hparams)} was trained for scales {scales}, not x{scale}; choose scale from {scales}"
            )
        hparams.update(scale=scale, scales=scales)
        net = DRRN(**hparams)
        load_strict(net, sd, path, f"weights ({drrn_name(hparams)})")
        name = drrn_name(hparams)
        meta.update(config=dict(found, n_units=hparams["n_units"]), variant=name, hparams=net.hparams(), arch="drrn")
        return LoadedModel(net=net, duals=None, source="drrn_port" if meta.get("pickled_module") else source,
                           path=path, meta=meta)


