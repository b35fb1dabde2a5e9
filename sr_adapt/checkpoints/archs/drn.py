"""DRN checkpoints (ours, the official release, PaddleGAN): recognised by key names, sized from shapes.

Our DRN takes and returns [0, 1] images and applies the factor 255 as a fixed constant at its
input and output, so its parameters ARE the official ones: official state_dicts load without
rescaling. The dual models are positively homogeneous (bias-free conv, LeakyReLU, bias-free
conv): ``D(255 x) = 255 D(x)``, so their weights are shared unchanged between both value ranges.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sr_adapt.checkpoints.archs.base import ArchAdapter, LoadedModel, RawCheckpoint
from sr_adapt.checkpoints.keys import load_strict, preview, shape_of
from sr_adapt.errors import CheckpointError
from sr_adapt.models.drn import DRN, DRN_VARIANTS, build_dual_models, variant_config

__all__ = ["DRNAdapter", "infer_drn_config", "variant_name"]

_DRN_MARKERS = ("sub_mean.weight", "head.weight", "tail.0.weight", "add_mean.weight")
_DOWN_RE = re.compile(r"^down\.(\d+)\.dual_module\.")
_UP0_RE = re.compile(r"^up_blocks\.0\.(\d+)\.")


def _looks_like_drn(keys: Iterable[str]) -> bool:
    keys = set(keys)
    return all(k in keys for k in _DRN_MARKERS) and any(_DOWN_RE.match(k) for k in keys)


def infer_drn_config(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """``{"scale", "n_blocks", "n_feats"}`` of a DRN primal state_dict, from key names and shapes.

    Works for any channel/block count: ``n_feats`` is the output width of ``head``, the scale is
    2 ** (number of ``down`` stages) and ``n_blocks`` the number of RCABs before the upsampler of
    the first up stage. Raises :class:`CheckpointError` when the dict is not a DRN state_dict.
    """
    keys = list(state_dict)
    if not _looks_like_drn(keys):
        missing = [k for k in _DRN_MARKERS if k not in state_dict]
        if not any(_DOWN_RE.match(k) for k in keys):
            missing.append("down.0.dual_module.*")
        raise CheckpointError(
            f"not a DRN state_dict: missing {', '.join(missing)}; it has {len(keys)} entries, "
            f"starting with {preview(keys)}"
        )
    head = state_dict["head.weight"]
    if getattr(head, "ndim", 0) != 4:
        raise CheckpointError(f"not a DRN state_dict: head.weight has shape {shape_of(head)}, expected 4 dims")
    n_feats, n_colors = int(head.shape[0]), int(head.shape[1])
    if n_colors != 3:
        raise CheckpointError(f"DRN state_dict with n_colors={n_colors}; only RGB (3) is supported")
    phases = 1 + max(int(m.group(1)) for k in keys if (m := _DOWN_RE.match(k)))
    up0 = [int(m.group(1)) for k in keys if (m := _UP0_RE.match(k))]
    if not up0:
        raise CheckpointError("not a DRN state_dict: no up_blocks.0.* entries")
    # up_blocks.0 = [RCAB] * n_blocks + [upsampler, 1x1 conv]: the last index is n_blocks + 1.
    n_blocks = max(up0) - 1
    if n_blocks < 0:
        raise CheckpointError("not a DRN state_dict: up_blocks.0 has fewer than two layers")
    config = {"scale": 2**phases, "n_blocks": n_blocks, "n_feats": n_feats}
    filt = state_dict.get("input_filter.weight")
    if filt is not None:  # an adapted model's input correction (not in official files)
        config["input_filter"] = int(filt.shape[-1])
    return config



def _released_size(cfg: Mapping[str, Any]) -> str | None:
    for (size, scale), (n_blocks, n_feats) in DRN_VARIANTS.items():
        if (cfg.get("scale"), cfg.get("n_blocks"), cfg.get("n_feats")) == (scale, n_blocks, n_feats):
            return size
    return None


def variant_name(cfg: Mapping[str, Any]) -> str:
    """"DRN-S x4" for a released variant, else "DRN (n_blocks=2, n_feats=8) x4"."""
    size = _released_size(cfg)
    if size is not None:
        return f"DRN-{size.upper()} x{cfg['scale']}"
    return f"DRN (n_blocks={cfg.get('n_blocks')}, n_feats={cfg.get('n_feats')}) x{cfg.get('scale')}"


def _describe(cfg: Mapping[str, Any]) -> str:
    """Full description used in error messages: "DRN-L x4: n_blocks=40, n_feats=20"."""
    parts = [f"{k}={cfg[k]}" for k in ("n_blocks", "n_feats") if cfg.get(k) is not None]
    if cfg.get("scale") is not None and len(parts) == 2:
        size = _released_size(cfg)
        if size is not None:
            return f"DRN-{size.upper()} x{cfg['scale']}: {', '.join(parts)}"
        return f"DRN x{cfg['scale']}: {', '.join(parts)}"
    if cfg.get("scale") is not None:
        parts.insert(0, f"scale={cfg['scale']}")
    return f"DRN with {', '.join(parts)}" if parts else "DRN"


def _how_to_request(cfg: Mapping[str, Any]) -> str:
    size = _released_size(cfg)
    if size is not None:
        return f"model=drn_{size} scale={cfg['scale']}"
    return f"model=drn_s model.net.n_blocks={cfg['n_blocks']} model.net.n_feats={cfg['n_feats']} scale={cfg['scale']}"


def _normalise_expect(expect: Mapping[str, Any], found_scale: int) -> dict[str, Any]:
    """Requested config -> {"arch", "scale", "n_blocks", "n_feats", "negval"} (absent keys = None)."""
    out: dict[str, Any] = {k: expect.get(k) for k in ("arch", "scale", "n_blocks", "n_feats", "negval")}
    size = expect.get("variant", expect.get("size"))
    if size is not None:
        scale = out["scale"] if out["scale"] is not None else found_scale
        try:
            n_blocks, n_feats = variant_config(size, scale)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
        out["n_blocks"] = n_blocks if out["n_blocks"] is None else out["n_blocks"]
        out["n_feats"] = n_feats if out["n_feats"] is None else out["n_feats"]
    for k in ("scale", "n_blocks", "n_feats"):
        if out[k] is not None:
            out[k] = int(out[k])
    return out


def _check_expected(path: Path, found: Mapping[str, int], expect: Mapping[str, Any] | None) -> dict[str, Any]:
    """Raise when the file holds another model than requested; returns the normalised request."""
    if expect is None:
        return {}
    want = _normalise_expect(expect, found["scale"])
    if want["arch"] is not None and str(want["arch"]).lower() != "drn":
        raise CheckpointError(
            f"{path}: checkpoint holds {_describe(found)}, an RGB model, but arch={want['arch']!r} was "
            f"requested; use {_how_to_request(found)} (or model=auto) to load it"
        )
    diffs = [k for k in ("scale", "n_blocks", "n_feats") if want[k] is not None and want[k] != found[k]]
    if diffs:
        requested = {k: want[k] for k in ("scale", "n_blocks", "n_feats")}
        raise CheckpointError(
            f"{path}: checkpoint holds {_describe(found)}, but {_describe(requested)} was requested "
            f"(mismatch in {', '.join(diffs)}). To load this file use {_how_to_request(found)}, "
            f"or pass a checkpoint of the requested model."
        )
    return want



class DRNAdapter(ArchAdapter):
    """DRN primal nets and their dual models."""

    name = "drn"

    def detect(self, state_dict: Mapping[str, Any]) -> bool:
        return _looks_like_drn(state_dict)

    def infer_config(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        return infer_drn_config(state_dict)

    def describe(self, config: Mapping[str, Any]) -> str:
        return variant_name(config)

    def build(self, raw: RawCheckpoint, expect: Mapping[str, Any] | None) -> LoadedModel:
        path = raw.path
        try:
            found = infer_drn_config(raw.primal)
        except CheckpointError as e:
            raise CheckpointError(f"{path}: {e}") from None
        want = _check_expected(path, found, expect)

        hparams = dict(found, n_colors=3, negval=0.2)
        stored = raw.meta.get("hparams") or {}
        if raw.source == "sr_adapt" and stored:
            conflict = {k: (stored[k], found[k]) for k in found if k in stored and int(stored[k]) != found[k]}
            if conflict:
                raise CheckpointError(f"{path}: stored hparams disagree with the weights (stored, weights): {conflict}")
            hparams.update({k: v for k, v in stored.items() if k in ("n_colors", "negval")})
        if want.get("negval") is not None:
            hparams["negval"] = float(want["negval"])

        net = DRN(**hparams)  # same parameters as the official net (see the module docstring)
        load_strict(net, raw.primal, path, f"primal weights ({variant_name(found)})")
        meta = dict(raw.meta)
        duals = None
        if raw.duals is not None:
            duals = self._build_duals(raw.duals, Path(meta.get("dual_path", path)), found, hparams["negval"])
            meta["dual_n_feats"] = duals[0].dual_module[0][0].out_channels
        meta.update(config=found, variant=variant_name(found), hparams=hparams)
        return LoadedModel(net=net, duals=duals, source=raw.source, path=path, meta=meta)

    @staticmethod
    def _build_duals(sds: list[dict[str, Any]], where: Path, found: Mapping[str, int], negval: float):
        n_expected = int(math.log2(found["scale"]))
        if len(sds) != n_expected:
            raise CheckpointError(
                f"{where}: holds {len(sds)} dual models, but {variant_name(found)} needs {n_expected} (one per 2x step)"
            )
        first = sds[0].get("dual_module.0.0.weight")
        if first is None:
            raise CheckpointError(
                f"{where}: not a DRN dual model: keys {preview(list(sds[0]))} "
                "(expected dual_module.0.0.weight, dual_module.1.weight)"
            )
        duals = build_dual_models(found["scale"], int(first.shape[0]), negval=negval)
        for i, (module, sd) in enumerate(zip(duals, sds)):
            # bias-free conv -> LeakyReLU -> bias-free conv is positively homogeneous: no rescaling needed.
            load_strict(module, sd, where, f"dual model {i}")
        return duals
