"""The package's import graph: no cycle, no private name taken from another package, views that only render.

Every import statement of ``nla_lens`` is read from the source (module-level and lazy ones inside
functions alike). A cycle hidden by a lazy import is still a cycle here. Imports under
``if TYPE_CHECKING:`` never run (annotations only), so the first check leaves them out; a second
check counts them too and refuses any cycle that spans two packages (``training`` and ``widgets``,
``models`` and ``engines``): the types both sides need live in a module both import (a Protocol,
e.g. :mod:`nla_lens.engines.protocols`, :class:`nla_lens.training.callbacks.TrainerLike`). Inside one
package such a cycle is allowed (``models.nla`` and ``models.export`` name each other's classes).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import nla_lens

ROOT = Path(nla_lens.__file__).parent

#: What the render-only views may import from the package: no model, subject, training, engine or
#: analysis code (they turn prepared tables into HTML, like circuitsvis).
VIS_ALLOWED = ("nla_lens.vis", "nla_lens.errors", "nla_lens.optional", "nla_lens.jsonable")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, *, type_checking: bool = False) -> list[tuple[str, str | None]]:
    """``(module, imported name or None)`` for every import that can run in ``name``, and with
    ``type_checking`` also those under ``if TYPE_CHECKING:`` (annotations only)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, str | None]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test) and not type_checking:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.extend((module, alias.name) for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def _graph(*, type_checking: bool = False) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for module, imported in _imports(name, path, type_checking=type_checking):
            full = f"{module}.{imported}" if imported else module
            target = full if full in modules else module
            if target in modules and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _top_package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "nla_lens" else parts[0]


def _package_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The cycles of ``graph`` whose modules belong to more than one package."""
    return [cycle for cycle in _cycles(graph) if len({_top_package(m) for m in cycle}) > 1]


def test_the_graph_reader_sees_lazy_imports_and_skips_type_checking(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\n"
        "def f():\n    from b import c\n    import d.e\n"
    )
    assert _imports("pkg.m", source) == [("typing", "TYPE_CHECKING"), ("b", "c"), ("d.e", None)]
    assert _cycles({"x": {"y"}, "y": {"z"}, "z": {"x"}, "w": {"x"}}) == [["x", "y", "z"]]


def test_the_graph_reader_can_count_type_checking_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import z\n"
        "def f():\n    from b import c\n"
    )
    assert _imports("pkg.m", source) == [("typing", "TYPE_CHECKING"), ("z", None), ("b", "c")]
    assert _imports("pkg.m", source, type_checking=True) == [
        ("typing", "TYPE_CHECKING"),
        ("a", None),
        ("z", None),
        ("b", "c"),
    ]
    graph = {"nla_lens.a.x": {"nla_lens.b.y"}, "nla_lens.b.y": {"nla_lens.a.x"}, "nla_lens.a.z": {"nla_lens.a.x"}}
    assert _package_cycles(graph) == [["nla_lens.a.x", "nla_lens.b.y"]]
    assert _package_cycles({"nla_lens.a.x": {"nla_lens.a.y"}, "nla_lens.a.y": {"nla_lens.a.x"}}) == []


def test_the_package_has_no_import_cycle():
    assert _cycles(_graph()) == []


def test_no_cycle_between_packages_even_through_type_checking_imports():
    """A cycle that only annotations close is still two packages that each need the other's types;
    the shared types belong in a module both import. Inside one package it is allowed."""
    assert _package_cycles(_graph(type_checking=True)) == []


def test_no_private_name_is_imported_from_another_package():
    offending = []
    for name, path in _modules().items():
        for module, imported in _imports(name, path):
            private = [
                part
                for part in [*module.split("."), imported or ""]
                if part.startswith("_") and not part.startswith("__")
            ]
            if private and _top_package(module) != _top_package(name):
                offending.append(f"{name} imports {imported or module} from {module}")
    assert offending == []


@pytest.mark.parametrize("name", sorted(n for n in _modules() if n.startswith("nla_lens.vis")))
def test_views_import_no_model_code(name):
    path = _modules()[name]
    inside = [module for module, _ in _imports(name, path) if module.startswith("nla_lens")]
    assert [m for m in inside if not m.startswith(VIS_ALLOWED)] == []
