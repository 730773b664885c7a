"""The layout stays readable: no module of the package imports one that imports it back.

Every relative import counts, deferred (inside a function) and type-only ones included: a
cycle hidden in a function body is still a cycle to whoever reads the code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "host": "reflow",
    "abi": "reflow.abi",
    "registry": "reflow.registry",
    "tools": "reflow.tools",
    "workflow": "reflow.workflow",
}


def _module_name(path: Path, root: Path = ROOT) -> str:
    top, *rest = path.relative_to(root).with_suffix("").parts
    parts = [*PACKAGES[top].split("."), *rest]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(root: Path = ROOT) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for top in PACKAGES:
        for path in (root / top).rglob("*.py"):
            name = _module_name(path, root)
            package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            deps: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.level:
                    base = package[: len(package) - (node.level - 1)]
                    target = ".".join([*base, *([node.module] if node.module else [])])
                    deps.add(target)
                    for alias in node.names:  # "from . import _catalog" names a module
                        deps.add(f"{target}.{alias.name}")
            graph[name] = deps
    return {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_no_import_cycles_between_modules() -> None:
    graph = _imports()
    # the package's __init__ wires the layers together and may import any of them
    for name in list(graph):
        graph[name] = {d for d in graph[name] if d not in PACKAGES.values()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


#: What the runtime core must never reach into: the layers built on top of it.
ABOVE_THE_CORE = ("reflow._sandbox", "reflow._loader", "reflow.registry", "reflow.tools")


def _reaches(dep: str, layer: str) -> bool:
    return dep == layer or dep.startswith(layer + ".")


def test_the_core_imports_nothing_above_it() -> None:
    """``reflow._core`` runs graphs with no sandbox, no packs, no registry and no CLI in it:
    no module of it imports those layers, not even deferred; they plug in through hooks the
    package wires (``_catalog.set_plugin_loader``, ``_network.set_network_observer``)."""
    graph = _imports()
    upward = sorted(
        f"{module} -> {dep}"
        for module, deps in graph.items()
        if _reaches(module, "reflow._core")
        for dep in deps
        if any(_reaches(dep, layer) for layer in ABOVE_THE_CORE)
    )
    assert upward == []


@pytest.mark.parametrize(
    ("source", "upward"),
    [
        ("from .._loader._plugins import forward_network_events", True),
        ("def f():\n    from .._sandbox import _wasm_engine", True),
        ("from ..registry._client import RegistryClient", True),
        ("from .. import tools", True),
        ("from .._loader import _packs as packs", True),
        ("if TYPE_CHECKING:\n    from ..tools._cli import main", True),
        ("from ._nodes import _Node", False),
        ("from .._errors import GraphError", False),
        ("from .. import _jsonread", False),
    ],
)
def test_the_upward_import_check_sees_every_form(tmp_path: Path, source: str, upward: bool) -> None:
    """The check above reads relative imports the way ``_imports`` does: deferred and
    type-only ones, ``from .. import module`` included."""
    modules = [
        "host/_errors.py",
        "host/_jsonread.py",
        "host/_core/_nodes.py",
        "host/_loader/_plugins.py",
        "host/_loader/_packs.py",
        "host/_sandbox/_wasm_engine.py",
        "registry/_client.py",
        "tools/_cli.py",
    ]
    for module in modules:
        path = tmp_path / module
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        path.touch()
    (tmp_path / "host/_core/_probe.py").write_text(source + "\n")
    (tmp_path / "abi").mkdir()
    deps = _imports(tmp_path)["reflow._core._probe"]
    assert any(_reaches(d, layer) for d in deps for layer in ABOVE_THE_CORE) is upward
