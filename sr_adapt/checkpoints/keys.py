"""State-dict plumbing shared by every checkpoint format and architecture: readable key diffs,
strict loading, wrapper prefixes."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from sr_adapt.errors import CheckpointError

__all__ = ["shape_of", "preview", "key_diff", "load_strict", "strip_prefixes", "is_tensor_dict"]

_MAX_LINES = 10
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile


def shape_of(v: Any) -> tuple[int, ...] | str:
    shape = getattr(v, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else type(v).__name__


def preview(keys: Sequence[str], n: int = 5) -> str:
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


def key_diff(file_sd: Mapping[str, Any], model_sd: Mapping[str, Tensor]) -> str | None:
    missing = [k for k in model_sd if k not in file_sd]
    unexpected = [k for k in file_sd if k not in model_sd]
    mismatched: dict[tuple[Any, Any], list[str]] = defaultdict(list)
    for k, v in model_sd.items():
        if k in file_sd and shape_of(file_sd[k]) != tuple(v.shape):
            mismatched[(shape_of(file_sd[k]), tuple(v.shape))].append(k)
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


def load_strict(module: nn.Module, sd: Mapping[str, Any], path: Path, what: str) -> None:
    """Loads ``sd`` into ``module`` or raises a :class:`CheckpointError` listing every key difference."""
    bad_values = [k for k, v in sd.items() if not isinstance(v, Tensor)]
    if bad_values:
        raise CheckpointError(f"{path}: {what} entries that are not tensors: {preview(bad_values)}")
    diff = key_diff(sd, module.state_dict())
    if diff:
        raise CheckpointError(f"{path}: {what} does not match the model built for it:\n{diff}")
    model_sd = module.state_dict()
    converted = {k: v.to(dtype=model_sd[k].dtype) for k, v in sd.items()}
    module.load_state_dict(converted, strict=True)



def strip_prefixes(sd: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
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


def is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    )


