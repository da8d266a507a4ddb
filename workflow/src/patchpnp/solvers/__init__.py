"""Diffusion solvers for inverse problems, in EDM sigma form and [0, 1] image units.

Each solver combines a denoiser ``D01(x, sigma)`` (whole-image or the shifted-grid
patch wrapper: the solvers do not care), a forward model and the EDM noise schedule,
and solves a batch of independent images with ``solve(y, sigma_n, streams)`` (keyed random
streams, :mod:`patchpnp.solvers.streams`).
Build one by name with :func:`make_solver`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..params import DEEPINV_SOLVERS, SOLVER_KEYS
from ..physics.base import LinearOperator
from .base import DiffusionSolver, SolverDenoiser, SolverDivergedError
from .diffpir import DiffPIR
from .dps import DPS, dps_step_size
from .padis import PadisDPS, PadisLangevin
from .schedule import edm_sigmas
from .streams import SolveStreams, image_key

SOLVERS: dict[str, type[DiffusionSolver]] = {
    "dps": DPS,
    "diffpir": DiffPIR,
    "padis_dps": PadisDPS,
    "padis_langevin": PadisLangevin,
}


def solver_class(name: str) -> type[DiffusionSolver]:
    """The class of solver ``name``: ours (:data:`SOLVERS`) or deepinv's
    (:mod:`patchpnp.solvers.deepinv_solvers`, imported on first use: deepinv takes
    seconds to import, and most jobs never need it)."""
    if name in SOLVERS:
        return SOLVERS[name]
    if name in DEEPINV_SOLVERS:
        from .deepinv_solvers import DEEPINV_SOLVERS as classes

        return classes[name]
    raise ValueError(f"unknown solver {name!r}; valid solvers: {sorted(SOLVER_KEYS)}")


def make_solver(
    name: str,
    denoiser: Callable[..., torch.Tensor],
    operator: LinearOperator,
    **params,
) -> DiffusionSolver:
    """Build the solver ``name`` (a key of :data:`patchpnp.params.SOLVER_KEYS`: ours, or
    deepinv's ``dinv_*``) with its parameters (``steps``, ...)."""
    return solver_class(name)(denoiser, operator, **params)


__all__ = [
    "DPS",
    "SOLVERS",
    "DiffPIR",
    "DiffusionSolver",
    "PadisDPS",
    "PadisLangevin",
    "SolverDenoiser",
    "SolveStreams",
    "SolverDivergedError",
    "dps_step_size",
    "edm_sigmas",
    "image_key",
    "make_solver",
    "solver_class",
]
