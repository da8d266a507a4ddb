"""Diffusion Posterior Sampling (Chung et al. 2023) in EDM sigma form, in [0, 1] image units.

Per step ``i`` (ALGORITHMS.md section 6), with ``s_i`` the noise level:

1. ``x0 = D01(x_i, s_i)`` with autograd on ``x_i``;
2. ancestral step ``x' = x0 + (s_{i+1}^2/s_i^2)(x_i - x0) + s_{i+1} sqrt(1 - s_{i+1}^2/s_i^2) z``;
3. ``x_{i+1} = x' - zeta_i grad_{x_i} ||y - A x0||``: the norm, not its square, one
   norm per sample, so the gradient of their sum is per sample (the official code takes
   one norm over the whole batch, which couples the samples; we do not).

Units of ``zeta``. The official VP code uses a constant ``zeta`` (0.3-1.0) on [-1, 1]
images. With ``x_VP = x_VE / sqrt(1 + s^2)`` (``s`` in [-1, 1] units) that update reads,
in VE form, ``zeta sqrt((1 + s_i^2)(1 + s_{i+1}^2)) grad`` on [-1, 1] images. Our images
are ``x = (x_pm + 1)/2`` and ``s = s_pm / 2``: the residual is halved
(``||r_pm|| = 2 ||r||``) and ``d/dx_pm = (1/2) d/dx``, so the gradient is unchanged,
``grad_pm = grad``, while a step of ``delta`` in [-1, 1] units is ``delta / 2`` here. Hence

    ``zeta_i = (zeta / 2) sqrt((1 + 4 s_i^2)(1 + 4 s_{i+1}^2))``   (``s`` in [0, 1] units),

and ``zeta`` keeps the meaning (and the typical values) of the official code's scale.
The measurement noise level plays no part in the update.

The last step has ``s_N = 0``: the ancestral step is noise-free (``x' = x0``) and the
guidance step is still taken, as the official code does at ``t = 0``. Each step costs
one forward and one backward pass through the denoiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..physics.base import LinearOperator
from .base import DiffusionSolver
from .streams import SolveStreams

__all__ = ["DPS", "dps_step_size"]


def dps_step_size(zeta: float, sigma: float, sigma_next: float) -> float:
    """``zeta_i`` in [0, 1] image units for the official [-1, 1]-scale ``zeta`` (module doc)."""
    return 0.5 * zeta * math.sqrt((1.0 + 4.0 * sigma**2) * (1.0 + 4.0 * sigma_next**2))


def residual_norms(operator: LinearOperator, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||y_b - A x0_b||`` for every sample ``b`` (complex measurements included): ``[B]``."""
    residual = y - operator.A(x0)
    return torch.linalg.vector_norm(residual.reshape(residual.shape[0], -1), dim=1)


class DPS(DiffusionSolver):
    """Diffusion Posterior Sampling with per-sample guidance norms.

    Args:
        denoiser, operator, steps, sigma_start: see :class:`DiffusionSolver`.
        zeta: the guidance scale on the official [-1, 1] scale (> 0); see the module doc
            for how it becomes the per-step size in [0, 1] units.
        **kwargs: ``sigma_max``, ``sigma_min``, ``rho``, ``clip_output``.
    """

    name = "dps"

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        operator: LinearOperator,
        steps: int,
        zeta: float,
        sigma_start: float | None = None,
        **kwargs,
    ):
        if not zeta > 0 or not math.isfinite(zeta):
            raise ValueError(f"dps: zeta must be a positive number, got {zeta}")
        super().__init__(denoiser, operator, steps, sigma_start=sigma_start, **kwargs)
        self.zeta = float(zeta)

    def step_sizes(self) -> list[float]:
        """``zeta_i`` of every step, in [0, 1] image units."""
        s = self.sigmas.tolist()
        return [dps_step_size(self.zeta, s[i], s[i + 1]) for i in range(self.steps)]

    def _run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        sigma_n: torch.Tensor,
        streams: SolveStreams,
        names: Sequence[Any] | None,
    ) -> tuple[torch.Tensor, int]:
        sigmas = self.sigmas.tolist()
        zetas = self.step_sizes()
        backward = 0
        for i in range(self.steps):
            s, s_next = sigmas[i], sigmas[i + 1]
            with torch.enable_grad():
                xi = x.detach().requires_grad_(True)
                x0 = self._denoise(xi, s, streams, i)
                # Sum of per-sample norms: its gradient w.r.t. x_i is per sample, because
                # the denoiser and the operator act on each sample alone.
                (grad,) = torch.autograd.grad(residual_norms(self.operator, x0, y).sum(), xi)
            backward += 1
            with torch.no_grad():
                x0 = x0.detach()
                self._check(x0, i, names)
                ratio = (s_next / s) ** 2
                x_next = x0 + ratio * (x - x0)
                if s_next > 0:
                    noise = self._noise(x, streams, i)
                    x_next = x_next + s_next * math.sqrt(1.0 - ratio) * noise
                x = x_next - zetas[i] * grad
                self._check(x, i, names)
        return x, backward

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, zeta={self.zeta})"
