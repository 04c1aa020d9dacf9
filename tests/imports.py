"""The import graph of a package, read with ``ast`` (nothing is imported): every ``import`` and
``from ... import`` in every module, at any depth (functions and ``TYPE_CHECKING`` blocks too,
since a lazy import is still a dependency). Used by ``tests/test_architecture.py``."""

from __future__ import annotations

import ast
from collections.abc import Collection, Iterable, Iterator, Mapping
from pathlib import Path

Graph = dict[str, set[str]]


def module_name(root: Path, path: Path) -> str:
    """``root/pkg/a/b.py`` -> ``pkg.a.b``; ``pkg/a/__init__.py`` -> ``pkg.a``."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(
    tree: ast.AST, module: str, is_package: bool, modules: Collection[str]
) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from pkg import module`` depends on that module (its package is loaded first
            # whatever the import); ``from module import name`` on the module
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in modules else base


def import_graph(root: Path) -> Graph:
    """Module -> the package's own modules it imports (names that are not modules dropped)."""
    sources = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    graph: Graph = {}
    for module, path in sources.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        targets = set(_imported(tree, module, path.name == "__init__.py", sources))
        graph[module] = {t for t in targets if t in sources and t != module}
    return graph


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def parse_layers(text: str) -> list[set[str]]:
    """``"cli > server > models, workspace > errors"`` -> ``[{"cli"}, {"server"}, ...]``."""
    return [{p.strip() for p in layer.split(",") if p.strip()} for layer in text.split(">")]


def upward_imports(graph: Mapping[str, Iterable[str]], layers: list[set[str]]) -> list[str]:
    """Imports that go against the layer order (or sideways between two components of one
    layer), as ``"a.b -> c.d (x is below y)"``. A component is the first name below the
    package (``stageflow.engine.driver`` -> ``engine``); imports inside one component are free.
    Components missing from ``layers`` are reported too."""
    rank = {name: i for i, layer in enumerate(layers) for name in layer}
    problems: list[str] = []

    def component(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else "__init__"

    for module in sorted(graph):
        src = component(module)
        if src == "__init__":
            continue
        if src not in rank:
            problems.append(f"{module}: component '{src}' is not in the layer order")
            continue
        for target in sorted(graph[module]):
            dst = component(target)
            if dst in (src, "__init__"):  # the package's own __init__ holds its version
                continue
            if dst not in rank:
                problems.append(f"{module} -> {target}: '{dst}' is not in the layer order")
            elif rank[dst] == rank[src]:
                problems.append(f"{module} -> {target} (sideways: {src} and {dst} share a layer)")
            elif rank[dst] < rank[src]:
                problems.append(f"{module} -> {target} (upward: {dst} is above {src})")
    return problems
