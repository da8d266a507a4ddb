"""DiffPIR (Zhu et al. 2023) in EDM sigma form, in [0, 1] image units.

Per step ``i`` (docs/methods.md section 6), with ``s_i`` the noise level:

1. ``x0 = D01(x_i, s_i)`` (no autograd);
2. data step ``x0_hat = prox(x0, y, rho_i) = argmin ||y - A x||^2 + rho_i ||x - x0||^2`` with
   ``rho_i = lam sigma_n^2 / s_i^2``, skipped at the last step (``x0_hat = x0``);
3. ``eps = (x_i - x0_hat) / s_i``;
4. ``x_{i+1} = x0_hat + s_{i+1} (sqrt(1 - zeta) eps + sqrt(zeta) z)``.

The estimate returned is the last step's ``x0_hat``, i.e. the final denoised image.

Units: ``sigma_n`` and ``s_i`` are both in [0, 1] units, so ``rho_i`` is unit-free and
``lam`` is consistent. The official code mixes units: its ``rho = lambda sigma_n^2 /
sigma_k^2`` takes ``sigma_n`` in [0, 1] units but ``sigma_k = 2 s`` in [-1, 1] units, and
solves the same ``argmin ||y - A x||^2 + rho ||x - x0||^2``, so the same algorithm needs
its ``lambda`` 4 times ours (``lam_official = 4 lam``). deepinv's ``DiffPIR`` (with its
default ``L2()`` data fidelity, ``f = ||Ax - y||^2 / 2``) calls ``prox(gamma = 1 / (2 rho))``,
an effective weight ``2 rho``: its ``lambda_`` is half the official one, i.e. twice ours
(``lambda_deepinv = 2 lam``; :mod:`patchpnp.tools.crosscheck` checks this against deepinv's own
code). ``rho_i`` is per sample when ``sigma_n`` is. ``sigma_n = 0`` would make ``rho_i = 0``:
the prox then degenerates into an unregularised least-squares solve (singular for SR or
MRI, where ``A^T A`` is not invertible), so it is rejected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..physics.base import LinearOperator
from .base import DiffusionSolver
from .streams import SolveStreams

__all__ = ["DiffPIR"]


class DiffPIR(DiffusionSolver):
    """DiffPIR: denoiser step, closed-form data step, partial re-noising.

    Args:
        denoiser, operator, steps, sigma_start: see :class:`DiffusionSolver`.
        lam: the data-step weight ``lambda`` (> 0), in consistent [0, 1] units.
        zeta: the share of fresh noise in the re-noising, in [0, 1].
        **kwargs: ``sigma_max``, ``sigma_min``, ``rho``, ``clip_output``.
    """

    name = "diffpir"

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        operator: LinearOperator,
        steps: int,
        lam: float,
        zeta: float,
        sigma_start: float | None = None,
        **kwargs,
    ):
        if not lam > 0 or not math.isfinite(lam):
            raise ValueError(f"diffpir: lam must be a positive number, got {lam}")
        if not 0.0 <= zeta <= 1.0:
            raise ValueError(f"diffpir: zeta must lie in [0, 1], got {zeta}")
        super().__init__(denoiser, operator, steps, sigma_start=sigma_start, **kwargs)
        self.lam = float(lam)
        self.zeta = float(zeta)

    def _check_sigma_n(self, sigma_n: torch.Tensor) -> None:
        if not bool((sigma_n > 0).all()):
            raise ValueError(
                f"diffpir: sigma_n must be > 0, got {sigma_n.tolist()}: the data-step weight "
                f"rho = lam * sigma_n^2 / s^2 would be 0 and the prox would degenerate into an "
                f"unregularised (for SR / MRI singular) least-squares solve"
            )

    def _run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        sigma_n: torch.Tensor,
        streams: SolveStreams,
        names: Sequence[Any] | None,
    ) -> tuple[torch.Tensor, int]:
        sigmas = self.sigmas.tolist()
        keep, fresh = math.sqrt(1.0 - self.zeta), math.sqrt(self.zeta)
        last = self.steps - 1
        # Nothing in DiffPIR's loop is differentiated: inference mode also skips
        # autograd's version counters (measured neutral on the demo's CPU calls).
        with torch.inference_mode():
            for i in range(last):
                s, s_next = sigmas[i], sigmas[i + 1]
                x0 = self._denoise(x, s, streams, i)
                self._check(x0, i, names)
                rho = self.lam * sigma_n**2 / s**2  # [B]: one data weight per sample
                x0_hat = self.operator.prox(x0, y, rho)
                eps = (x - x0_hat) / s
                x = x0_hat + s_next * (keep * eps + fresh * self._noise(x, streams, i))
                self._check(x, i, names)
            # Last step: no data step, no re-noising; the denoised image is the estimate.
            x0 = self._denoise(x, sigmas[last], streams, last)
            self._check(x0, last, names)
        return x0, 0

    def __repr__(self) -> str:
        return f"{super().__repr__()[:-1]}, lam={self.lam}, zeta={self.zeta})"
