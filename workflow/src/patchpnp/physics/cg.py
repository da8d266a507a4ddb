"""Batched conjugate gradients for the symmetric positive definite systems of the data steps.

A data step ``argmin ||y - A x||^2 + rho ||x - x0||^2`` has the normal equations
``(A^H A + rho I) x = A^H y + rho x0``. Where ``A^H A`` is diagonal in some basis
(denoising, single-coil MRI, circular SR) the prox is closed form; coil sensitivities
make multicoil MRI's dense, so it is solved iteratively. Every sample of the batch
runs its own CG (its own step lengths and ``rho``): samples stay independent.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real inner product per sample: ``[B]``."""
    return (a * b).reshape(a.shape[0], -1).sum(dim=1)


def conjugate_gradient(
    apply: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    x0: torch.Tensor,
    iters: int,
    tol: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``apply(x) = b`` for a real SPD ``apply`` acting per sample.

    Runs ``iters`` iterations (a sample whose relative residual ``||r|| / ||b||`` falls
    below ``tol`` stops moving). Returns ``(x, relative residual [B])``: the residual is
    what a log reports, so a too-small iteration count is visible.
    """
    if iters < 0:
        raise ValueError(f"CG iterations must be >= 0, got {iters}")
    shape = (-1,) + (1,) * (b.ndim - 1)
    x = x0.clone()
    r = b - apply(x)
    p = r.clone()
    rr = _dot(r, r)
    b_norm = _dot(b, b).sqrt().clamp_min(torch.finfo(b.dtype).tiny)
    for _ in range(iters):
        active = rr.sqrt() / b_norm > tol
        if not bool(active.any()):
            break
        ap = apply(p)
        pap = _dot(p, ap)
        alpha = torch.where(active & (pap > 0), rr / pap.clamp_min(torch.finfo(b.dtype).tiny), 0)
        x = x + alpha.reshape(shape) * p
        r = r - alpha.reshape(shape) * ap
        rr_new = _dot(r, r)
        beta = torch.where(active, rr_new / rr.clamp_min(torch.finfo(b.dtype).tiny), 0)
        p = r + beta.reshape(shape) * p
        rr = rr_new
    return x, rr.sqrt() / b_norm
