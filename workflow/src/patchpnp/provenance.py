"""Digests of the package's own code, so Snakemake reruns jobs whose code changed.

Snakemake tracks a rule's shell command, its params and its inputs, but not the
Python package the command calls. A rule that passes ``code_digest(...)`` of the
modules it depends on as a param reruns when one of them changes (Snakemake's
``params`` rerun trigger). The digest covers the parsed syntax tree, so comments
and formatting do not count, and it hashes the modules Python would import, so
an installed copy and an editable checkout are both covered.
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


@cache
def module_digest(module: str) -> str:
    """SHA-256 (16 hex digits) of a module's syntax tree, without importing it."""
    path = _source_path(module)
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), filename=str(path))
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def code_digest(*modules: str) -> str:
    """One digest over several modules, in the order given."""
    joined = ",".join(f"{m}={module_digest(m)}" for m in modules)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


# The modules each kind of job runs. A change in a solver's own module reruns
# that solver's jobs only; the shared parts rerun every job that uses them.
PHYSICS = tuple(
    f"patchpnp.physics.{m}"
    for m in ("base", "convolution", "kernels", "denoising", "superres", "deblur", "mri")
)
# What every inference job runs, a baseline included: the cell runner, the
# metrics and the operators.
CELL = ("patchpnp.inference", "patchpnp.metrics", *PHYSICS)
SOLVER_SHARED = (
    "patchpnp.solvers.base",
    "patchpnp.solvers.schedule",
    "patchpnp.patches",
    "patchpnp.tiling",
    *CELL,
)
PRIOR = (
    "patchpnp.prior.network",
    "patchpnp.prior.mp_layers",
    "patchpnp.prior.precond",
    "patchpnp.prior.loss",
    "patchpnp.prior.ema",
    "patchpnp.prior.schedule",
    "patchpnp.training.settings",
    "patchpnp.training.spec",
)
TRAINING = (
    *PRIOR,
    "patchpnp.training.loop",
    "patchpnp.training.schemes",
    "patchpnp.training.images",
)

# Rules whose code does not depend on a wildcard.
RULE_MODULES = {
    "demo_volumes": ("patchpnp.demo", "patchpnp.fastmri"),
    "extract": ("patchpnp.extract", "patchpnp.fastmri", "patchpnp.atomic"),
    "train": TRAINING,
    "denoise_check": ("patchpnp.denoise_check", "patchpnp.patches", "patchpnp.tiling"),
    "baseline": CELL,
    "profile": ("patchpnp.profiling", "patchpnp.memory"),
    "tune": ("patchpnp.tune",),
    "tables": ("patchpnp.aggregate", "patchpnp.claims"),
    "figures": ("patchpnp.figures",),
}


def solver_code(solver: str) -> str:
    """Digest of what a solver's jobs run: its module, the shared solver code, the
    shifted-grid patch wrapper, the cell runner, the metrics and the operators."""
    return code_digest(f"patchpnp.solvers.{solver}", *SOLVER_SHARED)


def rule_code(kind: str) -> str:
    """Digest of the modules behind one kind of job (a key of ``RULE_MODULES``)."""
    return code_digest(*RULE_MODULES[kind])
