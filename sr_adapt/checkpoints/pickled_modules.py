"""Read state_dicts out of files that pickled a whole ``nn.Module`` -- without its code, safely.

Some public ports save checkpoints as ``torch.save({"epoch": e, "model": model})`` with the model
object itself (often wrapped in ``DataParallel``). Loading those normally needs the port's classes
on ``sys.path`` and executes whatever the pickle names. Here the pickle is read with an
allow-list unpickler instead:

* module classes (``torch.nn.*`` layers and containers, plus the model classes named in
  ``model_classes``) become inert :class:`PickledModule` stubs that only keep their pickled
  ``__dict__``; no constructor or method of the real class is ever run;
* tensors and parameters are rebuilt by torch's own storage-loading path
  (``torch._utils._rebuild_*``);
* plain containers (dict, OrderedDict, set, list, tuple) and ``torch.device`` are allowed;
* any other global raises :class:`RefusedGlobal` naming it.

:func:`module_state_dict` then walks the stubs' ``_parameters`` / ``_buffers`` / ``_modules``
like ``nn.Module.state_dict`` would.
"""

from __future__ import annotations

import collections
import os
import pickle
import warnings
from collections.abc import Collection, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["PickledModule", "RefusedGlobal", "load_pickled_modules", "module_state_dict"]


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle references a global outside the allow-list (``module.name`` in the message)."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"global '{module}.{name}' is not allowed")
        self.qualified_name = f"{module}.{name}"


class PickledModule:
    """Inert stand-in for a pickled ``nn.Module``: holds its pickled state, runs nothing."""

    _qualname = "nn.Module"

    def __setstate__(self, state: Any) -> None:
        # nn.Module pickles its __dict__; keep it as data only.
        self.__dict__["_state"] = state if isinstance(state, Mapping) else {}

    @property
    def state(self) -> Mapping[str, Any]:
        return self.__dict__.get("_state", {})

    def __repr__(self) -> str:
        return f"<pickled {self._qualname}>"


_STUBS: dict[str, type[PickledModule]] = {}


def _stub_class(qualname: str) -> type[PickledModule]:
    if qualname not in _STUBS:
        _STUBS[qualname] = type(qualname.rsplit(".", 1)[-1], (PickledModule,), {"_qualname": qualname})
    return _STUBS[qualname]


def _device(*args: Any) -> str:
    return str(torch.device(*args))


def _no_backend(*_args: Any) -> None:
    return None  # torch < 1.0 pickled a THNN backend handle into every module


_FUNCTIONS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "tuple"): tuple,
    ("builtins", "frozenset"): frozenset,
    ("torch", "device"): _device,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch.nn.backends.thnn", "_get_thnn_function_backend"): _no_backend,
}


def _is_torch_module_class(module: str, name: str) -> bool:
    if not module.startswith("torch.nn."):
        return False
    try:
        import importlib

        obj = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return False
    return isinstance(obj, type) and issubclass(obj, torch.nn.Module)


def _make_pickle_module(model_classes: Collection[str]) -> Any:
    """A ``pickle``-like namespace for ``torch.load(pickle_module=...)`` with the allow-list above."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
            if (module, name) in _FUNCTIONS:
                return _FUNCTIONS[(module, name)]
            if name in model_classes or _is_torch_module_class(module, name):
                return _stub_class(f"{module}.{name}")
            raise RefusedGlobal(module, name)

    def load(file: Any, **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()

    namespace = type("restricted_module_pickle", (), {})()
    namespace.__name__ = "restricted_module_pickle"
    namespace.Unpickler = Unpickler
    namespace.load = load
    namespace.UnpicklingError = pickle.UnpicklingError
    return namespace


def load_pickled_modules(
    path: str | os.PathLike, model_classes: Collection[str], map_location: Any = "cpu"
) -> Any:
    """``torch.load`` a file whose pickle may hold whole modules, as :class:`PickledModule` stubs.

    Raises :class:`RefusedGlobal` for a global outside the allow-list; other read errors
    propagate from ``torch.load``.
    """
    with warnings.catch_warnings():
        # legacy (pre-1.6) files carry the classes' source; stubs have none to compare with
        warnings.filterwarnings("ignore", message="Couldn't retrieve source code")
        return torch.load(path, map_location=map_location, pickle_module=_make_pickle_module(set(model_classes)))


def module_state_dict(module: PickledModule, prefix: str = "") -> dict[str, Tensor]:
    """The ``state_dict`` a real module with this pickled state would return (persistent buffers only)."""
    state = module.state
    out: dict[str, Tensor] = {}
    for name, value in (state.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = value.detach() if isinstance(value, Tensor) else value
    skip = set(state.get("_non_persistent_buffers_set") or ())
    for name, value in (state.get("_buffers") or {}).items():
        if value is not None and name not in skip:
            out[prefix + name] = value
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, PickledModule):
            out.update(module_state_dict(child, f"{prefix}{name}."))
    return out
