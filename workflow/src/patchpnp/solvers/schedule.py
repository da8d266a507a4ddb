"""The EDM noise-level schedule (Karras et al. 2022, ``rho = 7``) in [0, 1] image units.

docs/methods.md section 6: ``s_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho``
with ``s_max = 40`` and ``s_min = 0.001`` in [0, 1] units (EDM's 80 / 0.002 in network
units, where every sigma is twice the image-space one).
"""

from __future__ import annotations

import torch

__all__ = ["edm_sigmas"]


def edm_sigmas(
    steps: int,
    sigma_max: float = 40.0,
    sigma_min: float = 0.001,
    rho: float = 7.0,
    sigma_start: float | None = None,
) -> torch.Tensor:
    """``steps`` decreasing noise levels from the top level down to ``sigma_min``, then a final 0.

    Returns a float64 tensor of length ``steps + 1``: ``s_0 > s_1 > ... > s_{N-1} = sigma_min``
    and ``s_N = 0`` (with ``steps == 1`` the single level is the top one).

    ``sigma_start`` (``sigma_min < sigma_start <= sigma_max``) starts the solver lower,
    from a noised initial guess. **Choice:** the rho formula is re-applied with
    ``sigma_start`` as its maximum, so the solver still takes ``steps`` denoiser calls,
    all spent between ``sigma_start`` and ``sigma_min`` with EDM's spacing (dense at low
    noise). The alternative, cutting the full ``sigma_max`` schedule at ``sigma_start``,
    would make the number of steps (the cost) depend on ``sigma_start``.
    """
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if not 0 < sigma_min < sigma_max:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min} and {sigma_max}")
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho}")
    top = float(sigma_max)
    if sigma_start is not None:
        if not sigma_min < sigma_start <= sigma_max:
            raise ValueError(
                f"sigma_start must lie in (sigma_min, sigma_max] = ({sigma_min}, {sigma_max}], "
                f"got {sigma_start}"
            )
        top = float(sigma_start)
    steps = int(steps)
    if steps == 1:
        levels = torch.tensor([top], dtype=torch.float64)
    else:
        ramp = torch.arange(steps, dtype=torch.float64) / (steps - 1)
        hi, lo = top ** (1.0 / rho), float(sigma_min) ** (1.0 / rho)
        levels = (hi + ramp * (lo - hi)) ** rho
        # Pin the endpoints exactly (the power round-trip is off by an ulp or so).
        levels[0], levels[-1] = top, float(sigma_min)
    return torch.cat([levels, levels.new_zeros(1)])
