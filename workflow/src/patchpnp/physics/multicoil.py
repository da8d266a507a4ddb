"""Multicoil Cartesian MRI: ``y_c = M F S_c x + n`` (docs/methods.md section 11).

``x`` is a complex image carried as a real 2-channel image ``[B, 2, H, W]`` (real,
imaginary), so the solvers, the priors and the patch wrapper see a real tensor.
``S`` are the coil maps of each image ``[B, C, H, W]`` (ESPIRiT, from the data),
``F`` the centred orthonormal 2D FFT and ``M`` a fastMRI line mask over the
phase-encode columns (the last axis). Measurements are complex ``[B, C, H, W]``,
zero where the mask does not sample.

The operator is bound to one batch's coil maps; a new batch builds a new operator.
Its data step has no closed form (``S^H S`` couples
coils and ``M`` couples pixels), so :meth:`prox` runs conjugate gradients, a fixed
number of iterations, and keeps the last relative residuals for the log.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .base import GeneratorLike, LinearOperator, randn_like_batch
from .mri import MASK_TYPES, fft2c, ifft2c, line_mask


def to_complex(x: torch.Tensor) -> torch.Tensor:
    """``[B, 2, H, W]`` real (real, imaginary) -> ``[B, H, W]`` complex."""
    if x.is_complex() or x.ndim != 4 or x.shape[1] != 2:
        raise ValueError(
            f"expected a real 2-channel image [B, 2, H, W], got {x.dtype} {tuple(x.shape)}"
        )
    return torch.complex(x[:, 0], x[:, 1])


def to_channels(z: torch.Tensor) -> torch.Tensor:
    """``[B, H, W]`` complex -> ``[B, 2, H, W]`` real: the inverse of :func:`to_complex`."""
    return torch.stack([z.real, z.imag], dim=1)


class MulticoilMRI(LinearOperator):
    """``y = M F S x`` for complex images ``x`` (as 2 channels) and coil maps ``S``.

    Args:
        maps: coil sensitivities, complex ``[B, C, H, W]``.
        acceleration, center_fraction, mask, seed: the line mask
            (:func:`patchpnp.physics.mri.fastmri_line_mask`). ``seed`` may hold one
            value per image, giving each image its own random mask (fastMRI draws a
            random mask per volume); an equispaced mask is one fixed mask either way.
        cg_iters: conjugate-gradient iterations of the data step (:meth:`prox`).
    """

    # Complex images have no [0, 1] range: solvers must not clamp them.
    value_range = None

    def __init__(
        self,
        maps: torch.Tensor,
        acceleration: float = 4,
        center_fraction: float = 0.08,
        mask: str = "equispaced",
        seed: int | Sequence[int] = 0,
        cg_iters: int = 10,
    ):
        if mask not in MASK_TYPES:
            raise ValueError(f"unknown MRI mask {mask!r}; valid: {list(MASK_TYPES)}")
        if not maps.is_complex() or maps.ndim != 4:
            raise ValueError(
                f"coil maps must be complex [B, C, H, W], got {maps.dtype} {tuple(maps.shape)}"
            )
        if int(cg_iters) < 1:
            raise ValueError(f"cg_iters must be >= 1, got {cg_iters}")
        self.maps = maps
        self.acceleration = float(acceleration)
        self.center_fraction = float(center_fraction)
        self.mask_type = mask
        self.cg_iters = int(cg_iters)
        width = maps.shape[-1]
        if isinstance(seed, int | np.integer):
            self.seed = int(seed)
        else:
            self.seed = [int(s) for s in seed]
            if len(self.seed) != maps.shape[0]:
                raise ValueError(f"{len(self.seed)} mask seeds for {maps.shape[0]} images")
        if mask == "random" and isinstance(self.seed, list):
            # [B, W]: one mask per image, broadcast over coils and rows as [B, 1, 1, W]
            self.lines = torch.stack(
                [line_mask(width, acceleration, center_fraction, mask, s, symmetric=False)
                 for s in self.seed]
            )  # fmt: skip
            self._mask = self.lines[:, None, None, :]
        else:
            first = self.seed if isinstance(self.seed, int) else self.seed[0]
            self.lines = line_mask(
                width, acceleration, center_fraction, mask, first, symmetric=False
            )
            self._mask = self.lines
        self._mask = self._mask.to(device=maps.device, dtype=maps.real.dtype)
        # The CG relative residuals of the last data step, and the largest of every
        # data step so far (per image): what a cell logs and records.
        self.last_residual: torch.Tensor | None = None
        self.worst_residual = torch.zeros(maps.shape[0], dtype=torch.float64)

    def undersample(self, kspace: torch.Tensor) -> torch.Tensor:
        """Retrospective undersampling of fully sampled k-space ``[B, C, H, W]``: ``M k``."""
        return self._mask * kspace

    def A(self, x: torch.Tensor) -> torch.Tensor:
        z = to_complex(x).to(self.maps.dtype)
        return self._mask * fft2c(self.maps * z[:, None])

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        z = (self.maps.conj() * ifft2c(self._mask * y)).sum(dim=1)
        return to_channels(z)

    def prox(
        self,
        x0: torch.Tensor,
        y: torch.Tensor,
        rho: float | torch.Tensor,
        iters: int | None = None,
    ) -> torch.Tensor:
        """``(A^H A + rho I)^-1 (A^H y + rho x0)`` by CG from ``x0``: ``iters`` iterations
        (default ``cg_iters``). ``rho`` 0 is allowed (SENSE: early stopping regularises)."""
        x, residual = self.cg_prox(x0, y, rho, self.cg_iters if iters is None else iters)
        self.last_residual = residual.detach()
        self.worst_residual = torch.maximum(self.worst_residual, residual.detach().cpu().double())
        return x

    def measure(
        self, x: torch.Tensor, sigma_n: float, generator: GeneratorLike = None
    ) -> torch.Tensor:
        """``y = M (F S x + n)``, complex noise with ``sigma_n`` per real and imaginary part."""
        y = self.A(x)
        noise = randn_like_batch(torch.view_as_real(y), generator, dtype=x.dtype)
        return y + sigma_n * self._mask * torch.view_as_complex(noise)

    def init(self, y: torch.Tensor) -> torch.Tensor:
        """The zero-filled reconstruction, coil-combined: ``A^H y``."""
        return self.A_adjoint(y)

    def num_measurements(self, x_shape: Sequence[int]) -> int | torch.Tensor:
        """Real measurements per image: one number, or one per image with per-image masks."""
        coils, rows = self.maps.shape[1], self.maps.shape[2]
        if self.lines.ndim == 2:
            return 2 * coils * rows * self.lines.sum(dim=1).to(torch.float64)
        return 2 * coils * rows * int(self.lines.sum())

    def __repr__(self) -> str:
        return (
            f"MulticoilMRI(coils={self.maps.shape[1]}, acceleration={self.acceleration:g}, "
            f"center_fraction={self.center_fraction}, mask={self.mask_type!r}, "
            f"cg_iters={self.cg_iters})"
        )
