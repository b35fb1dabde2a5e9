"""The package's layers run one way: each room imports only rooms of its own layer or to its left.

    errors, config, ops -> io -> degradation -> models -> checkpoints -> data -> evaluation, inference
    -> training -> tasks

Every ``import`` is checked, also those inside functions; within a layer the import graph has
no cycles. A new room (a subpackage or top-level module of ``sr_adapt``) must be placed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sr_adapt"

LAYERS: list[set[str]] = [
    {"errors", "config", "conf", "ops"},
    {"io"},
    {"degradation"},
    {"models"},
    {"checkpoints"},
    {"data"},
    {"evaluation", "inference"},
    {"training"},
    {"tasks"},
]
LAYER_OF = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _room(module: str) -> str:
    """``sr_adapt.data.sources.paired`` -> ``data``."""
    return module.split(".")[1]


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(module: str, path: Path) -> set[str]:
    """Every ``sr_adapt.*`` module imported by ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "sr_adapt"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "sr_adapt":
                found.add(name)
                found |= {f"{name}.{a.name}" for a in node.names}  # "from pkg import module"
    return found


MODULES = _modules()


def test_every_room_has_a_layer() -> None:
    rooms = {_room(m) for m in MODULES if m != "sr_adapt"}
    assert rooms - set(LAYER_OF) == set(), "place the new room in LAYERS (and the README's Layout)"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "sr_adapt"))
def test_imports_run_one_way(module: str) -> None:
    layer = LAYER_OF[_room(module)]
    bad = []
    for name in sorted(_imports(module, MODULES[module])):
        if name == "sr_adapt" or (name not in MODULES and name.rsplit(".", 1)[0] not in MODULES):
            continue
        if LAYER_OF[_room(name)] > layer:
            bad.append(f"{name} (layer {LAYER_OF[_room(name)]}: {sorted(LAYERS[LAYER_OF[_room(name)]])})")
    assert not bad, f"{module} (layer {layer}) imports layers to its right: {bad}"


def test_no_import_cycles_between_modules() -> None:
    graph = {}
    for module, path in MODULES.items():
        targets = set()
        for name in _imports(module, path):
            target = name if name in MODULES else name.rsplit(".", 1)[0]
            if target in MODULES and target != module and not MODULES[target].name == "__init__.py":
                targets.add(target)
        graph[module] = targets
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m)


def test_the_package_root_and_tasks_are_leaves() -> None:
    assert _imports("sr_adapt", PACKAGE / "__init__.py") == set()
    importers = [m for m, p in MODULES.items() if m != "sr_adapt" and _room(m) != "tasks"
                 and any(n.startswith("sr_adapt.tasks") for n in _imports(m, p))]
    assert importers == [], f"the library imports a task: {importers}"


def test_no_file_is_over_400_lines_without_saying_why() -> None:
    long = [f"{p.relative_to(PACKAGE.parent)} ({n} lines)" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 400 and "Over 400 lines:" not in p.read_text()[:3000]]
    assert long == []
