"""Diffusion Posterior Sampling (Chung et al. 2023) in EDM sigma form, in [0, 1] image units.

Per step ``i`` (docs/methods.md section 6), with ``s_i`` the noise level:

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
one forward and one backward pass through the denoiser (:func:`data_gradient`: with
shifted-grid tiles and a pixel-local operator in one pass, else the wrapper recomputes
each tile for the backward).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..physics.base import LinearOperator
from .base import DiffusionSolver, SolverDenoiser
from .streams import SolveStreams

__all__ = ["DPS", "data_gradient", "dps_step_size"]


def dps_step_size(zeta: float, sigma: float, sigma_next: float) -> float:
    """``zeta_i`` in [0, 1] image units for the official [-1, 1]-scale ``zeta`` (module doc)."""
    return 0.5 * zeta * math.sqrt((1.0 + 4.0 * sigma**2) * (1.0 + 4.0 * sigma_next**2))


def residual_norms(operator: LinearOperator, x0: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||y_b - A x0_b||`` for every sample ``b`` (complex measurements included): ``[B]``."""
    return sample_norms(y - operator.A(x0))


def sample_norms(residual: torch.Tensor) -> torch.Tensor:
    """The norm of each sample of ``residual`` (``[B, ...]``): ``[B]``."""
    return torch.linalg.vector_norm(residual.reshape(residual.shape[0], -1), dim=1)


def inverse_norms(norms: torch.Tensor) -> torch.Tensor:
    """``1 / norms``, 0 where a norm is 0: a zero residual has zero gradient, as autograd
    of the norm gives there."""
    return torch.where(norms > 0, 1.0 / norms.clamp_min(torch.finfo(norms.dtype).tiny), 0.0)


def data_gradient(
    denoiser: SolverDenoiser,
    operator: LinearOperator,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    generators: Sequence[torch.Generator],
) -> tuple[torch.Tensor, torch.Tensor]:
    """DPS's data term at one step: ``x0 = D(x)`` and ``grad_x sum_b ||y_b - A x0_b||``.

    The gradient is ``J^T A^T (A x0 - y) / ||y - A x0||`` per sample. For a pixel-local
    operator (``operator.pixel_local``: denoising) the unnormalised cotangent
    ``A^T (A x0 - y)`` of a tile needs only that tile's output, so the patch wrapper
    takes the product in one pass (:meth:`SolverDenoiser.local_vjp`); the vector-Jacobian
    product is linear, so the per-sample ``1 / ||y - A x0||`` is applied after it, once
    the whole ``x0`` is known. Any other operator differentiates the norm by autograd,
    through the wrapper's recomputing backward when it tiles.
    """
    if operator.pixel_local:

        def cotangent(values: torch.Tensor, b: int, rows: slice, cols: slice) -> torch.Tensor:
            return operator.normal_residual(values[None], y[b : b + 1, :, rows, cols])[0]

        x0, product = denoiser.local_vjp(x, sigma, generators, cotangent)
        scale = inverse_norms(residual_norms(operator, x0, y))
        return x0, product * scale.reshape(-1, *([1] * (product.ndim - 1)))
    with torch.enable_grad():
        xi = x.detach().requires_grad_(True)
        x0 = denoiser(xi, sigma, generators)
        # Sum of per-sample norms: its gradient w.r.t. x_i is per sample, because the
        # denoiser and the operator act on each sample alone.
        (grad,) = torch.autograd.grad(residual_norms(operator, x0, y).sum(), xi)
    return x0.detach(), grad


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
            x0, grad = data_gradient(self.denoiser, self.operator, x, y, s, streams.grid(i))
            backward += 1
            with torch.no_grad():
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
