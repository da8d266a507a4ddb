"""Circular blur followed by decimation, with the closed-form FFT prox (Zhao et al. 2016).

This is the shared machinery of super-resolution (``factor > 1``) and deblurring
(``factor = 1``): ``A x = S (k * x)`` with ``*`` a circular convolution and ``S``
keeping every ``factor``-th pixel starting at index 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .base import LinearOperator, as_batch_weight, per_sample_shape
from .kernels import BlurKernel


def _block_mean(z: torch.Tensor, s: int) -> torch.Tensor:
    """Mean over the ``s x s`` spectral blocks of size ``(H/s) x (W/s)``: ``[..., H/s, W/s]``."""
    h, w = z.shape[-2:]
    return z.reshape(*z.shape[:-2], s, h // s, s, w // s).mean(dim=(-4, -2))


class CircularBlurDecimation(LinearOperator):
    """``A x = S (k * x)``: circular blur with ``kernel``, then ``factor``-fold decimation."""

    def __init__(self, kernel: BlurKernel, factor: int = 1):
        if int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        self.kernel = kernel
        self.factor = int(factor)
        self._otf_cache: dict[tuple, torch.Tensor] = {}

    # -- helpers -----------------------------------------------------------------
    def _check_size(self, h: int, w: int) -> None:
        s = self.factor
        if h % s or w % s:
            raise ValueError(
                f"{type(self).__name__} with factor {s} needs image sides divisible by {s}, "
                f"got {h} x {w}"
            )

    def _otf(self, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
        cdtype = torch.complex128 if like.real.dtype == torch.float64 else torch.complex64
        key = (h, w, like.device, cdtype)
        if key not in self._otf_cache:
            self._otf_cache[key] = self.kernel.otf(h, w).to(device=like.device, dtype=cdtype)
        return self._otf_cache[key]

    def _upsample_zeros(self, y: torch.Tensor) -> torch.Tensor:
        """``S^T y``: put ``y`` back on the kept pixels, zeros elsewhere."""
        s = self.factor
        if s == 1:
            return y
        h, w = y.shape[-2:]
        z = y.new_zeros(*y.shape[:-2], h * s, w * s)
        z[..., ::s, ::s] = y
        return z

    # -- operator ------------------------------------------------------------------
    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """The circular blur ``k * x`` (no decimation)."""
        K = self._otf(*x.shape[-2:], x)
        return torch.fft.ifft2(K * torch.fft.fft2(x)).real

    def A(self, x: torch.Tensor) -> torch.Tensor:
        self._check_size(*x.shape[-2:])
        s = self.factor
        return self.blur(x)[..., ::s, ::s]

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        z = self._upsample_zeros(y)
        K = self._otf(*z.shape[-2:], z)
        # The adjoint of a circular convolution multiplies by conj(K) in Fourier space.
        return torch.fft.ifft2(K.conj() * torch.fft.fft2(z)).real

    def prox(self, x0: torch.Tensor, y: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
        """Closed form of ``(A^T A + rho I)^{-1} (A^T y + rho x0)``.

        ``S^T S`` acts in Fourier space as "average the ``s x s`` aliased blocks and tile
        the average back" (decimation folds the spectrum), so Woodbury's identity turns
        the inverse into a per-frequency division of block means:
        ``X = (r - conj(K) tile(<K r> / (<|K|^2> + rho))) / rho``, ``r = F(A^T y) + rho F(x0)``.
        """
        h, w = x0.shape[-2:]
        self._check_size(h, w)
        s = self.factor
        rho = as_batch_weight(rho, x0)
        K = self._otf(h, w, x0)
        r = K.conj() * torch.fft.fft2(self._upsample_zeros(y)) + rho * torch.fft.fft2(x0)
        num = _block_mean(K * r, s)
        den = _block_mean(K.abs() ** 2, s) + rho
        ratio = num / den
        correction = K.conj() * ratio.repeat(*([1] * (ratio.ndim - 2)), s, s)
        return torch.fft.ifft2((r - correction) / rho).real

    def num_measurements(self, x_shape: Sequence[int]) -> int:
        c, h, w = per_sample_shape(x_shape)
        self._check_size(h, w)
        return c * (h // self.factor) * (w // self.factor)
