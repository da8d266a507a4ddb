"""Blur kernels and their optical transfer functions (OTFs) for circular convolution.

A kernel is stored as a small weight array together with its *origin*: the tap
that sits on the output pixel. ``blur(x)[n, m] = sum_ij w[i, j] x[n + i - r0, m + j - c0]``
with indices taken modulo the image size (circular boundary), which is what lets
the blur, its adjoint and the super-resolution prox be diagonal in Fourier space.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class BlurKernel:
    """Kernel weights ``[kh, kw]`` (float64, sum 1) and ``origin``, the tap on the output pixel."""

    weights: torch.Tensor
    origin: tuple[int, int]

    def otf(self, height: int, width: int) -> torch.Tensor:
        """The FFT of the kernel zero-padded to ``height x width`` and circularly centred.

        Returns a complex128 ``[height, width]`` tensor ``K`` such that
        ``blur(x) = ifft2(K * fft2(x))``. Taps wider than the image wrap around (the
        blur stays an exact circular convolution).
        """
        kh, kw = self.weights.shape
        r0, c0 = self.origin
        # Tap (i, j) reads x at offset d = (i - r0, j - c0); a convolution reads x[n - m]
        # at psf[m], so the tap goes to psf[-d] (mod the image size).
        rows = (r0 - torch.arange(kh)).remainder(height)
        cols = (c0 - torch.arange(kw)).remainder(width)
        psf = torch.zeros(height, width, dtype=torch.float64)
        psf.index_put_(
            (rows[:, None].expand(kh, kw).reshape(-1), cols[None, :].expand(kh, kw).reshape(-1)),
            self.weights.to(torch.float64).reshape(-1),
            accumulate=True,
        )
        return torch.fft.fft2(psf)


def keys_cubic(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """Keys' cubic convolution kernel (``a = -0.5`` is the bicubic of MATLAB's imresize)."""
    t = t.abs()
    inner = (a + 2) * t**3 - (a + 3) * t**2 + 1
    outer = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return torch.where(t <= 1, inner, torch.where(t < 2, outer, torch.zeros_like(t)))


def _separable(w1d: torch.Tensor, origin: int) -> BlurKernel:
    w2d = torch.outer(w1d, w1d)
    return BlurKernel(weights=w2d / w2d.sum(), origin=(origin, origin))


def bicubic_kernel(factor: int) -> BlurKernel:
    """The anti-aliasing bicubic kernel of ``factor``-fold downsampling, ``4 factor`` taps a side.

    Geometry: the low-resolution pixel ``j`` (kept at high-resolution index
    ``factor * j`` by the decimation) averages the high-resolution neighbourhood
    centred at ``factor * j + (factor - 1) / 2``: the pixel-centre convention of
    imresize and of ``torch.nn.functional.interpolate(align_corners=False)``, so the
    bicubic upsampling used as the initial guess is aligned with the measurements.
    """
    s = int(factor)
    centre = (s - 1) / 2
    first = -2 * s + 1 + (s - 1) // 2  # offset of tap 0, chosen so the taps straddle centre
    offsets = torch.arange(4 * s, dtype=torch.float64) + first
    return _separable(keys_cubic((offsets - centre) / s), origin=-first)


def box_kernel(factor: int) -> BlurKernel:
    """Block averaging of ``factor x factor`` pixels (same centre convention as the bicubic)."""
    s = int(factor)
    return _separable(torch.ones(s, dtype=torch.float64), origin=0)


def uniform_kernel(size: int) -> BlurKernel:
    """A centred box blur: the mean of ``size x size`` pixels (origin at tap ``size // 2``).

    Unlike :func:`box_kernel` (block averaging before decimation, anchored at its first
    tap), it does not shift the image for odd ``size``.
    """
    s = int(size)
    if s < 1 or s != size:
        raise ValueError(f"uniform blur needs an integer size >= 1, got {size}")
    return _separable(torch.ones(s, dtype=torch.float64), origin=s // 2)


def gaussian_kernel(sigma: float, size: int | None = None) -> BlurKernel:
    """An isotropic Gaussian of standard deviation ``sigma`` pixels, ``size`` taps a side.

    ``size`` defaults to ``2 ceil(3 sigma) + 1`` (the kernel is negligible beyond 3 sigma).
    """
    if sigma <= 0:
        raise ValueError(f"Gaussian blur needs sigma > 0, got {sigma}")
    size = 2 * math.ceil(3 * sigma) + 1 if size is None else int(size)
    if size < 1:
        raise ValueError(f"kernel size must be >= 1, got {size}")
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    return _separable(torch.exp(-(t**2) / (2 * sigma**2)), origin=size // 2)


def kernel_from_array(weights: torch.Tensor) -> BlurKernel:
    """Wrap a user-given 2D kernel (normalised to sum 1), its origin at the central tap."""
    if weights.ndim != 2:
        raise ValueError(f"a blur kernel must be 2D, got shape {tuple(weights.shape)}")
    w = weights.detach().to(torch.float64).cpu()
    total = w.sum()
    if total.abs() < 1e-12:
        raise ValueError("a blur kernel must not sum to zero")
    return BlurKernel(weights=w / total, origin=(w.shape[0] // 2, w.shape[1] // 2))
