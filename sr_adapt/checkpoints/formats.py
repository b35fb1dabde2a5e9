"""Reading checkpoint files safely, whatever wrote them, into a :class:`RawCheckpoint`.

Formats understood by :func:`read_checkpoint`:

* ``sr_adapt`` -- our Lightning ``.ckpt``: ``state_dict`` with ``net.<key>`` / ``duals.<i>.<key>``
  entries and ``checkpoint["sr_adapt"] = {"arch": ..., "hparams": {...}}``; also a plain
  ``torch.save`` of such a dict.
* ``official`` -- a plain state_dict (guoyongcs/DRN's ``DRNS4x.pt``, DRRN state_dicts), possibly
  wrapped (``{"state_dict": ...}``, ``module.`` prefixes); the official dual file
  (``dual_model_*.pt``) is a Python list with one state_dict per dual model.
* ``paddle`` -- PaddleGAN ``.pdparams``: a pickle ``{net_name: {key: numpy.ndarray}}`` with nets
  ``generator`` and ``dual_model_<i>``; same key names and 0..255 scale as the official release.
* pickled modules -- ``torch.save({"epoch": e, "model": model})`` of a whole module (the DRRN
  port), read by an allow-list unpickler that turns modules into inert stubs
  (:mod:`sr_adapt.checkpoints.pickled_modules`): neither the port's code nor any pickled code runs.

Nothing executes pickled code: ``torch.load(weights_only=True)`` for PyTorch files and
allow-list unpicklers for the rest. Error messages never suggest ``weights_only=False``.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sr_adapt.checkpoints.archs import RawCheckpoint, detect_adapter
from sr_adapt.checkpoints.keys import is_tensor_dict, preview, strip_prefixes
from sr_adapt.checkpoints.pickled_modules import PickledModule, RefusedGlobal, load_pickled_modules, module_state_dict
from sr_adapt.errors import CheckpointError, CheckpointNotFoundError

__all__ = ["read_checkpoint", "read_safetensors", "torch_load"]

_PADDLE_NAME_MAP_KEY = "StructuredToParameterName@@"
_WRAPPER_KEYS = ("state_dict", "model", "net", "params", "generator", "model_state_dict")

_PICKLED_MODEL_CLASSES = ("DRRN",)


def torch_load(path: Path, map_location: Any) -> Any:
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


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a ``.safetensors`` file (no code runs: the format holds only tensors)."""
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
    try:
        from safetensors.torch import load_file  # noqa: PLC0415
    except ImportError:
        raise CheckpointError(f"{path}: reading .safetensors needs the safetensors package (pip install safetensors)") from None
    try:
        return load_file(str(path), device="cpu")
    except Exception as e:  # truncated or not a safetensors file
        raise CheckpointError(f"{path}: cannot be read as a .safetensors file: {type(e).__name__}: {_first_line(str(e))}") from e


def _load_pickled_modules(path: Path, map_location: Any, refused: str) -> Any:
    """Second try for files that pickle whole modules (the DRRN port), with module stubs."""
    try:
        return load_pickled_modules(path, _PICKLED_MODEL_CLASSES, map_location)
    except RefusedGlobal as e:
        raise CheckpointError(
            f"{path}: refused to unpickle it safely: it references {e.qualified_name}, which is neither a "
            "tensor, a plain container nor a known model class (the safe loader said: "
            f"{refused.rstrip('.')}). Only state_dicts, plain containers of tensors, numbers and strings, "
            f"and pickled {'/'.join(_PICKLED_MODEL_CLASSES)} models are accepted."
        ) from None
    except Exception as e:
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch checkpoint (corrupt or not a .pt/.pth/.ckpt file): "
            f"{type(e).__name__}: {_first_line(str(e))}"
        ) from e


def _first_line(text: str) -> str:
    """The first line of a loader's message, without torch's advice to load with weights_only=False
    (unsafe: it would run code from the file)."""
    text = text.strip()
    line = text.splitlines()[0] if text else "(no details)"
    if "weights_only" in line:
        kept = [s for s in line.split(". ") if "weights_only" not in s]
        line = ". ".join(kept).strip() or "the file is not a checkpoint torch can read safely"
    return line


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


def paddle_load(path: Path) -> Any:
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


def read_official(obj: Any, path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
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
    if not is_tensor_dict(sd):
        inner = [k for k in _WRAPPER_KEYS if k in obj and is_tensor_dict(obj[k])]
        inner = [k for k in inner if detect_adapter(strip_prefixes(obj[k])[0]) is not None]
        if len(inner) != 1:
            tensors = [k for k, v in obj.items() if isinstance(v, Tensor)]
            raise CheckpointError(
                f"{path}: not a DRN or DRRN state_dict: a dict with {len(obj)} entries "
                f"({len(tensors)} tensors), keys {preview([str(k) for k in obj])}"
            )
        meta["wrapper_key"] = inner[0]
        sd = obj[inner[0]]
    sd, stripped = strip_prefixes(sd)
    if stripped:
        meta["stripped_prefixes"] = stripped
    return sd, meta


def read_dual_list(obj: Any, path: Path) -> list[dict[str, Tensor]]:
    if isinstance(obj, Mapping) and not is_tensor_dict(obj):
        for k in ("dual_models", "duals", "state_dict"):
            if isinstance(obj.get(k), (list, tuple)):
                obj = obj[k]
                break
    if not isinstance(obj, (list, tuple)) or not all(is_tensor_dict(d) for d in obj) or not obj:
        raise CheckpointError(
            f"{path}: not an official dual-model file (expected a list of state_dicts, one per dual model, "
            f"got {type(obj).__name__})"
        )
    return [strip_prefixes(d)[0] for d in obj]


def read_ours(obj: Mapping[str, Any], path: Path) -> tuple[dict, list | None, dict]:
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
            f"{path}: sr_adapt checkpoint whose state_dict has no 'net.*' entries (keys {preview(list(sd))})"
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


def read_paddle(obj: Any, path: Path) -> tuple[dict, list | None, dict]:
    import numpy as np

    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: .pdparams holds a {type(obj).__name__}, expected a dict of nets")
    if all(isinstance(v, np.ndarray) or k == _PADDLE_NAME_MAP_KEY for k, v in obj.items()):
        nets = {"generator": obj}  # a bare paddle.save(net.state_dict())
    else:
        nets = obj
    if "generator" not in nets or not isinstance(nets["generator"], Mapping):
        raise CheckpointError(
            f"{path}: .pdparams without a 'generator' net (nets: {preview([str(k) for k in nets])})"
        )
    primal = _numpy_dict_to_torch(nets["generator"], path, "generator")
    idx = sorted(int(m.group(1)) for k in nets if (m := re.match(r"^dual_model_(\d+)$", str(k))))
    duals = [_numpy_dict_to_torch(nets[f"dual_model_{i}"], path, f"dual_model_{i}") for i in idx] or None
    if duals is not None and idx != list(range(len(idx))):
        raise CheckpointError(f"{path}: dual_model_<i> nets are not numbered 0..{len(idx) - 1}: {idx}")
    return primal, duals, {"paddle_nets": [str(k) for k in nets]}



def read_checkpoint(path: str | os.PathLike, dual_path: str | os.PathLike | None = None,
                    map_location: Any = "cpu") -> RawCheckpoint:
    """The tensors of ``path`` (and of the official dual-model list ``dual_path``, which overrides
    duals found in ``path``); the format is detected from the suffix and the content."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
    if dual_path is not None and not Path(dual_path).is_file():
        raise CheckpointNotFoundError(f"dual checkpoint file not found: {dual_path}")

    if path.suffix.lower() == ".pdparams":
        source = "paddle"
        primal, duals, meta = read_paddle(paddle_load(path), path)
        primal, _ = strip_prefixes(primal)
    else:
        obj = torch_load(path, map_location)
        if isinstance(obj, Mapping) and "sr_adapt" in obj:
            source = "sr_adapt"
            primal, duals, meta = read_ours(obj, path)
        elif (
            isinstance(obj, Mapping)
            and isinstance(obj.get("state_dict"), Mapping)
            and any(str(k).startswith("net.") for k in obj["state_dict"])
        ):
            source = "sr_adapt"  # our Lightning checkpoint without the sr_adapt metadata block
            primal, duals, meta = read_ours(obj, path)
            meta["hparams"] = {}
        elif is_tensor_dict(obj) and any(str(k).startswith("net.") for k in obj):
            source = "sr_adapt"  # our module's state_dict saved bare (net.* [+ duals.*])
            primal, duals, meta = read_ours({"state_dict": obj}, path)
            meta["hparams"] = {}
        else:
            source = "official"
            primal, meta = read_official(obj, path)
            duals = None
    if dual_path is not None:
        dual_path = Path(dual_path)
        duals = read_dual_list(torch_load(dual_path, map_location), dual_path)
        meta["dual_path"] = str(dual_path)
    return RawCheckpoint(primal=primal, duals=duals, source=source, path=path, meta=meta)
