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


@cache
def module_digest(module: str) -> str:
    """SHA-256 (16 hex digits) of a module's syntax tree, without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ValueError(f"{module!r} is not a Python source module that can be found")
    with open(spec.origin, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), filename=spec.origin)
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def code_digest(*modules: str) -> str:
    """One digest over several modules, in the order given."""
    joined = ",".join(f"{m}={module_digest(m)}" for m in modules)
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


# The modules each kind of job runs. A change in a solver's own module reruns
# that solver's jobs only; the shared parts rerun every job that uses them.
SOLVER_SHARED = ("patchpnp.solvers.base", "patchpnp.solvers.schedule", "patchpnp.patches")
TRAINING = (
    "patchpnp.prior.network",
    "patchpnp.prior.mp_layers",
    "patchpnp.prior.precond",
    "patchpnp.prior.loss",
    "patchpnp.prior.ema",
    "patchpnp.prior.schedule",
    "patchpnp.training.loop",
    "patchpnp.training.schemes",
    "patchpnp.training.images",
)


def solver_code(solver: str) -> str:
    """Digest of what a solver's jobs run: its module, the shared solver code and the
    shifted-grid patch wrapper."""
    return code_digest(f"patchpnp.solvers.{solver}", *SOLVER_SHARED)


def training_code() -> str:
    return code_digest(*TRAINING)
