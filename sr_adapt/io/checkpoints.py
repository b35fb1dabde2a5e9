"""Load and export checkpoints: DRN (ours, the official PyTorch release, PaddleGAN) and DRRN.

Formats understood by :func:`load_checkpoint`:

* ``sr_adapt`` -- our Lightning ``.ckpt``: ``state_dict`` with ``net.<key>`` / ``duals.<i>.<key>``
  entries and ``checkpoint["sr_adapt"] = {"arch": ..., "hparams": {...}}``.
* ``official`` -- guoyongcs/DRN: ``DRNS4x.pt`` etc. hold a plain primal state_dict on the 0..255
  scale; the dual file (``dual_model_*.pt``) is a Python list with one state_dict per dual model.
* ``paddle`` -- PaddleGAN ``.pdparams``: a pickle ``{net_name: {key: numpy.ndarray}}`` with nets
  ``generator`` and ``dual_model_<i>``; same key names and 0..255 scale as the official release.
* ``drrn_port`` -- jt827859032/DRRN-pytorch: ``torch.save({"epoch": e, "model": model})`` with the
  whole ``DataParallel(DRRN)`` pickled. Read by an allow-list unpickler that turns modules into
  inert stubs (:mod:`sr_adapt.io.module_pickle`): neither the port's code nor any pickled code runs.
  Plain DRRN state_dicts (``input.weight``, ``conv1.weight``, ...) load as ``official``. The port's
  net works on [0, 1] Y like ours, so no conversion is needed; the number of recursions is not
  stored in the weights (the port hard-codes B1U25): pass ``n_units`` when it differs.

Our DRN takes and returns [0, 1] images and applies the factor 255 as a fixed constant at its
input and output, so its parameters ARE the official ones: the value-range conversion happens
in the model's forward, and official state_dicts load without any rescaling. The dual models are
positively homogeneous (bias-free conv, LeakyReLU, bias-free conv): ``D(255 x) = 255 D(x)``, so
their weights are shared unchanged between both value ranges too.

Everything is read without executing pickled code: ``torch.load(weights_only=True)`` for PyTorch
files and allow-list unpicklers for ``.pdparams`` and pickled-module files.
"""

from __future__ import annotations

import importlib
import math
import os
import pickle
import re
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sr_adapt.errors import SRAdaptError
from sr_adapt.io.atomic import atomic_torch_save
from sr_adapt.models import build_model
from sr_adapt.models.base import SRModel
from sr_adapt.io.module_pickle import PickledModule, RefusedGlobal, load_pickled_modules, module_state_dict
from sr_adapt.models.drn import DRN, DRN_VARIANTS, build_dual_models
from sr_adapt.models.drrn import DRRN_SCALES

__all__ = [
    "CheckpointError",
    "CheckpointNotFoundError",
    "LoadedModel",
    "infer_drn_config",
    "infer_drrn_config",
    "load_checkpoint",
    "save_official",
    "variant_name",
]

_MAX_LINES = 10
_PADDLE_NAME_MAP_KEY = "StructuredToParameterName@@"
_WRAPPER_KEYS = ("state_dict", "model", "net", "params", "generator", "model_state_dict")
_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(SRAdaptError, ValueError):
    """A checkpoint file cannot be loaded as the requested model (message says why and what to do)."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist."""


@dataclass
class LoadedModel:
    """Result of :func:`load_checkpoint`.

    ``net`` takes and returns [0, 1] images whatever the file's format; ``duals`` is ``None``
    when the file (and ``dual_path``) held no dual models. ``source`` is ``"sr_adapt"``,
    ``"official"`` or ``"paddle"``; ``meta`` holds the inferred config and format details.
    """

    net: SRModel
    duals: nn.ModuleList | None
    source: str
    path: Path
    meta: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# config inference and naming

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
            f"starting with {_preview(keys)}"
        )
    head = state_dict["head.weight"]
    if getattr(head, "ndim", 0) != 4:
        raise CheckpointError(f"not a DRN state_dict: head.weight has shape {_shape(head)}, expected 4 dims")
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
    return {"scale": 2**phases, "n_blocks": n_blocks, "n_feats": n_feats}


_DRRN_MARKERS = ("input.weight", "conv1.weight", "conv2.weight", "output.weight")
_DRRN_EXTRA_RE = re.compile(r"^extra_blocks\.(\d+)\.(input|conv1|conv2)\.weight$")


def _looks_like_drrn(keys: Iterable[str]) -> bool:
    keys = set(keys)
    return all(k in keys for k in _DRRN_MARKERS) and all(k in _DRRN_MARKERS or _DRRN_EXTRA_RE.match(k) for k in keys)


def _detect_arch(state_dict: Mapping[str, Any]) -> str | None:
    """"drn", "drrn" or None, from the key names of a (prefix-stripped) primal state_dict."""
    if _looks_like_drn(state_dict):
        return "drn"
    if _looks_like_drrn(state_dict):
        return "drrn"
    return None


def infer_drrn_config(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """``{"n_blocks", "n_feats"}`` of a DRRN state_dict (the recursion count is not in the weights)."""
    if not _looks_like_drrn(state_dict):
        raise CheckpointError(f"not a DRRN state_dict: keys {_preview(list(state_dict))}")
    w_in, w_out = state_dict["input.weight"], state_dict["output.weight"]
    if getattr(w_in, "ndim", 0) != 4 or tuple(w_in.shape[1:]) != (1, 3, 3):
        raise CheckpointError(
            f"not a luma DRRN: input.weight has shape {_shape(w_in)}, expected (C, 1, 3, 3) "
            "(DRRN works on the Y channel only)"
        )
    if getattr(w_out, "ndim", 0) != 4 or int(w_out.shape[0]) != 1:
        raise CheckpointError(f"not a luma DRRN: output.weight has shape {_shape(w_out)}, expected (1, C, 3, 3)")
    extra = {int(m.group(1)) for k in state_dict if (m := _DRRN_EXTRA_RE.match(k))}
    return {"n_blocks": 1 + len(extra), "n_feats": int(w_in.shape[0])}


def drrn_name(cfg: Mapping[str, Any]) -> str:
    """"DRRN B1U25 (128 channels)"."""
    port = ", port residual" if cfg.get("relu_residual") else ""
    return f"DRRN B{cfg.get('n_blocks')}U{cfg.get('n_units')} ({cfg.get('n_feats')} channels{port})"


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
        size = str(size).lower().removeprefix("drn").lstrip("-_")
        scale = out["scale"] if out["scale"] is not None else found_scale
        if (size, scale) not in DRN_VARIANTS:
            raise CheckpointError(f"unknown DRN variant {expect.get('variant', expect.get('size'))!r} x{scale}")
        n_blocks, n_feats = DRN_VARIANTS[(size, scale)]
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


# --------------------------------------------------------------------------------------------
# readable key diffs


def _shape(v: Any) -> tuple[int, ...] | str:
    shape = getattr(v, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else type(v).__name__


def _preview(keys: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(repr(k) for k in list(keys)[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "") if keys else "(nothing)"


def _ranges(values: Iterable[int]) -> str:
    vals = sorted(set(values))
    runs: list[str] = []
    start = prev = vals[0]
    for v in vals[1:] + [None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if v is not None:
            start = prev = v
    return runs[0] if len(runs) == 1 and "-" not in runs[0] else "{" + ",".join(runs) + "}"


def _group_keys(keys: Iterable[str]) -> list[str]:
    """Collapse keys differing only in numeric components: up_blocks.0.{3-29}.body.0.weight (27 keys)."""
    groups: dict[tuple[str, ...], list[list[str]]] = defaultdict(list)
    for key in sorted(keys, key=_natural_key):
        parts = key.split(".")
        pattern = tuple("#" if p.isdigit() else p for p in parts)
        groups[pattern].append(parts)
    lines = []
    for pattern, members in groups.items():
        if len(members) == 1:
            lines.append(".".join(members[0]))
            continue
        rendered = [p if p != "#" else _ranges(int(m[i]) for m in members) for i, p in enumerate(pattern)]
        lines.append(f"{'.'.join(rendered)} ({len(members)} keys)")
    return lines


def _natural_key(key: str) -> list[Any]:
    # "stray2" before "stray10", "up_blocks.2" before "up_blocks.10"
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", key) if t]


def _limited(lines: list[str]) -> list[str]:
    if len(lines) <= _MAX_LINES:
        return lines
    return lines[:_MAX_LINES] + [f"... and {len(lines) - _MAX_LINES} more"]


def _key_diff(file_sd: Mapping[str, Any], model_sd: Mapping[str, Tensor]) -> str | None:
    missing = [k for k in model_sd if k not in file_sd]
    unexpected = [k for k in file_sd if k not in model_sd]
    mismatched: dict[tuple[Any, Any], list[str]] = defaultdict(list)
    for k, v in model_sd.items():
        if k in file_sd and _shape(file_sd[k]) != tuple(v.shape):
            mismatched[(_shape(file_sd[k]), tuple(v.shape))].append(k)
    if not (missing or unexpected or mismatched):
        return None
    out = []
    if missing:
        out.append(f"  missing keys ({len(missing)}):")
        out += ["    " + s for s in _limited(_group_keys(missing))]
    if unexpected:
        out.append(f"  unexpected keys ({len(unexpected)}):")
        out += ["    " + s for s in _limited(_group_keys(unexpected))]
    if mismatched:
        n = sum(len(v) for v in mismatched.values())
        out.append(f"  shape mismatches ({n}), file vs model:")
        lines = []
        for (got, want), ks in mismatched.items():
            lines += [f"{g}: {got} vs {want}" for g in _group_keys(ks)]
        out += ["    " + s for s in _limited(lines)]
    return "\n".join(out)


def _load_strict(module: nn.Module, sd: Mapping[str, Any], path: Path, what: str) -> None:
    bad_values = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad_values:
        raise CheckpointError(f"{path}: {what} entries that are not tensors: {_preview(bad_values)}")
    diff = _key_diff(sd, module.state_dict())
    if diff:
        raise CheckpointError(f"{path}: {what} does not match the model built for it:\n{diff}")
    model_sd = module.state_dict()
    converted = {k: v.to(dtype=model_sd[k].dtype) for k, v in sd.items()}
    module.load_state_dict(converted, strict=True)


# --------------------------------------------------------------------------------------------
# safe reading


def _strip_prefixes(sd: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    stripped = []
    out = dict(sd)
    changed = True
    while changed and out:
        changed = False
        for prefix in _PREFIXES:
            if all(isinstance(k, str) and k.startswith(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                stripped.append(prefix)
                changed = True
    return out, stripped


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


# Model classes whose pickled instances (whole-module checkpoints of public ports) we read as stubs.
_PICKLED_MODEL_CLASSES = ("DRRN",)


def _torch_load(path: Path, map_location: Any) -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        refused = next((ln.strip() for ln in text.splitlines() if "GLOBAL" in ln), None)
        if refused is None:
            raise CheckpointError(
                f"{path}: cannot be read as a PyTorch checkpoint (corrupt or not a .pt/.pth/.ckpt file): "
                f"{_first_line(text)}"
            ) from e
        return _load_pickled_modules(path, map_location, refused)
    except Exception as e:  # corrupt zip, truncated file, wrong format ...
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint (corrupt or not a .pt/.pth/.ckpt file): "
            f"{type(e).__name__}: {_first_line(str(e))}"
        ) from e


def _load_pickled_modules(path: Path, map_location: Any, refused: str) -> Any:
    """Second try for files that pickle whole modules (the DRRN port), with module stubs."""
    try:
        return load_pickled_modules(path, _PICKLED_MODEL_CLASSES, map_location)
    except RefusedGlobal as e:
        raise CheckpointError(
            f"{path}: refused to unpickle it safely: it references {e.qualified_name}, which is neither a "
            "tensor, a plain container nor a known model class (weights_only load said: "
            f"{refused.rstrip('.')}). Only state_dicts, plain containers of tensors, numbers and strings, "
            f"and pickled {'/'.join(_PICKLED_MODEL_CLASSES)} models are accepted."
        ) from None
    except Exception as e:
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint (corrupt or not a .pt/.pth/.ckpt file): "
            f"{type(e).__name__}: {_first_line(str(e))}"
        ) from e


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else "(no details)"


def _numpy_global(module: str, name: str) -> Any:
    # numpy >= 2 moved numpy.core to numpy._core; resolve either spelling without deprecation noise.
    tail = module.split(".", 2)[-1] if module.startswith(("numpy.core.", "numpy._core.")) else None
    candidates = [f"numpy._core.{tail}", f"numpy.core.{tail}"] if tail else [module]
    for cand in candidates:
        try:
            return getattr(importlib.import_module(cand), name)
        except (ImportError, AttributeError):
            continue
    raise AttributeError(f"{module}.{name}")


class _PaddleUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the globals a ``.pdparams`` file needs (arrays, dtypes, dicts)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # how protocol-2 pickles made by Python 3 store bytes
    }
    _ALLOWED_BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "bytearray", "bytes", "str", "int", "float"}

    def __init__(self, file: Any, path: Path) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        if module == "builtins" and name in self._ALLOWED_BUILTINS:
            return getattr(__import__("builtins"), name)
        if (module, name) in self._ALLOWED:
            if module == "collections":
                return OrderedDict
            if module == "_codecs":
                import codecs

                return codecs.encode
            return _numpy_global(module, name)
        raise CheckpointError(
            f"{self._path}: refused to load global '{module}.{name}' while unpickling a .pdparams file; "
            "only numpy arrays, dtypes and plain containers are allowed"
        )


def _paddle_load(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return _PaddleUnpickler(f, path).load()
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(
            f"{path}: cannot be read as a PaddleGAN .pdparams pickle (corrupt or wrong format): "
            f"{type(e).__name__}: {e}"
        ) from e


def _numpy_dict_to_torch(d: Mapping[str, Any], path: Path, net_name: str) -> dict[str, Tensor]:
    import numpy as np

    out = {}
    for k, v in d.items():
        if k == _PADDLE_NAME_MAP_KEY:
            continue
        if not isinstance(v, np.ndarray):
            raise CheckpointError(f"{path}: {net_name}[{k!r}] is {type(v).__name__}, expected a numpy array")
        out[str(k)] = torch.tensor(np.ascontiguousarray(v))
    return out


# --------------------------------------------------------------------------------------------
# format readers -> (primal official-or-ours sd, dual sds or None, source, meta)


def _unwrap_official(obj: Any, path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    meta: dict[str, Any] = {}
    if isinstance(obj, (list, tuple)):
        raise CheckpointError(
            f"{path}: holds a list of {len(obj)} entries, which is the official dual-model file format; "
            "pass it as dual_path= together with the primal checkpoint"
        )
    if isinstance(obj, PickledModule):
        obj = {"model": obj}
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state_dict")
    modules = {k: v for k, v in obj.items() if isinstance(v, PickledModule)}
    if modules:  # torch.save({"epoch": e, "model": model}) of a whole module (DRRN port)
        key = next((k for k in _WRAPPER_KEYS if k in modules), next(iter(modules)))
        meta.update(pickled_module=modules[key]._qualname, wrapper_key=key)
        meta.update({k: obj[k] for k in ("epoch",) if k in obj})
        obj = {key: module_state_dict(modules[key])}
    sd: Any = obj
    if not _is_tensor_dict(sd):
        inner = [k for k in _WRAPPER_KEYS if k in obj and _is_tensor_dict(obj[k])]
        inner = [k for k in inner if _detect_arch(_strip_prefixes(obj[k])[0]) is not None]
        if len(inner) != 1:
            tensors = [k for k, v in obj.items() if isinstance(v, Tensor)]
            raise CheckpointError(
                f"{path}: not a DRN or DRRN state_dict: a dict with {len(obj)} entries "
                f"({len(tensors)} tensors), keys {_preview([str(k) for k in obj])}"
            )
        meta["wrapper_key"] = inner[0]
        sd = obj[inner[0]]
    sd, stripped = _strip_prefixes(sd)
    if stripped:
        meta["stripped_prefixes"] = stripped
    return sd, meta


def _read_dual_list(obj: Any, path: Path) -> list[dict[str, Tensor]]:
    if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        for k in ("dual_models", "duals", "state_dict"):
            if isinstance(obj.get(k), (list, tuple)):
                obj = obj[k]
                break
    if not isinstance(obj, (list, tuple)) or not all(_is_tensor_dict(d) for d in obj) or not obj:
        raise CheckpointError(
            f"{path}: not an official dual-model file (expected a list of state_dicts, one per dual model, "
            f"got {type(obj).__name__})"
        )
    return [_strip_prefixes(d)[0] for d in obj]


def _read_ours(obj: Mapping[str, Any], path: Path) -> tuple[dict, list | None, dict]:
    sd = obj.get("state_dict")
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path}: sr_adapt checkpoint without a 'state_dict' entry")
    info = obj.get("sr_adapt") or {}
    primal = {k[len("net.") :]: v for k, v in sd.items() if k.startswith("net.")}
    duals_by_idx: dict[int, dict[str, Tensor]] = defaultdict(dict)
    for k, v in sd.items():
        m = re.match(r"^duals\.(\d+)\.(.+)$", k)
        if m:
            duals_by_idx[int(m.group(1))][m.group(2)] = v
    if not primal:
        raise CheckpointError(
            f"{path}: sr_adapt checkpoint whose state_dict has no 'net.*' entries (keys {_preview(list(sd))})"
        )
    duals = [duals_by_idx[i] for i in sorted(duals_by_idx)] if duals_by_idx else None
    if duals is not None and sorted(duals_by_idx) != list(range(len(duals))):
        raise CheckpointError(f"{path}: dual model indices are not contiguous: {sorted(duals_by_idx)}")
    meta = {
        "arch": info.get("arch", "drn"),
        "hparams": dict(info.get("hparams") or {}),
        **{k: obj[k] for k in ("epoch", "global_step") if k in obj},
    }
    return primal, duals, meta


def _read_paddle(obj: Any, path: Path) -> tuple[dict, list | None, dict]:
    import numpy as np

    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: .pdparams holds a {type(obj).__name__}, expected a dict of nets")
    if all(isinstance(v, np.ndarray) or k == _PADDLE_NAME_MAP_KEY for k, v in obj.items()):
        nets = {"generator": obj}  # a bare paddle.save(net.state_dict())
    else:
        nets = obj
    if "generator" not in nets or not isinstance(nets["generator"], Mapping):
        raise CheckpointError(
            f"{path}: .pdparams without a 'generator' net (nets: {_preview([str(k) for k in nets])})"
        )
    primal = _numpy_dict_to_torch(nets["generator"], path, "generator")
    idx = sorted(int(m.group(1)) for k in nets if (m := re.match(r"^dual_model_(\d+)$", str(k))))
    duals = [_numpy_dict_to_torch(nets[f"dual_model_{i}"], path, f"dual_model_{i}") for i in idx] or None
    if duals is not None and idx != list(range(len(idx))):
        raise CheckpointError(f"{path}: dual_model_<i> nets are not numbered 0..{len(idx) - 1}: {idx}")
    return primal, duals, {"paddle_nets": [str(k) for k in nets]}


# --------------------------------------------------------------------------------------------
# public entry points


def load_checkpoint(
    path: str | os.PathLike,
    dual_path: str | os.PathLike | None = None,
    *,
    expect: Mapping[str, Any] | None = None,
    map_location: Any = "cpu",
) -> LoadedModel:
    """Load a DRN from our ``.ckpt``, an official ``.pt``/``.pth`` or a PaddleGAN ``.pdparams``.

    Args:
        path: checkpoint file; the format is detected from the suffix and the content.
        dual_path: optional official dual-model file (a list of state_dicts); overrides duals
            found in ``path``.
        expect: the requested model, e.g. ``{"arch": "drn", "scale": 4, "n_blocks": 30,
            "n_feats": 16}`` (``"variant": "s"`` also works; ``negval`` is passed to the model).
            A file holding another variant or scale raises :class:`CheckpointError`.
        map_location: forwarded to ``torch.load``.

    Returns a :class:`LoadedModel` whose ``net`` works on [0, 1] images.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
    if dual_path is not None and not Path(dual_path).is_file():
        raise CheckpointNotFoundError(f"dual checkpoint file not found: {dual_path}")

    meta: dict[str, Any] = {}
    if path.suffix.lower() == ".pdparams":
        source = "paddle"
        primal, duals, meta = _read_paddle(_paddle_load(path), path)
        primal, _ = _strip_prefixes(primal)
    else:
        obj = _torch_load(path, map_location)
        if isinstance(obj, Mapping) and "sr_adapt" in obj:
            source = "sr_adapt"
            primal, duals, meta = _read_ours(obj, path)
        elif (
            isinstance(obj, Mapping)
            and isinstance(obj.get("state_dict"), Mapping)
            and any(str(k).startswith("net.") for k in obj["state_dict"])
        ):
            source = "sr_adapt"  # our Lightning checkpoint without the sr_adapt metadata block
            primal, duals, meta = _read_ours(obj, path)
            meta["hparams"] = {}
        else:
            source = "official"
            primal, meta = _unwrap_official(obj, path)
            duals = None

    if dual_path is not None:
        dual_path = Path(dual_path)
        duals = _read_dual_list(_torch_load(dual_path, map_location), dual_path)
        meta["dual_path"] = str(dual_path)

    stored_arch = meta.get("arch") if source == "sr_adapt" and meta.get("hparams") else None
    if stored_arch == "drrn" or (stored_arch is None and _detect_arch(primal) == "drrn"):
        if duals is not None:
            raise CheckpointError(f"{path}: DRRN checkpoint with dual models; DRRN has no dual models")
        return _load_drrn(primal, source, path, meta, expect)
    try:
        found = infer_drn_config(primal)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    want = _check_expected(path, found, expect)

    hparams = dict(found, n_colors=3, negval=0.2)
    stored = meta.get("hparams") or {}
    if source == "sr_adapt" and stored:
        if meta.get("arch", "drn") != "drn":
            raise CheckpointError(f"{path}: holds arch {meta['arch']!r}; only DRN checkpoints are supported")
        conflict = {k: (stored[k], found[k]) for k in found if k in stored and int(stored[k]) != found[k]}
        if conflict:
            raise CheckpointError(f"{path}: stored hparams disagree with the weights (stored, weights): {conflict}")
        hparams.update({k: v for k, v in stored.items() if k in ("n_colors", "negval")})
    if want.get("negval") is not None:
        hparams["negval"] = float(want["negval"])

    net = build_model("drn", **hparams)  # same parameters as the official net (see module docstring)
    _load_strict(net, primal, path, f"primal weights ({variant_name(found)})")

    dual_modules = None
    if duals is not None:
        where = Path(meta.get("dual_path", path))
        n_expected = int(math.log2(found["scale"]))
        if len(duals) != n_expected:
            raise CheckpointError(
                f"{where}: holds {len(duals)} dual models, but {variant_name(found)} needs {n_expected} "
                f"(one per 2x step)"
            )
        first = duals[0].get("dual_module.0.0.weight")
        if first is None:
            raise CheckpointError(
                f"{where}: not a DRN dual model: keys {_preview(list(duals[0]))} "
                "(expected dual_module.0.0.weight, dual_module.1.weight)"
            )
        dual_modules = build_dual_models(found["scale"], int(first.shape[0]), negval=hparams["negval"])
        for i, (module, sd) in enumerate(zip(dual_modules, duals)):
            # bias-free conv -> LeakyReLU -> bias-free conv is positively homogeneous: no rescaling needed.
            _load_strict(module, sd, where, f"dual model {i}")
        meta["dual_n_feats"] = int(first.shape[0])

    meta.update(config=found, variant=variant_name(found), hparams=hparams)
    return LoadedModel(net=net, duals=dual_modules, source=source, path=path, meta=meta)


def _load_drrn(
    sd: Mapping[str, Any], source: str, path: Path, meta: dict[str, Any], expect: Mapping[str, Any] | None
) -> LoadedModel:
    """Build a DRRN for ``sd``: depth/width from the weights, recursions/scales from our metadata or ``expect``."""
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
    net = build_model("drrn", **hparams)
    _load_strict(net, sd, path, f"weights ({drrn_name(hparams)})")
    name = drrn_name(hparams)
    meta.update(config=dict(found, n_units=hparams["n_units"]), variant=name, hparams=net.hparams(), arch="drrn")
    return LoadedModel(net=net, duals=None, source="drrn_port" if meta.get("pickled_module") else source,
                       path=path, meta=meta)


def save_official(
    net: DRN,
    duals: Sequence[nn.Module] | None,
    primal_path: str | os.PathLike,
    dual_path: str | os.PathLike | None = None,
) -> tuple[Path, Path | None]:
    """Export in the official guoyongcs/DRN format (loadable with its ``--pre_train`` / ``--pre_train_dual``).

    Writes the primal state_dict (official parameters, for 0..255 images) to ``primal_path`` and, when ``duals`` is
    given, the list of dual state_dicts to ``dual_path`` (default: ``<primal stem>_dual_model.pt``
    beside it). Both files are written atomically. Returns the two paths.
    """
    if not isinstance(net, DRN):
        raise TypeError(f"save_official exports DRN models, got {type(net).__name__}")
    primal_path = Path(primal_path)
    sd = {k: v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items()}
    atomic_torch_save(OrderedDict(sd), primal_path)
    if duals is None:
        return primal_path, None
    if dual_path is None:
        dual_path = primal_path.with_name(f"{primal_path.stem}_dual_model{primal_path.suffix or '.pt'}")
    dual_path = Path(dual_path)
    dual_sds = [
        OrderedDict((k, v.detach().cpu().clone().contiguous()) for k, v in d.state_dict().items()) for d in duals
    ]
    atomic_torch_save(dual_sds, dual_path)
    return primal_path, dual_path
