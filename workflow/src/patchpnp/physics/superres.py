"""Super-resolution: anti-aliasing blur then ``factor``-fold decimation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .convolution import CircularBlurDecimation
from .kernels import bicubic_kernel, box_kernel

_KERNELS = {"bicubic": bicubic_kernel, "box": box_kernel}


class SuperResolution(CircularBlurDecimation):
    """``A x = S (k * x)`` with ``k`` the bicubic (Keys, a = -0.5) or box kernel of ``factor``.

    Image sides must be divisible by ``factor``. The blur is circular (FFT-based),
    which is what makes the prox exact in closed form.
    """

    def __init__(self, factor: int = 2, kernel: str = "bicubic"):
        if kernel not in _KERNELS:
            raise ValueError(f"unknown SR kernel {kernel!r}; valid: {sorted(_KERNELS)}")
        if int(factor) != factor or factor < 1:
            raise ValueError(f"factor must be a positive integer, got {factor}")
        super().__init__(_KERNELS[kernel](int(factor)), int(factor))
        self.kernel_name = kernel

    def init(self, y: torch.Tensor) -> torch.Tensor:
        """Bicubic upsampling of the low-resolution measurement, clamped to [0, 1]."""
        h, w = y.shape[-2:]
        up = F.interpolate(
            y, size=(h * self.factor, w * self.factor), mode="bicubic", align_corners=False
        )
        return up.clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"SuperResolution(factor={self.factor}, kernel={self.kernel_name!r})"
