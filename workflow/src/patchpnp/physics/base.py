"""The interface every forward model of the benchmark implements.

An inverse problem here is ``y = A x + n`` with ``x`` a batch of real images
``[B, C, H, W]`` in [0, 1] image units and ``n`` white Gaussian noise of standard
deviation ``sigma_n`` (per real component). Solvers only ever talk to an operator
through this class, so adding a task means adding one subclass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from patchpnp.physics.cg import conjugate_gradient
from patchpnp.runtime import keyed_randn, keyed_randn_per_sample

# A generator argument may be one generator shared by the whole batch (used for
# the samples in order), one generator per sample, or None (torch's global RNG).
GeneratorLike = torch.Generator | Sequence[torch.Generator] | None


def as_batch_weight(rho: float | torch.Tensor, like: torch.Tensor) -> torch.Tensor | float:
    """Broadcast a prox weight (a float or one value per sample, shape [B]) against ``like``.

    Per-sample weights are what make batched solvers treat samples independently
    (each image has its own step size), so they are first-class here.
    """
    if isinstance(rho, torch.Tensor):
        if rho.ndim == 0:
            return rho.to(device=like.device, dtype=like.real.dtype)
        if rho.shape[0] != like.shape[0] or rho.numel() != like.shape[0]:
            raise ValueError(
                f"rho must be a float or a tensor with one value per sample "
                f"(batch {like.shape[0]}), got shape {tuple(rho.shape)}"
            )
        shape = (like.shape[0],) + (1,) * (like.ndim - 1)
        return rho.reshape(shape).to(device=like.device, dtype=like.real.dtype)
    return float(rho)


def randn_like_batch(
    like: torch.Tensor, generator: GeneratorLike = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Standard normal noise shaped like ``like``, drawn from ``generator``.

    With a list of generators, sample ``b`` draws only from ``generator[b]``, so its
    noise does not depend on which other images share the batch.
    """
    dtype = like.dtype if dtype is None else dtype
    if generator is None or isinstance(generator, torch.Generator):
        return keyed_randn(like.shape, generator, like.device, dtype)
    generators = list(generator)
    if len(generators) != like.shape[0]:
        raise ValueError(f"got {len(generators)} generators for a batch of {like.shape[0]} samples")
    return keyed_randn_per_sample(like.shape[1:], generators, like.device, dtype)


class LinearOperator:
    """A linear forward model ``A`` with its exact adjoint and its quadratic prox.

    Subclasses implement :meth:`A`, :meth:`A_adjoint`, :meth:`prox`,
    :meth:`num_measurements`, and may override :meth:`init` (the initial guess)
    and :meth:`measure` (e.g. complex noise).
    """

    # The range images live in: solvers clamp their initial guess and estimate to it.
    # None for images without one (complex images as real and imaginary channels).
    value_range: tuple[float, float] | None = (0.0, 1.0)
    # True when ``A^T (A x - y)`` at a pixel depends on ``x`` and ``y`` at that pixel
    # only, so :meth:`normal_residual` of a crop is the crop of it; DPS then takes its
    # data gradient through the patch wrapper in one pass (no recomputed tiles).
    pixel_local: bool = False

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the forward model to a batch of images ``[B, C, H, W]``."""
        raise NotImplementedError

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Apply the exact adjoint: ``<A x, y> = <x, A_adjoint y>`` (real inner products)."""
        raise NotImplementedError

    def prox(self, x0: torch.Tensor, y: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
        """Return ``argmin_x ||y - A x||^2 + rho ||x - x0||^2`` over real images.

        ``rho`` is a positive float or a per-sample tensor of shape ``[B]``.
        """
        raise NotImplementedError

    def normal(self, x: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
        """``(A^T A + rho I) x``: the normal operator of the data step."""
        return self.A_adjoint(self.A(x)).to(x.dtype) + as_batch_weight(rho, x) * x

    def cg_prox(
        self, x0: torch.Tensor, y: torch.Tensor, rho: float | torch.Tensor, iters: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`prox` by ``iters`` conjugate-gradient iterations from ``x0``, for an
        ``A^T A`` with no closed-form inverse; returns the estimate and each sample's
        relative residual (:func:`patchpnp.physics.cg.conjugate_gradient`)."""
        b = self.A_adjoint(y).to(x0.dtype) + as_batch_weight(rho, x0) * x0
        return conjugate_gradient(lambda v: self.normal(v, rho), b, x0, iters)

    def normal_residual(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``A^T (A x - y)``: the gradient of ``||A x - y||^2 / 2`` with respect to ``x``."""
        return self.A_adjoint(self.A(x) - y)

    def num_measurements(self, x_shape: Sequence[int]) -> int:
        """Number of real-valued measurements of one sample of an image of shape ``x_shape``.

        ``x_shape`` is ``[B, C, H, W]`` or ``[C, H, W]``; the count is per sample. It is
        the ``m`` of the data-consistency score ``||A x - y|| / (sigma_n sqrt(m))``.
        """
        raise NotImplementedError

    def measure(
        self, x: torch.Tensor, sigma_n: float, generator: GeneratorLike = None
    ) -> torch.Tensor:
        """Simulate ``y = A x + n`` with ``n ~ N(0, sigma_n^2)`` drawn from ``generator``."""
        y = self.A(x)
        return y + sigma_n * randn_like_batch(y, generator)

    def init(self, y: torch.Tensor) -> torch.Tensor:
        """An initial guess in image space (default: the adjoint applied to ``y``)."""
        return self.A_adjoint(y)

    def init_noise_level(self, sigma_n: torch.Tensor) -> torch.Tensor:
        """The white-noise level that :meth:`init` of a measurement already carries.

        ``sigma_n`` holds one measurement noise level per sample; the default is 0
        (the guess is smooth or dominated by other errors: bicubic upsampling, zero
        filling). Operators whose guess is the noisy measurement itself return
        ``sigma_n``, so a solver's first state tops the noise up to its starting level
        instead of adding the whole level on top (docs/methods.md section 6).
        """
        return torch.zeros_like(torch.as_tensor(sigma_n, dtype=torch.float64))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def per_sample_shape(x_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` from a ``[B, C, H, W]`` or ``[C, H, W]`` shape."""
    shape = tuple(int(s) for s in x_shape)
    if len(shape) == 4:
        shape = shape[1:]
    if len(shape) != 3:
        raise ValueError(f"expected an image shape [B, C, H, W] or [C, H, W], got {shape}")
    return shape  # type: ignore[return-value]
