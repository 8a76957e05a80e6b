"""kdlab is a layered house (STYLE.md, issue 17): each layer imports only its own and the layers below, and no
modules import each other in a circle. Read from the source with ast (function-level imports count too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "kdlab"

# bottom to top; a module's layer is that of its longest listed prefix
LAYERS: list[set[str]] = [
    {"kdlab", "kdlab.errors", "kdlab.utils", "kdlab.registry", "kdlab.resolvers", "kdlab.optim_checks"},
    {"kdlab.data", "kdlab.losses"},
    {"kdlab.models"},
    {
        "kdlab.cache",
        "kdlab.evaluation",
        "kdlab.optim",
        "kdlab.callbacks",
        "kdlab.resume",
        "kdlab.tracking",
        "kdlab.overrides",
        "kdlab.deploy",
    },
    {"kdlab.methods", "kdlab.runner", "kdlab.config"},
    {"kdlab.pipelines"},
    {
        "kdlab.__main__",
        "kdlab.app",
        "kdlab.api",
        "kdlab.train",
        "kdlab.eval",
        "kdlab.sweep",
        "kdlab.report",
        "kdlab.plots",
        "kdlab.help",
        "kdlab.bench",
    },
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def imported(tree: ast.AST, known: set[str]) -> set[str]:
    """The kdlab modules a module's source imports (`from kdlab.data import text` is kdlab.data.text)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name.startswith("kdlab"):
                found.add(name)
                break
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imported(ast.parse(path.read_text(encoding="utf-8")), known) - {name} for name, path in found.items()}


def layer(name: str) -> int:
    best, rank = "", None
    for index, members in enumerate(LAYERS):
        for prefix in members:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, index
    if rank is None:
        raise AssertionError(f"{name} is in no layer of tests/test_layering.py: add it where it belongs")
    return rank


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_a_higher_layer():
    upward = [
        f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)})"
        for name, targets in sorted(graph().items())
        for target in sorted(targets)
        if layer(target) > layer(name)
    ]
    assert upward == []


def test_no_import_circle():
    assert cycles(graph()) == []


def test_the_checks_find_an_upward_import_and_a_circle():
    assert layer("kdlab.data.text") < layer("kdlab.models.backbone") < layer("kdlab.pipelines.bam") < layer("kdlab.app")
    with pytest.raises(AssertionError, match="in no layer"):
        layer("kdlab_other.x")
    tree = ast.parse("def f():\n    from kdlab.pipelines.common import container\n")
    assert imported(tree, {"kdlab.pipelines.common", "kdlab.pipelines"}) == {"kdlab.pipelines.common"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
