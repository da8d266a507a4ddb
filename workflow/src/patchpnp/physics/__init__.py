"""Forward models ``y = A x + n`` of the benchmark's inverse problems.

Every operator is a :class:`LinearOperator` with ``A``, its exact adjoint
``A_adjoint``, the quadratic prox ``argmin ||y - A x||^2 + rho ||x - x0||^2``,
``measure`` (noisy measurements from an explicit generator), ``init`` (the initial
guess in image space) and ``num_measurements``. Use :func:`make_operator` to build
one from a task name and its config parameters.
"""

from __future__ import annotations

from .base import GeneratorLike, LinearOperator
from .cg import conjugate_gradient
from .convolution import CircularBlurDecimation
from .ct import CT
from .deblur import Deblur
from .denoising import Denoising
from .kernels import BlurKernel, bicubic_kernel, box_kernel, gaussian_kernel, uniform_kernel
from .mri import MRI, fastmri_line_mask, fft2c, ifft2c, line_mask
from .multicoil import MulticoilMRI, to_channels, to_complex
from .superres import SuperResolution

OPERATORS: dict[str, type[LinearOperator]] = {
    "denoise": Denoising,
    "sr": SuperResolution,
    "deblur": Deblur,
    "mri": MRI,
    "ct": CT,
}


def make_operator(task: str, **params) -> LinearOperator:
    """Build the forward model of ``task`` (a key of :data:`OPERATORS`) from ``params``."""
    if task not in OPERATORS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {sorted(OPERATORS)}")
    return OPERATORS[task](**params)


__all__ = [
    "CT",
    "MRI",
    "OPERATORS",
    "MulticoilMRI",
    "BlurKernel",
    "CircularBlurDecimation",
    "Deblur",
    "Denoising",
    "GeneratorLike",
    "LinearOperator",
    "SuperResolution",
    "bicubic_kernel",
    "box_kernel",
    "conjugate_gradient",
    "fastmri_line_mask",
    "fft2c",
    "gaussian_kernel",
    "ifft2c",
    "line_mask",
    "make_operator",
    "to_channels",
    "to_complex",
    "uniform_kernel",
]
