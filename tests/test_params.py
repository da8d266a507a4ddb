"""The parameter names of patchpnp.params against the constructors that take them."""

import inspect

import pytest
from patchpnp.params import (
    DEEPINV_SOLVERS,
    NOISE,
    SOLVER_KEYS,
    SOLVER_REQUIRED,
    STEPS,
    TASK_INTERNAL,
    TASK_KEYS,
    TUNED,
    missing_solver_params,
    operator_params,
    unknown_solver_params,
)
from patchpnp.physics import OPERATORS
from patchpnp.solvers import SOLVERS, solver_class
from patchpnp.solvers.base import DiffusionSolver

# What the solver base class takes from every solver but the config never sets.
BASE_ONLY = set(inspect.signature(DiffusionSolver.__init__).parameters) - {
    "self", "denoiser", "operator", STEPS, "sigma_start"
}  # fmt: skip


def _own(cls) -> dict[str, inspect.Parameter]:
    skip = {"self", "denoiser", "operator", "args", "kwargs"}
    return {k: p for k, p in inspect.signature(cls.__init__).parameters.items() if k not in skip}


@pytest.mark.parametrize("solver", sorted(SOLVER_KEYS))
def test_solver_names_match_the_constructor(solver):
    assert set(SOLVER_KEYS) == set(SOLVERS) | set(DEEPINV_SOLVERS)
    assert set(SOLVER_KEYS) == set(SOLVER_REQUIRED) == set(TUNED)
    own = _own(solver_class(solver))
    assert set(own) - {STEPS} == SOLVER_KEYS[solver]
    required = {k for k, p in own.items() if p.default is inspect.Parameter.empty}
    assert required == SOLVER_REQUIRED[solver] | {STEPS}
    assert TUNED[solver] in SOLVER_REQUIRED[solver]
    assert not BASE_ONLY & SOLVER_KEYS[solver]


@pytest.mark.parametrize("task", sorted(OPERATORS))
def test_task_names_match_the_operator(task):
    assert set(TASK_KEYS) == set(OPERATORS)
    own = set(_own(OPERATORS[task]))
    assert own == TASK_KEYS[task] - {NOISE} | TASK_INTERNAL.get(task, set())
    assert NOISE in TASK_KEYS[task]


def test_helpers():
    assert operator_params({"sigma_n": 0.1, "factor": 2}) == {"factor": 2}
    assert unknown_solver_params("dps", {"steps": 3, "zeta": 1.0, "lam": 2}) == ["lam"]
    assert missing_solver_params("diffpir", {"lam": 1.0}) == ["steps", "zeta"]
    assert missing_solver_params("dps", {"steps": 3, "zeta": 1.0}) == []
