"""PaDIS's two solvers (Hu et al. 2024): annealed Langevin with a data term, in [0, 1] units.

docs/methods.md section 13. Both run ``steps`` noise levels ``s_0 > ... > s_{N-1}`` of the
EDM schedule (:func:`patchpnp.solvers.schedule.edm_sigmas`, rho 7; PaDIS's CT settings:
100 levels from 10 down to 0.003) and ``inner`` iterations per level (PaDIS: 10). Level
``i``, iteration ``j`` is step ``k = i * inner + j``: it calls the denoiser with the grid
stream of ``k`` (a fresh shift every iteration) and draws its noise ``z`` from the
solver stream of ``k``. NFE = ``steps * inner``.

**padis_dps** (:class:`PadisDPS`), ``alpha = s^2 / 2``. Start from the clamped
pseudo-inverse ``x = clamp(A^+ y, value_range)`` (:meth:`LinearOperator.init`: FBP for
CT, bicubic for SR, ``y`` for deblurring and denoising), with no noise added. Per
iteration, from the current ``x``:

    D = D01(x, s)                      (with autograd on x)
    g = grad_x ||y - A D||             (the norm, not its square; one norm per sample)
    x <- x - zeta g + (alpha / 2) (D - x) / s^2 + sqrt(alpha) z

i.e. ``x <- x - zeta g + (D - x) / 4 + (s / sqrt 2) z``. The score is that of the
iteration's starting ``x`` (PaDIS computes it before the data step and adds it after).
``zeta`` is a constant step in [0, 1] image units: ``g`` is a unit-free direction
scaled by the operator's gain ``||A^T r|| / ||r||``, so ``zeta`` depends on the
operator's normalisation (PaDIS's 0.3 belongs to its own CT operator) and is tuned.

**padis_langevin** (:class:`PadisLangevin`), ``alpha = s^2``. Start from pure noise
``x = s_0 z`` (the solver stream's initial draw). Per iteration, from the current ``x``:

    D = D01(x, s)                      (no autograd)
    r = y - A x
    x' = x + zeta min(40, 200 s) A^T r / ||r||       (one norm per sample)
    x <- x' + (alpha / 2) (D - x) / s^2 + sqrt(alpha) z

i.e. ``x <- x' + (D - x) / 2 + s z``, the score again that of the iteration's starting
``x``. ``s`` in ``min(40, 200 s)`` is in [0, 1] units, PaDIS's own (its images and its
network's sigma are on [0, 1]): the data step grows with the level up to ``s = 0.2``.

The last level (``s_{N-1} = sigma_min``) takes its ``inner`` iterations without the noise
term, the data step and the score step kept, as PaDIS does. The schedule's final 0 is
never a level: PaDIS loops over the pairs ``(s_i, s_{i+1})`` and uses only ``s_i``, so
no ``alpha = 0`` (or division by ``0^2``) arises. The estimate is the final state.

Differences from PaDIS's code (``inverse_nodist.py``), all deliberate:

- one residual norm per sample (PaDIS solves one image at a time, its norm is over
  the batch); a zero residual gives a zero data step instead of a division by zero;
- the state is the image only. PaDIS keeps a zero-padded canvas as its state and lets
  the margin evolve (the denoiser returns 0 there, so it relaxes towards noise around
  0); here the shifted-grid wrapper fills the margin at every call, with zeros plus
  fresh noise at the call's level for ``'zeros'`` padding (or reflection), from the
  grid stream. The data term acts on the image in both.
- its ``dps`` also draws ``sigma_max z`` first and then overwrites it with the
  pseudo-inverse (dead code): the start carries no noise, as here. It draws ``z`` at
  the last level without using it; here no draw is made.
- PaDIS's DPS sets no step size per level; ``zeta`` here is that constant, not the
  level-dependent step of :mod:`patchpnp.solvers.dps`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..physics.base import LinearOperator
from .base import DiffusionSolver, per_sample_noise
from .dps import data_gradient, inverse_norms, sample_norms
from .streams import INIT_STEP, SolveStreams

__all__ = ["PadisDPS", "PadisLangevin", "normalised_data_direction"]

# PaDIS's Langevin data step size, zeta * min(CAP, SLOPE * s), with s in [0, 1] units.
LANGEVIN_CAP = 40.0
LANGEVIN_SLOPE = 200.0


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(device=like.device, dtype=like.real.dtype).reshape(
        -1, *([1] * (like.ndim - 1))
    )


def normalised_data_direction(
    operator: LinearOperator, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """``A^T (y - A x) / ||y - A x||`` per sample; 0 for a sample whose residual is 0."""
    residual = y - operator.A(x)
    scale = inverse_norms(sample_norms(residual))
    direction = operator.A_adjoint(residual)
    if direction.is_complex() and not x.is_complex():
        direction = direction.real
    return direction * _per_sample(scale, direction)


def _is_number(value: Any) -> bool:
    """A real number (a bool, a string or None is not)."""
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, (str, bytes))


class _PadisSolver(DiffusionSolver):
    """What PaDIS's two solvers share: ``inner`` iterations per level, keyed per iteration."""

    # alpha = ALPHA * s^2
    ALPHA = 1.0

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        operator: LinearOperator,
        steps: int,
        zeta: float,
        inner: int = 10,
        sigma_start: float | None = None,
        **kwargs,
    ):
        if not _is_number(zeta) or not float(zeta) > 0 or not math.isfinite(float(zeta)):
            raise ValueError(f"{self.name}: zeta must be a positive number, got {zeta!r}")
        if (
            not _is_number(inner)
            or not math.isfinite(float(inner))
            or int(inner) != inner
            or inner < 1
        ):
            raise ValueError(
                f"{self.name}: inner (iterations per level) must be an integer >= 1, got {inner!r}"
            )
        super().__init__(denoiser, operator, steps, sigma_start=sigma_start, **kwargs)
        self.zeta = float(zeta)
        self.inner = int(inner)

    @property
    def nfe(self) -> int:
        """Denoiser calls per image: ``steps * inner``."""
        return self.steps * self.inner

    def step_index(self, level: int, iteration: int) -> int:
        """The stream step of iteration ``iteration`` of level ``level``."""
        return level * self.inner + iteration

    def solve(
        self,
        y: torch.Tensor,
        sigma_n: float | torch.Tensor,
        streams: SolveStreams,
        names: Sequence[Any] | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """See :meth:`DiffusionSolver.solve`; ``info['nfe']`` is ``steps * inner`` (``steps``
        stays the number of levels) and ``info['inner']`` the iterations per level."""
        x_hat, info = super().solve(y, sigma_n, streams, names)
        info["nfe"] = self.nfe
        info["inner"] = self.inner
        return x_hat, info

    def _pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """``clamp(A^+ y, value_range)`` (no clamp for images without a range)."""
        x_init = self.operator.init(y)
        if x_init.is_complex():
            x_init = x_init.real
        value_range = self.operator.value_range
        if value_range is not None:
            x_init = x_init.clamp(*value_range)
        return x_init

    def _iterate(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        sigma: float,
        step: int,
        last: bool,
        streams: SolveStreams,
        level: int,
        names: Sequence[Any] | None,
    ) -> tuple[torch.Tensor, int]:
        """One iteration at level ``level`` (noise level ``sigma``, stream step ``step``):
        the new state and the backward passes it took."""
        raise NotImplementedError

    def _prior_step(
        self,
        x: torch.Tensor,
        x_start: torch.Tensor,
        denoised: torch.Tensor,
        sigma: float,
        step: int,
        last: bool,
        streams: SolveStreams,
    ) -> torch.Tensor:
        """``x + (alpha/2) (D - x_start) / s^2 + sqrt(alpha) z`` (no ``z`` at the last level)."""
        alpha = self.ALPHA * sigma**2
        x = x + (0.5 * alpha) * ((denoised - x_start) / sigma**2)
        if not last:
            x = x + math.sqrt(alpha) * self._noise(x_start, streams, step)
        return x

    def _run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        sigma_n: torch.Tensor,
        streams: SolveStreams,
        names: Sequence[Any] | None,
    ) -> tuple[torch.Tensor, int]:
        sigmas = self.sigmas.tolist()
        backward = 0
        for level in range(self.steps):
            s, last = sigmas[level], level == self.steps - 1
            for j in range(self.inner):
                x, b = self._iterate(
                    x, y, s, self.step_index(level, j), last, streams, level, names
                )
                backward += b
                self._check(x, level, names)
        return x, backward

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, zeta={self.zeta}, inner={self.inner})"


class PadisDPS(_PadisSolver):
    """PaDIS's DPS: Langevin iterations from the clamped pseudo-inverse, with a gradient
    step on ``||y - A D(x)||`` through the denoiser (module doc).

    Args:
        denoiser, operator, steps, sigma_start: see :class:`DiffusionSolver`; ``steps`` is
            the number of levels, ``sigma_start`` the top level (PaDIS's CT: 10).
        zeta: the data step (> 0), constant, in [0, 1] image units.
        inner: iterations per level (an integer >= 1; PaDIS: 10).
        **kwargs: ``sigma_max``, ``sigma_min``, ``rho``, ``clip_output``.
    """

    name = "padis_dps"
    ALPHA = 0.5

    def initial_state(
        self, y: torch.Tensor, sigma_n: torch.Tensor, streams: SolveStreams
    ) -> torch.Tensor:
        """The clamped pseudo-inverse, with no noise added (PaDIS's start)."""
        with torch.no_grad():
            return self._pseudo_inverse(y)

    def _iterate(self, x, y, sigma, step, last, streams, level, names):
        denoised, grad = data_gradient(
            self.denoiser, self.operator, x, y, sigma, streams.grid(step)
        )
        with torch.no_grad():
            self._check(denoised, level, names)
            moved = x - self.zeta * grad
            return self._prior_step(moved, x, denoised, sigma, step, last, streams), 1


class PadisLangevin(_PadisSolver):
    """PaDIS's Langevin: annealed Langevin from pure noise, with a normalised gradient
    step on ``||y - A x||`` on the state itself (module doc).

    Args:
        denoiser, operator, steps, sigma_start: see :class:`DiffusionSolver`; ``steps`` is
            the number of levels, ``sigma_start`` the top level and the start's noise.
        zeta: the data step's scale (> 0): the step is ``zeta min(40, 200 s)`` along
            ``A^T r / ||r||``, ``s`` in [0, 1] units.
        inner: iterations per level (an integer >= 1; PaDIS: 10).
        **kwargs: ``sigma_max``, ``sigma_min``, ``rho``, ``clip_output``.
    """

    name = "padis_langevin"
    ALPHA = 1.0

    def data_step_size(self, sigma: float) -> float:
        """``zeta min(40, 200 s)`` (``s`` in [0, 1] units)."""
        return self.zeta * min(LANGEVIN_CAP, LANGEVIN_SLOPE * sigma)

    def initial_state(
        self, y: torch.Tensor, sigma_n: torch.Tensor, streams: SolveStreams
    ) -> torch.Tensor:
        """Pure noise at the top level, ``s_0 z`` (the solver stream's initial draw)."""
        with torch.no_grad():
            like = self._pseudo_inverse(y)  # only its shape, device and dtype
            return float(self.sigmas[0]) * per_sample_noise(like, streams.solver(INIT_STEP))

    def _iterate(self, x, y, sigma, step, last, streams, level, names):
        with torch.no_grad():
            denoised = self._denoise(x, sigma, streams, step)
            self._check(denoised, level, names)
            direction = normalised_data_direction(self.operator, x, y)
            moved = x + self.data_step_size(sigma) * direction
            return self._prior_step(moved, x, denoised, sigma, step, last, streams), 0
