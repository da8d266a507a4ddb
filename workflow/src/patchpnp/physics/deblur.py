"""Deblurring: a circular blur without decimation (the ``factor = 1`` case of SR)."""

from __future__ import annotations

import torch

from .convolution import CircularBlurDecimation
from .kernels import gaussian_kernel, kernel_from_array, uniform_kernel


class Deblur(CircularBlurDecimation):
    """``A x = k * x`` (circular), ``k`` a Gaussian of ``sigma`` pixels, a uniform box, or a
    given 2D array.

    ``size`` is the number of taps a side: for ``'gaussian'`` default ``2 ceil(3 sigma) + 1``;
    ``'uniform'`` (PaDIS's deblurring kernel, the mean of ``size x size`` pixels) needs it.
    """

    def __init__(
        self, kernel: str | torch.Tensor = "gaussian", sigma: float = 3.0, size: int | None = None
    ):
        if isinstance(kernel, torch.Tensor):
            blur = kernel_from_array(kernel)
            self.kernel_name = "array"
        elif kernel == "gaussian":
            blur = gaussian_kernel(sigma, size)
            self.kernel_name = "gaussian"
        elif kernel == "uniform":
            if size is None:
                raise ValueError("deblur kernel 'uniform' needs size (taps a side)")
            blur = uniform_kernel(size)
            self.kernel_name = "uniform"
        else:
            raise ValueError(
                f"unknown deblur kernel {kernel!r}; valid: ['gaussian', 'uniform'] or a 2D tensor"
            )
        super().__init__(blur, factor=1)
        self.sigma = sigma

    def init(self, y: torch.Tensor) -> torch.Tensor:
        """The blurred measurement itself (it already lives in image space)."""
        return y

    def init_noise_level(self, sigma_n: torch.Tensor) -> torch.Tensor:
        """``y`` itself: it carries the (white) measurement noise."""
        return torch.as_tensor(sigma_n, dtype=torch.float64).clone()

    def __repr__(self) -> str:
        size = tuple(self.kernel.weights.shape)[0]
        if self.kernel_name == "uniform":
            return f"Deblur(kernel='uniform', size={size})"
        return f"Deblur(kernel={self.kernel_name!r}, sigma={self.sigma}, size={size})"
