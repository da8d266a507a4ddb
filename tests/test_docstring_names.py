"""Every name a docstring or comment of the package points at exists.

A pointer to our own code (``:func:`patchpnp.inference.tuned.read_chosen```,
``patchpnp.layout.PADDINGS``, ``:class:`Cell``` in the module that defines it,
``layout.WHOLE``) goes stale silently when the code moves; this test reads every
docstring (module, class, function) and every comment of the package and resolves
each such name: import the module, then ``getattr`` the rest.

What counts as a pointer, so that the test stays precise:

- a Sphinx role (``:func:``, ``:mod:``, ``:class:``, ``:meth:``, ``:attr:``,
  ``:data:``, ``:exc:``, ``:obj:``, ``:const:``). Its target is resolved as written
  (``patchpnp.``...), else in the module the text is in (and, for a class's and its
  methods' text, in that class), else as a module of the package (``formats.X``); a
  target whose first part is a module outside the package (``deepinv.sampling...``)
  is not ours and is skipped;
- any ``patchpnp.x.y`` written out;
- ``module.name`` where ``module`` is a top-level module of the package (``layout``,
  ``formats``, ...), one of its folders (``inference.tune``), or a name the module it
  is written in imports as a module of the package. Only these: ``spec.role`` or
  ``streams.grid(i)`` name variables, not modules, and a folder or module name
  followed by a config key (``inference.precision``, ``claims.plateau_fraction``, both
  keys of ``pipeline/config.schema.yaml``) or a file name (``claims.csv``) is no pointer.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import inspect
import io
import re
import sys
import tokenize
import types
from pathlib import Path

import patchpnp
import pytest
import yaml

PACKAGE = Path(patchpnp.__file__).parent
ROLE = re.compile(r":(?:py:)?(?:func|mod|class|meth|attr|data|exc|obj|const):`([^`]+)`")
FULL = re.compile(r"(?<![\w./-])patchpnp(?:\.[A-Za-z_]\w*)+")
BARE = re.compile(r"(?<![\w./:-])([a-z_][a-z0-9_]*)\.([A-Za-z_]\w*)")
FILE_SUFFIXES = {
    "csv", "md", "h5", "json", "yaml", "yml", "png", "pdf", "pt", "pth", "py", "txt",
    "smk", "sh", "log", "gz", "nii", "toml", "tex", "npz", "npy",
}  # fmt: skip


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return name.removesuffix(".__init__")


MODULES = sorted(module_name(p) for p in PACKAGE.rglob("*.py"))
TOP_LEVEL = {m.split(".")[1] for m in MODULES if m.count(".") == 1}  # layout, inference, ...


def config_keys() -> set[str]:
    """``section.key`` of every key the config schema defines, at any depth."""
    schema = yaml.safe_load((PACKAGE / "pipeline" / "config.schema.yaml").read_text())
    keys: set[str] = set()

    def walk(node, prefix: str) -> None:
        if not isinstance(node, dict):
            return
        for key, sub in (node.get("properties") or {}).items():
            if prefix:
                keys.add(f"{prefix}.{key}")
            walk(sub, key)
        for sub in (node.get("additionalProperties"), node.get("items")):
            walk(sub, prefix)

    walk(schema, "")
    return keys


CONFIG_KEYS = config_keys()


def texts(path: Path):
    """``(line, text, class name or None)`` of every docstring and comment of ``path``;
    the class is the innermost one whose body holds the text."""
    source = path.read_text()
    tree = ast.parse(source, filename=str(path))
    classes = sorted(
        ((n.lineno, n.end_lineno, n.name) for n in ast.walk(tree) if isinstance(n, ast.ClassDef)),
        key=lambda c: c[1] - c[0],
    )

    def class_at(line: int) -> str | None:
        return next((name for lo, hi, name in classes if lo <= line <= hi), None)

    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        if isinstance(node, kinds) and ast.get_docstring(node, clean=False) is not None:
            line = node.body[0].lineno
            yield line, ast.get_docstring(node, clean=False), class_at(line)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            yield tok.start[0], tok.string, class_at(tok.start[0])


def defined_names(path: Path) -> set[str]:
    """Every name ``path`` defines anywhere: functions, classes (nested ones too),
    assigned names and ``self.<attribute>``s."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return names


def import_module(name: str) -> types.ModuleType | None:
    """The module ``name``, or None when there is no such module (a missing
    dependency of a module that exists is an error, not a stale name)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and (name == err.name or name.startswith(err.name + ".")):
            return None
        raise


def has_attribute(obj, name: str) -> bool:
    """``getattr``, or a dataclass field / instance attribute a class declares."""
    if hasattr(obj, name):
        return True
    if inspect.isclass(obj):
        if dataclasses.is_dataclass(obj) and name in {f.name for f in dataclasses.fields(obj)}:
            return True
        for klass in obj.__mro__:
            if name in getattr(klass, "__annotations__", {}):
                return True
            try:
                if re.search(rf"\bself\.{re.escape(name)}\s*[:=]", inspect.getsource(klass)):
                    return True
            except (OSError, TypeError):
                continue
    return False


def resolve_in(obj, parts: list[str]) -> bool:
    for part in parts:
        if not has_attribute(obj, part):
            if inspect.ismodule(obj) and import_module(f"{obj.__name__}.{part}") is not None:
                obj = sys.modules[f"{obj.__name__}.{part}"]
                continue
            return False
        obj = getattr(obj, part, None)
    return True


def resolve(dotted: str) -> bool:
    """Whether ``patchpnp.x.y...`` names a module or an attribute of one."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        module = import_module(".".join(parts[:i]))
        if module is not None:
            return resolve_in(module, parts[i:])
    return False


def is_external(first: str) -> bool:
    """A target whose first part is an importable module outside the package."""
    if first in sys.stdlib_module_names:
        return True
    try:
        return importlib.util.find_spec(first) is not None
    except (ImportError, ValueError):
        return False


def module_aliases(module: types.ModuleType) -> dict[str, str]:
    """Names the module binds to modules of the package (``from patchpnp.x import y``)."""
    return {
        name: value.__name__
        for name, value in vars(module).items()
        if inspect.ismodule(value) and value.__name__.startswith("patchpnp.")
    }


def role_target(raw: str) -> str:
    target = raw.split("<", 1)[1].rstrip(">") if "<" in raw else raw
    return target.strip().lstrip("~!").removesuffix("()")


def check_role(target: str, module: types.ModuleType, cls: str | None, local: set[str]) -> bool:
    """A role's target: absolute, in the text's class or module, a module of the package,
    a name the source defines (a class nested in a function, say), or not ours."""
    parts = target.split(".")
    if parts[0] == "patchpnp":
        return resolve(target)
    scopes = [module]
    if cls is not None and hasattr(module, cls):
        scopes.insert(0, getattr(module, cls))
    if any(resolve_in(scope, parts) for scope in scopes):
        return True
    if parts[0] in TOP_LEVEL or parts[0] in module_aliases(module):
        return check_bare(parts, module) is not False
    if all(part in local for part in parts):
        return True
    return is_external(parts[0])


def check_bare(parts: list[str], module: types.ModuleType) -> bool | None:
    """True / False for a pointer that resolves / does not; None for no pointer."""
    first, rest = parts[0], parts[1:]
    if rest and rest[0] in FILE_SUFFIXES:
        return None
    if ".".join(parts[:2]) in CONFIG_KEYS:
        return None
    aliases = module_aliases(module)
    if first in aliases:
        return resolve(".".join([aliases[first], *rest]))
    if first in TOP_LEVEL:
        return resolve(".".join(["patchpnp", *parts]))
    return None


def pointers(path: Path, module: types.ModuleType | None = None):
    """``(line, written, resolves)`` of every pointer in the docstrings and comments of
    ``path``, the source of ``module`` (by default the package's module at ``path``)."""
    module = module or importlib.import_module(module_name(path))
    local = defined_names(path)
    for line, text, cls in texts(path):
        for m in ROLE.finditer(text):
            target = role_target(m.group(1))
            yield line, m.group(0), check_role(target, module, cls, local)
        text = ROLE.sub(" ", text)
        for m in FULL.finditer(text):
            yield line, m.group(0), resolve(m.group(0))
        without_roles = FULL.sub(" ", text)
        for m in BARE.finditer(without_roles):
            tail = without_roles[m.end() :]
            more = re.match(r"(?:\.[A-Za-z_]\w*)*", tail).group(0)
            parts = [*m.groups(), *more.split(".")[1:]]
            verdict = check_bare(parts, module)
            if verdict is not None:
                yield line, ".".join(parts), verdict


FILES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_name_in_docstrings_and_comments_resolves(path):
    stale = [f"line {line}: {written}" for line, written, ok in pointers(path) if not ok]
    assert not stale, f"{path.relative_to(PACKAGE)} points at names that do not exist: {stale}"


def test_the_pointers_found_are_many_and_the_stale_ones_fail(tmp_path):
    """The reader finds the package's pointers (a silent regex would pass anything), and
    it fails on stale ones of each kind: a function that moved to another module, a
    function that never existed, a relative role and a bare top-level module name."""
    found = [p for path in FILES for p in pointers(path)]
    assert len(found) > 200, len(found)
    assert {written for _, written, _ in found} >= {
        ":func:`patchpnp.inference.tuned.read_chosen`",
        ":func:`kspace_noise_sigma`",
        "patchpnp.runtime.select_device",  # in a comment of params.py
    }
    probe = tmp_path / "probe.py"
    probe.write_text(
        '"""Pointers: :func:`patchpnp.inference.tune.read_chosen` and\n'
        "formats.read_profiles, :class:`NoSuchClass`, layout.NOT_A_NAME,\n"
        "but not these: ``spec.role``, ``inference.precision``, ``claims.csv``,\n"
        ':class:`deepinv.sampling.PosteriorDiffusion`, layout.WHOLE."""\n'
        "# and patchpnp.metrics.quality.no_such_metric in a comment\n"
        "from patchpnp import layout  # noqa: F401\n"
    )
    spec = importlib.util.spec_from_file_location("docstring_names_probe", probe)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    verdicts = {written: ok for _, written, ok in pointers(probe, module)}
    assert verdicts == {
        ":func:`patchpnp.inference.tune.read_chosen`": False,
        "formats.read_profiles": False,
        ":class:`NoSuchClass`": False,
        "layout.NOT_A_NAME": False,
        ":class:`deepinv.sampling.PosteriorDiffusion`": True,
        "layout.WHOLE": True,
        "patchpnp.metrics.quality.no_such_metric": False,
    }, verdicts
