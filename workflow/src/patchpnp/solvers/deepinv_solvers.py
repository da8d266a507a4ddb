"""deepinv's posterior-sampling solvers behind our solver interface (docs/methods.md section 12).

deepinv 0.5 builds DPS, PiGDM and ILVR as one :class:`deepinv.sampling.PosteriorDiffusion`:
a reverse SDE whose score is the prior's (Tweedie, from the denoiser) minus a noisy data
term (``DPSDataFidelity``, ``PiGDMDataFidelity``, ``ILVRDataFidelity``). Here that code
runs unmodified on three things of ours, so that a deepinv cell differs from our own
only in the data term:

- **Levels.** The SDE is EDM's variance-exploding one with ``sigma(t) = t`` in the
  [-1, 1] units of deepinv's state (``PosteriorDiffusion(minus_one_one=True)`` carries
  ``2 x - 1``), and the time steps are twice our EDM levels ``s_0 > ... > s_{N-1} > 0``
  (:func:`patchpnp.solvers.edm_sigmas`, with ``sigma_start``). Its ancestral solver with
  ``eta = 1`` is DDPM's sampler; the last step, to ``sigma = 0``, returns the guided
  denoised estimate. So ``steps`` is the number of denoiser calls, as for ours.
- **Initial state.** Ours (:meth:`DiffusionSolver.initial_state`): the operator's
  initial guess at total noise ``s_0``, from the image's keyed stream.
- **Random numbers.** Every draw is keyed (:mod:`patchpnp.solvers.streams`): the
  ancestral noise of step ``i`` from ``streams.solver(i)``, ILVR's re-noised
  measurement from ``streams.generators("guidance", i)``, the patch wrapper's grid
  from ``streams.grid(i)``. Cells differing only in prior, size or padding are paired.

deepinv's DPS weight. Its ``"norm"`` guidance adds ``weight * grad ||A D(x) - y||`` to
the score, so a step moves the state by ``(s_i^2 - s_{i+1}^2) * weight * grad``: the
original DPS (and ours) moves ``zeta * grad`` per step whatever the level. deepinv's
default ``weight = 1`` is therefore ``(s_i^2 - s_{i+1}^2)`` times weaker than the
original's ``zeta = 1`` (its docstring: the weight "has to absorb a factor of order
``||y - A D|| / sigma_y^2``, typically in the hundreds"); untuned, DPS barely follows
the measurement. That is why the README's deepinv DPS at weight 1 reached 11-13 dB,
and why every weight here is tuned on the tuning slices.

PiGDM's vector-Jacobian product goes through ``torch.autograd`` here (deepinv's uses
``torch.func.vjp``, which cannot enter the patch wrapper's memory-bounded backward,
an ``autograd.Function``): the same product, and the tile micro-batches bound its memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import deepinv as dinv
import torch
from torch import nn

from ..physics.base import LinearOperator
from .base import DiffusionSolver, SolverDenoiser, per_sample_noise
from .deepinv_export import per_sample_sigma
from .streams import SolveStreams

__all__ = ["DEEPINV_SOLVERS", "DeepinvPosterior", "operator_physics", "pigdm_r_t2"]


def _prox_weight(gamma, like: torch.Tensor):
    """deepinv's prox step ``gamma`` (``argmin gamma/2 ||Ax - y||^2 + ||x - z||^2 / 2``) as
    our weight ``rho = 1 / gamma`` (``argmin ||Ax - y||^2 + rho ||x - z||^2``): a float, or
    one value per sample."""
    g = torch.as_tensor(gamma, dtype=torch.float64)
    if g.numel() == 1:
        return 1.0 / float(g)
    if g.numel() == like.shape[0]:
        return 1.0 / g.reshape(-1)
    raise ValueError(f"gamma must be one value or one per sample, got shape {tuple(g.shape)}")


def operator_physics(operator: LinearOperator, sigma_n: float) -> dinv.physics.LinearPhysics:
    """Our operator as a ``deepinv.physics.LinearPhysics``: our ``A``, ``A^T`` and prox
    (``prox_l2(z, y, gamma)`` is our closed-form ``prox(z, y, rho = 1 / gamma)``), and
    deepinv's ``GaussianNoise(sigma_n)``, where DiffPIR and the noisy data terms read the
    measurement noise. The cross-check (:mod:`patchpnp.tools.crosscheck`) uses it too."""

    class OperatorPhysics(dinv.physics.LinearPhysics):
        def __init__(self):
            super().__init__(noise_model=dinv.physics.GaussianNoise(sigma=float(sigma_n)))

        def A(self, x, *args, **kwargs):
            return operator.A(x)

        def A_adjoint(self, y, *args, **kwargs):
            return operator.A_adjoint(y)

        def prox_l2(self, z, y, gamma, *args, **kwargs):
            return operator.prox(z, y, _prox_weight(gamma, z))

    return OperatorPhysics()


class _KeyedDenoiser(nn.Module):
    """The denoiser as deepinv calls it, ``model(x, sigma)``, with the grid stream of the
    current step for a patch wrapper (``streams`` and ``step`` set by the solver)."""

    def __init__(self, denoiser: SolverDenoiser):
        super().__init__()
        self.adapter = denoiser
        self.streams: SolveStreams | None = None
        self.step = 0

    def forward(self, x: torch.Tensor, sigma, *args, **kwargs) -> torch.Tensor:
        return self.adapter(x, per_sample_sigma(sigma, x), self.streams.grid(self.step))


class _KeyedAncestral(dinv.sampling.AncestralSolver):
    """deepinv's ancestral (DDPM, ``eta = 1``) step; its noise from the keyed streams,
    and the step counter the denoiser and the data term read."""

    def __init__(self, timesteps: torch.Tensor, denoiser: _KeyedDenoiser):
        super().__init__(timesteps=timesteps, eta=1.0)
        self.keyed = denoiser

    def step(self, sde, t0, t1, x0, *args, **kwargs):
        x1, nfe = super().step(sde, t0, t1, x0, *args, **kwargs)
        self.keyed.step += 1
        return x1, nfe

    def randn_like(self, input: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        return per_sample_noise(input, self.keyed.streams.solver(self.keyed.step))


class _AutogradPiGDM(dinv.sampling.PiGDMDataFidelity):
    """PiGDM's data term with its vector-Jacobian product taken by ``torch.autograd``, and
    its covariance ``r_t^2`` in PiGDM's own units.

    PiGDM sets ``r_t^2 = s^2 / (1 + s^2)`` for data in [-1, 1] (unit prior variance), ``s``
    the level in those units. ``PosteriorDiffusion`` hands its data term the state and the
    level in [0, 1] units (``sigma = s / 2``), and deepinv 0.5 applies the formula to that
    ``sigma`` as it comes, which makes ``r_t^2`` up to 4 times too large relative to the
    measurement noise (by ``(1 + 4 sigma^2) / (1 + sigma^2)``: 1.6 at ``sigma = 0.5``, the
    demo's start, and nearly 1 at its last levels). Here
    the [-1, 1] formula is expressed in [0, 1] units: ``r_t^2 / 4 = sigma^2 / (1 + 4
    sigma^2)``, the [0, 1] image's variance of the same Gaussian.
    """

    def grad(self, x, y, physics, sigma, *args, get_model_outputs=False, **kwargs):
        sigma_y = physics.noise_model.sigma
        with torch.enable_grad():
            xg = x.detach().to(torch.float32).requires_grad_(True)
            denoised = self.denoiser(xg, sigma)
            difference = physics.A(denoised.detach()) - y.to(denoised.dtype)
            r_t2 = pigdm_r_t2(sigma)
            inverse = self.solve_inverse(physics, difference, r_t2, sigma_y)
            adjoint = physics.A_adjoint(inverse).to(denoised.dtype)
            (gradient,) = torch.autograd.grad(denoised, xg, grad_outputs=adjoint)
        gradient = (self.weight * gradient).to(x.dtype)
        return (gradient, denoised.detach()) if get_model_outputs else gradient


def pigdm_r_t2(sigma):
    """PiGDM's ``r_t^2`` for a level ``sigma`` in [0, 1] units, in [0, 1] units: the
    [-1, 1] convention's ``s^2 / (1 + s^2)`` at ``s = 2 sigma``, divided by 4."""
    return sigma**2 / (1.0 + 4.0 * sigma**2)


class _KeyedILVR(dinv.sampling.ILVRDataFidelity):
    """ILVR's data term; its re-noised measurement drawn from the keyed ``guidance`` stream."""

    def __init__(self, weight: float, denoiser: _KeyedDenoiser):
        super().__init__(weight=weight)
        self.keyed = denoiser

    def _noised_measurements(self, y: torch.Tensor, sigma) -> torch.Tensor:
        step = self.keyed.step
        noise = per_sample_noise(y, self.keyed.streams.generators("guidance", step))
        sigma_t = dinv.models.Denoiser._handle_sigma(sigma, reference_tensor=y)
        return y + sigma_t * noise.to(y.dtype)


class DeepinvPosterior(DiffusionSolver):
    """A deepinv ``PosteriorDiffusion`` on our levels, initial state and keyed streams.

    Args:
        denoiser, operator, steps, sigma_start: see :class:`DiffusionSolver`.
        weight: the data term's ``weight`` (deepinv's ``lambda``), > 0: tuned per task.
    """

    name = "deepinv"
    backward_per_step = True

    def __init__(
        self,
        denoiser,
        operator: LinearOperator,
        steps: int,
        weight: float,
        sigma_start: float | None = None,
        **kwargs,
    ):
        super().__init__(denoiser, operator, steps, sigma_start, **kwargs)
        if not float(weight) > 0:
            raise ValueError(f"{self.name}: weight must be > 0, got {weight}")
        self.weight = float(weight)

    def _fidelity(self, keyed: _KeyedDenoiser):
        raise NotImplementedError

    def _run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        sigma_n: torch.Tensor,
        streams: SolveStreams,
        names: Sequence[Any] | None,
    ) -> tuple[torch.Tensor, int]:
        if bool((sigma_n != sigma_n[0]).any()):
            raise ValueError(f"{self.name}: deepinv's physics takes one sigma_n per batch")
        keyed = _KeyedDenoiser(self.denoiser)
        keyed.streams, keyed.step = streams, 0
        fidelity = self._fidelity(keyed)
        levels = 2.0 * self.sigmas.to(torch.float64)  # [-1, 1] state units, ending at 0
        sde = dinv.sampling.EDMDiffusionSDE(
            sigma_t=lambda t: t,
            sigma_prime_t=torch.ones_like,
            variance_exploding=True,
            T=float(levels[0]),
            device=x.device,
        )
        model = dinv.sampling.PosteriorDiffusion(
            data_fidelity=fidelity,
            denoiser=keyed,
            sde=sde,
            solver=_KeyedAncestral(levels, keyed),
            device=x.device,
        )
        physics = operator_physics(self.operator, float(sigma_n[0]))
        state = (2.0 * x - 1.0).to(torch.float64)
        out = model(y, physics, x_init=state, timesteps=levels, denoise_output=False)
        out = out.to(x.dtype)
        self._check(out, self.steps - 1, names)
        return out, self.steps if self.backward_per_step else 0


class DeepinvDPS(DeepinvPosterior):
    """deepinv's DPS data term (``DPSDataFidelity``, the residual norm, ``"norm"`` guidance)."""

    name = "dinv_dps"

    def _fidelity(self, keyed):
        return dinv.sampling.DPSDataFidelity(denoiser=keyed, weight=self.weight)


class DeepinvPiGDM(DeepinvPosterior):
    """deepinv's pseudoinverse-guided data term (``PiGDMDataFidelity``)."""

    name = "dinv_pigdm"

    def _fidelity(self, keyed):
        return _AutogradPiGDM(denoiser=keyed, weight=self.weight)


class DeepinvILVR(DeepinvPosterior):
    """deepinv's ILVR data term: ``A^+ (A x_t - y_t)``, no gradient through the network."""

    name = "dinv_ilvr"
    backward_per_step = False

    def _fidelity(self, keyed):
        return _KeyedILVR(self.weight, keyed)


DEEPINV_SOLVERS: dict[str, type[DeepinvPosterior]] = {
    cls.name: cls for cls in (DeepinvDPS, DeepinvPiGDM, DeepinvILVR)
}
