"""Gaussian denoising: ``A = I``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import LinearOperator, as_batch_weight, per_sample_shape


class Denoising(LinearOperator):
    """The identity forward model; the inverse problem is pure Gaussian denoising."""

    pixel_local = True

    def A(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def prox(self, x0: torch.Tensor, y: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
        # Setting the gradient of ||y - x||^2 + rho ||x - x0||^2 to zero.
        rho = as_batch_weight(rho, x0)
        return (y + rho * x0) / (1.0 + rho)

    def num_measurements(self, x_shape: Sequence[int]) -> int:
        c, h, w = per_sample_shape(x_shape)
        return c * h * w

    def init(self, y: torch.Tensor) -> torch.Tensor:
        return y

    def init_noise_level(self, sigma_n: torch.Tensor) -> torch.Tensor:
        """``y`` itself: it carries the measurement noise."""
        return torch.as_tensor(sigma_n, dtype=torch.float64).clone()
