"""The package is a stack: its top-level folders import each other one way only.

The folder import graph is read from the source (every ``import`` and ``from ...
import``, relative ones resolved, lazy ones inside functions included). Top-level
modules (``errors``, ``layout``, ``formats``, ``params``, ``runtime``, ``atomic``) are
helpers any folder may use; ``cli`` is the entry point above everything; ``tools/``
holds benchmarks no rule runs, so nothing in the package imports it.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

import patchpnp

PACKAGE = Path(patchpnp.__file__).parent

# Bottom to top: each folder may import only folders listed before it. The README's
# map draws the same stack.
STACK = (
    "physics",
    "prior",
    "metrics",
    "patching",
    "solvers",
    "data",
    "pipeline",
    "training",
    "inference",
    "evaluation",
    "tools",
)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the ``patchpnp`` modules ``path`` imports."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    package = package.removesuffix(".__init__")
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return {n for n in names if n == "patchpnp" or n.startswith("patchpnp.")}


def folder_of(module: str) -> str | None:
    """The top-level folder a module name lies in, or None for a top-level module."""
    parts = module.split(".")
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return None


def folder_graph() -> dict[str, dict[str, set[str]]]:
    """{importing folder: {imported folder: {'module -> module', ...}}}."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(PACKAGE.rglob("*.py")):
        source = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        src_folder = folder_of(source) or f"<{path.stem}>"
        for target in imported_modules(path):
            dst_folder = folder_of(target)
            if dst_folder and dst_folder != src_folder:
                graph[src_folder][dst_folder].add(f"{source} -> {target}")
    return graph


def test_the_stack_names_every_folder():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(STACK), "add a new folder to STACK (and the README's map)"


def test_no_two_folders_import_each_other():
    graph = folder_graph()
    both_ways = [
        f"{a} <-> {b}:\n  " + "\n  ".join(sorted(graph[a][b] | graph[b][a]))
        for a in graph
        for b in graph[a]
        if a < b and a in graph.get(b, {})
    ]
    assert not both_ways, "\n".join(both_ways)


def test_every_folder_imports_only_folders_below_it():
    graph = folder_graph()
    upward = [
        f"{a} imports {b}, which lies above it:\n  " + "\n  ".join(sorted(edges))
        for a, targets in graph.items()
        if a in STACK
        for b, edges in targets.items()
        if STACK.index(b) > STACK.index(a)
    ]
    assert not upward, "\n".join(upward)


def test_nothing_in_the_package_imports_tools():
    graph = folder_graph()
    users = {a: sorted(t["tools"]) for a, t in graph.items() if a != "tools" and "tools" in t}
    assert not users, users


def test_the_graph_reader_sees_relative_and_lazy_imports(tmp_path, monkeypatch):
    # A test that cannot fail proves nothing: the reader must see both import forms.
    pkg = tmp_path / "patchpnp"
    for folder in ("low", "high"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "low" / "a.py").write_text("def f():\n    from ..high import b\n")
    (pkg / "high" / "b.py").write_text("from patchpnp.low.a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    graph = folder_graph()
    assert graph["low"]["high"] == {
        "patchpnp.low.a -> patchpnp.high",
        "patchpnp.low.a -> patchpnp.high.b",
    }
    assert graph["high"]["low"] == {
        "patchpnp.high.b -> patchpnp.low.a",
        "patchpnp.high.b -> patchpnp.low.a.f",
    }
