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

from ..physics.base import LinearOperator
from .base import DiffusionSolver, SolverDenoiser, SolverDivergedError
from .diffpir import DiffPIR
from .dps import DPS, dps_step_size
from .schedule import edm_sigmas
from .streams import SolveStreams, image_key

SOLVERS: dict[str, type[DiffusionSolver]] = {"dps": DPS, "diffpir": DiffPIR}


def make_solver(
    name: str,
    denoiser: Callable[..., torch.Tensor],
    operator: LinearOperator,
    **params,
) -> DiffusionSolver:
    """Build the solver ``name`` ('dps' or 'diffpir') with its parameters (``steps``, ...)."""
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; valid solvers: {sorted(SOLVERS)}")
    return SOLVERS[name](denoiser, operator, **params)


__all__ = [
    "DPS",
    "SOLVERS",
    "DiffPIR",
    "DiffusionSolver",
    "SolverDenoiser",
    "SolveStreams",
    "SolverDivergedError",
    "dps_step_size",
    "edm_sigmas",
    "image_key",
    "make_solver",
]
