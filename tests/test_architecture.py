"""The shape issue 17 asks for, checked on every run so it cannot erode again.

- no import cycle among hilsim's modules, except between modules of one package;
- no module longer than 500 lines;
- no module reaches into another module's private names (`from x import _y`, `obj._y` where no
  class of the module itself defines `_y`).
Imports under TYPE_CHECKING and inside functions count: a cycle hidden in either is still one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "hilsim"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _package(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str) -> set[str]:
    tree = ast.parse(MODULES[name].read_text())
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(name).split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if module in MODULES:
                targets.add(module)
            targets.update(
                f"{module}.{alias.name}"
                for alias in node.names
                if f"{module}.{alias.name}" in MODULES
            )
    targets.discard(name)
    return targets


def _cycles() -> list[list[str]]:
    """Strongly connected components of the import graph (Tarjan), larger than one module."""
    graph = {name: _imports(name) for name in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in MODULES:
        if name not in index:
            visit(name)
    return found


def test_no_import_cycle_across_packages() -> None:
    """A cycle may stay inside one sub-package (its modules are one unit); hilsim's top level is
    not one unit: its modules are the services, which must not need each other both ways."""
    crossing = [
        component
        for component in _cycles()
        if len({_package(member) for member in component}) > 1
        or _package(component[0]) == "hilsim"
    ]
    assert crossing == [], "import cycles across modules of different packages: " + "; ".join(
        " -> ".join(component) for component in crossing
    )


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_length(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name]} has {lines} lines (at most {MAX_LINES})"


def _own_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines itself: functions, classes, attributes, assignments."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {name for name in names if _private(name)}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


#: Protected members of a third-party base class that a hilsim subclass extends: the subclass is
#: the extension point those libraries document, so these are the only foreign names allowed.
INHERITED: dict[str, set[str]] = {
    # SessionBase (the base of ChargePointSession, which subclasses ocpp.v16.ChargePoint, and of
    # ChargePointSession201, ocpp.v201's) replaces the library's route_message: it feeds the
    # library's response queue and sends through its lock and `_send`, as the library's own
    # `call()` does.
    "hilsim.csms.base": {
        "_connection",
        "_send",
        "_call_lock",
        "_response_queue",
        "_response_timeout",
    },
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_foreign_private_names(name: str) -> None:
    tree = ast.parse(MODULES[name].read_text())
    own = _own_private_names(tree) | INHERITED.get(name, set())
    foreign: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            foreign += [
                f"line {node.lineno}: from {node.module} import {alias.name}"
                for alias in node.names
                if _private(alias.name)
            ]
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
            foreign.append(f"line {node.lineno}: .{node.attr}")
    assert foreign == [], f"{MODULES[name]} uses other modules' private names: {foreign}"
