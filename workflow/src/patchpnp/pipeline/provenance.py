"""Digests of the package's own code, so Snakemake reruns jobs whose code changed.

Snakemake tracks a rule's shell command, its params and its inputs, but not the
Python package the command calls. A rule passes :func:`command_code` of the
``patchpnp`` command it runs as a param, so it reruns when that code changes
(Snakemake's ``params`` rerun trigger). What a command runs is read from the code
itself: the import closure of the modules that the command's entry in the CLI's table
(:data:`patchpnp.commands.COMMANDS`) names, its function's and its option classes',
found from the syntax trees (no hand-kept lists that drift from the imports). The
digest covers the parsed syntax tree, so comments and formatting do not count, and it
hashes the modules Python would import, so an installed copy and an editable checkout
are both covered. Nothing but the table (torch-free) is imported: planning the workflow
stays quick and torch-free.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import cache
from pathlib import Path


def _source_path(module: str) -> Path:
    """The file Python would import ``module`` from, found without importing any of
    its packages (``find_spec`` of a submodule imports its parents, and with them
    torch: planning the workflow must stay quick)."""
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)
    if spec is not None and spec.submodule_search_locations and rest:
        for folder in spec.submodule_search_locations:
            base = Path(folder).joinpath(*rest)
            for path in (base.with_suffix(".py"), base / "__init__.py"):
                if path.is_file():
                    return path
    elif spec is not None and spec.origin and spec.origin.endswith(".py") and not rest:
        return Path(spec.origin)
    raise ValueError(f"{module!r} is not a Python source module that can be found")


def _source(module: str) -> tuple[str, Path]:
    """The source text of ``module`` and its file."""
    path = _source_path(module)
    with open(path, encoding="utf-8") as fh:
        return fh.read(), path


@cache
def _parse_source(source: str, filename: str) -> ast.Module:
    """A syntax tree, kept per source text: a command's closure shares most modules
    with the others', and planning the workflow digests every command's."""
    return ast.parse(source, filename=filename)


def _parse(module: str) -> tuple[ast.Module, bool]:
    """The syntax tree of ``module`` and whether it is a package (``__init__.py``)."""
    source, path = _source(module)
    return _parse_source(source, str(path)), path.name == "__init__.py"


@cache
def module_digest(module: str) -> str:
    """SHA-256 (16 hex digits) of a module's syntax tree, without importing it."""
    return hashlib.sha256(ast.dump(_parse(module)[0]).encode()).hexdigest()[:16]


def code_digest(*modules: str) -> str:
    """One digest over several modules, in the order given."""
    joined = ",".join(f"{m}={module_digest(m)}" for m in modules)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


PACKAGE = "patchpnp"


def _is_module(name: str) -> bool:
    try:
        _source_path(name)
    except ValueError:
        return False
    return True


def _imported(nodes, module: str, is_package: bool, package: str = PACKAGE) -> set[str]:
    """The modules of ``package`` that the import statements among ``nodes`` load.

    ``import a.b`` and ``from a.b import c`` load ``a.b`` (and ``a.b.c`` when that is a
    module); relative imports are resolved against ``module``. Every package on the
    way (``a``) runs its ``__init__`` too, so it is part of what is loaded.
    """
    here = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}"))
    out = set()
    for name in found:
        if name == package or name.startswith(package + "."):
            parts = name.split(".")
            out.update(".".join(parts[:k]) for k in range(1, len(parts) + 1))
    return {m for m in out if _is_module(m)}


@cache
def _imports_in(source: str, filename: str, module: str, package: str) -> frozenset[str]:
    """:func:`_imported` over a whole module, kept per source text (walking every
    syntax tree once per command is most of the cost of planning the workflow)."""
    tree = _parse_source(source, filename)
    is_package = Path(filename).name == "__init__.py"
    return frozenset(_imported(ast.walk(tree), module, is_package, package))


@cache
def import_closure(*entries: str, package: str = PACKAGE) -> tuple[str, ...]:
    """Every module of ``package`` that importing ``entries`` loads, found from the
    syntax trees alone (imports inside functions included), sorted."""
    seen, todo = set(), list(entries)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        source, path = _source(module)
        todo.extend(_imports_in(source, str(path), module, package) - seen)
    return tuple(sorted(seen))


def command_target(command: str) -> str:
    """The ``module:function`` that ``patchpnp <command>`` runs (the CLI's table)."""
    from patchpnp.commands import find_command

    return find_command(command).target


@cache
def command_modules(command: str) -> tuple[str, ...]:
    """What ``patchpnp <command>`` runs: the import closure of the module of its function
    and of the classes its options become (the argument parsing itself is left out, so
    editing the CLI's table reruns nothing)."""
    from patchpnp.commands import find_command

    return import_closure(*find_command(command).modules())


def command_code(command: str) -> str:
    """Digest of everything ``patchpnp <command>`` runs (:func:`command_modules`): a rule
    passes it as a param, so any edit to that code, and only to it, reruns the rule."""
    return code_digest(*command_modules(command))
