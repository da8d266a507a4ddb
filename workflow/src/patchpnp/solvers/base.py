"""What every diffusion solver shares: the denoiser adapter, checks, initialisation, cost.

A solver sees three things: a [0, 1]-space denoiser ``D01(x, sigma)``, a forward model
(:class:`patchpnp.physics.LinearOperator`) and the EDM noise schedule. Subclasses only
write the per-step update (:meth:`DiffusionSolver._run`); the batch bookkeeping that
makes samples independent (keyed random streams per image, per-sample norms and
step sizes, divergence reported by image) lives here.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from patchpnp.runtime import keyed_randn_per_sample

from ..patching.patches import LocalCotangent, whole_image_vjp
from ..physics.base import LinearOperator
from .schedule import edm_sigmas
from .streams import INIT_STEP, SolveStreams

__all__ = ["DiffusionSolver", "SolverDenoiser", "SolverDivergedError"]


class SolverDivergedError(ValueError):
    """A sample of the batch became NaN or infinite during a solve.

    ``step`` is the 0-based step index, ``index`` the position in the batch and
    ``name`` the caller's name for that image (e.g. its dataset index), if given.
    """

    def __init__(self, solver: str, step: int, steps: int, sigma: float, index: int, name=None):
        self.solver, self.step, self.steps, self.sigma = solver, step, steps, sigma
        self.index, self.name = index, name
        who = f"image {index} of the batch" + ("" if name is None else f" ({name!r})")
        super().__init__(
            f"{solver} diverged at step {step} of {steps} (sigma {sigma:.4g}): {who} became "
            f"NaN/inf; lower the step size (zeta / lambda) or check the prior"
        )


def _accepts_generator(denoiser: Callable) -> bool:
    """Whether ``denoiser`` takes a ``generator`` keyword (the patch wrapper does)."""
    target = denoiser.forward if isinstance(denoiser, nn.Module) else denoiser
    try:
        return "generator" in inspect.signature(target).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False


class SolverDenoiser:
    """Adapter that lets solvers call any denoiser the same way.

    Solvers always call ``adapter(x, sigma, generators)`` with one generator per image,
    the grid stream of the current step (:class:`patchpnp.solvers.streams.SolveStreams`).
    A denoiser that takes a ``generator`` keyword (``ShiftedGridDenoiser``: one random
    grid shift and noisy zero margin per sample per call) receives them, so a sample's
    grid draws come from a stream of their own and never shift the solver's noise; a
    plain whole-image denoiser is called as ``denoiser(x, sigma)``.
    It also reads the patch wrapper's cost counters when they exist.
    """

    def __init__(self, denoiser: Callable[..., torch.Tensor]):
        if isinstance(denoiser, SolverDenoiser):
            denoiser = denoiser.denoiser
        if not callable(denoiser):
            raise TypeError(f"the denoiser must be callable, got {type(denoiser).__name__}")
        self.denoiser = denoiser
        self.accepts_generator = _accepts_generator(denoiser)

    def __call__(
        self, x: torch.Tensor, sigma: float, generators: Sequence[torch.Generator]
    ) -> torch.Tensor:
        if self.accepts_generator:
            return self.denoiser(x, sigma, generator=list(generators))
        return self.denoiser(x, sigma)

    def local_vjp(
        self,
        x: torch.Tensor,
        sigma: float,
        generators: Sequence[torch.Generator],
        cotangent: LocalCotangent,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D(x), J(x)^T g)`` for a pixel-local ``g = cotangent(D(x))``: in one pass
        through the patch wrapper's tiles, by plain autograd for any other denoiser."""
        local = getattr(self.denoiser, "local_vjp", None)
        if local is not None and self.accepts_generator:
            return local(x, sigma, cotangent, generator=list(generators))
        with torch.enable_grad():
            xi = x.detach().requires_grad_(True)
            return whole_image_vjp(self(xi, sigma, generators), xi, cotangent)

    def tile_counters(self) -> tuple[int, int] | None:
        """``(tiles_evaluated, backward_tiles)`` of a patch wrapper, else None."""
        d = self.denoiser
        if hasattr(d, "tiles_evaluated") and hasattr(d, "backward_tiles"):
            return int(d.tiles_evaluated), int(d.backward_tiles)
        return None


def per_sample_noise(like: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Standard normal noise shaped like ``like``; sample ``b`` draws only from ``generators[b]``.

    Each draw happens on its generator's device and is then moved to ``like``'s device,
    so CPU generators drive a CUDA solve and the draws do not depend on the device.
    """
    return keyed_randn_per_sample(like.shape[1:], generators, like.device, like.real.dtype)


def _check_finite(
    solver: str,
    x: torch.Tensor,
    step: int,
    steps: int,
    sigma: float,
    names: Sequence[Any] | None,
) -> None:
    """Raise :class:`SolverDivergedError` for the first sample of ``x`` with a NaN/inf."""
    ok = torch.isfinite(x).reshape(x.shape[0], -1).all(dim=1)
    if not bool(ok.all()):
        index = int((~ok).nonzero()[0, 0])
        name = None if names is None else names[index]
        raise SolverDivergedError(solver, step, steps, sigma, index, name)


class DiffusionSolver:
    """Base class of the EDM-form solvers (``x_i = x + s_i n`` with ``x`` in [0, 1] units).

    Args:
        denoiser: ``D01(x, sigma)`` in [0, 1] image units (optionally with ``generator=``).
        operator: the forward model.
        steps: number of denoiser calls (NFE) per image.
        sigma_start: start below ``sigma_max`` from the noised initial guess (see
            :func:`edm_sigmas`); None starts at ``sigma_max``.
        sigma_max, sigma_min, rho: the EDM schedule (section 6 defaults).
        clip_output: clamp the returned estimate to the operator's ``value_range``, [0, 1]
            for magnitude images, none for complex ones (intermediate states are never
            clamped).
    """

    name = "solver"

    def __init__(
        self,
        denoiser: Callable[..., torch.Tensor],
        operator: LinearOperator,
        steps: int,
        sigma_start: float | None = None,
        sigma_max: float = 40.0,
        sigma_min: float = 0.001,
        rho: float = 7.0,
        clip_output: bool = True,
    ):
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"{self.name}: steps must be a positive integer, got {steps}")
        self.denoiser = SolverDenoiser(denoiser)
        self.operator = operator
        self.steps = int(steps)
        self.sigma_start = sigma_start
        self.sigmas = edm_sigmas(self.steps, sigma_max, sigma_min, rho, sigma_start)
        self.clip_output = bool(clip_output)

    # -- to be written by subclasses -------------------------------------------------
    def _check_sigma_n(self, sigma_n: torch.Tensor) -> None:
        """Reject measurement noise levels the method cannot use (before any work)."""
        if bool((sigma_n < 0).any()):
            raise ValueError(f"{self.name}: sigma_n must be >= 0, got {sigma_n.tolist()}")

    def _run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        sigma_n: torch.Tensor,
        streams: SolveStreams,
        names: Sequence[Any] | None,
    ) -> tuple[torch.Tensor, int]:
        """Run the steps from the initial state ``x``; return ``(x_hat, backward passes)``.

        Step ``i`` draws its solver noise from ``streams.solver(i)`` (:meth:`_noise`) and
        calls the denoiser with ``streams.grid(i)`` (:meth:`_denoise`).
        """
        raise NotImplementedError

    # -- shared machinery ----------------------------------------------------------------
    def solve(
        self,
        y: torch.Tensor,
        sigma_n: float | torch.Tensor,
        streams: SolveStreams,
        names: Sequence[Any] | None = None,
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Reconstruct a batch from its measurements ``y``.

        Args:
            y: measurements ``[B, ...]`` (the operator's measurement space).
            sigma_n: measurement noise std in [0, 1] units, a float or one value per image.
            streams: the batch's random streams (:class:`SolveStreams`, one image key per
                image): every draw of image ``b`` is keyed by (seed, its key, purpose,
                step), so its result depends neither on which images share the batch nor,
                for the solver noise, on the denoiser (whole or tiled, any padding).
            names: optional per-image names (e.g. dataset indices) for error messages.

        Returns:
            ``(x_hat, info)``: ``x_hat`` ``[B, C, H, W]`` in [0, 1] units and ``info`` with
            ``nfe`` and ``backward_passes`` (per image), ``tiles_evaluated`` and
            ``backward_tiles`` (per image, from a patch wrapper's counters over this solve;
            None for a denoiser without them), ``steps``, ``batch_size``, ``sigma_start``
            (the first level actually used) and ``wall_seconds`` (the whole batch).
        """
        batch = y.shape[0]
        if not isinstance(streams, SolveStreams) or len(streams) != batch:
            got = f"{len(streams)} image keys" if isinstance(streams, SolveStreams) else streams
            raise ValueError(
                f"{self.name}: need SolveStreams with one image key per image (batch {batch}), "
                f"got {got!r}"
            )
        if names is not None and len(names) != batch:
            raise ValueError(f"{self.name}: got {len(names)} names for a batch of {batch}")
        sigma_n = torch.as_tensor(sigma_n, dtype=torch.float64).reshape(-1).cpu()
        if sigma_n.numel() == 1:
            sigma_n = sigma_n.expand(batch)
        if sigma_n.numel() != batch:
            raise ValueError(
                f"{self.name}: sigma_n must be a float or have one value per image "
                f"(batch {batch}), got {sigma_n.numel()} values"
            )
        self._check_sigma_n(sigma_n)

        before = self.denoiser.tile_counters()
        start = time.perf_counter()
        x = self.initial_state(y, sigma_n, streams)
        x_hat, backward = self._run(x, y, sigma_n, streams, names)
        wall = time.perf_counter() - start
        after = self.denoiser.tile_counters()
        value_range = self.operator.value_range
        if self.clip_output and value_range is not None:
            x_hat = x_hat.clamp(*value_range)

        tiles = back_tiles = None
        if before is not None and after is not None:
            # The wrapper counts tiles summed over the batch; all images have one size.
            tiles = (after[0] - before[0]) // batch
            back_tiles = (after[1] - before[1]) // batch
        info = {
            "solver": self.name,
            "nfe": self.steps,
            "backward_passes": backward,
            "tiles_evaluated": tiles,
            "backward_tiles": back_tiles,
            "steps": self.steps,
            "batch_size": batch,
            "sigma_start": float(self.sigmas[0]),
            "wall_seconds": wall,
        }
        return x_hat.detach(), info

    def initial_state(
        self, y: torch.Tensor, sigma_n: torch.Tensor, streams: SolveStreams
    ) -> torch.Tensor:
        """The first state, at total noise level ``s_0``: the level the denoiser is told.

        ``x_init`` is the operator's initial guess. Where it already carries the
        measurement noise (denoising: ``x_init = y``, noise ``sigma_n``), only the
        missing ``sqrt(max(s_0^2 - sigma_n^2, 0))`` is added and ``x_init`` is not
        clamped (clamping would fold the noise and bias the dark background); elsewhere
        (:meth:`LinearOperator.init_noise_level` 0) ``x_init`` is clamped to [0, 1]
        and ``s_0`` is added. docs/methods.md section 6.
        """
        with torch.no_grad():
            x_init = self.operator.init(y)
            if x_init.is_complex():
                x_init = x_init.real
            carried = self.operator.init_noise_level(sigma_n)  # [B], float64
            s0 = float(self.sigmas[0])
            if bool((carried > s0 * (1 + 1e-6)).any()):  # refused before any denoiser call
                raise ValueError(
                    f"{self.name}: the initial guess already carries noise {carried.max():.4g} "
                    f"(the measurement's), above the first level {s0:.4g} the denoiser "
                    f"would be told; raise sigma_start to at least sigma_n"
                )
            value_range = self.operator.value_range
            if not bool((carried > 0).any()) and value_range is not None:
                x_init = x_init.clamp(*value_range)
            added = (s0**2 - carried**2).clamp(min=0.0).sqrt()
            added = added.to(device=x_init.device, dtype=x_init.dtype)
            noise = per_sample_noise(x_init, streams.solver(INIT_STEP))
            return x_init + added.reshape(-1, *([1] * (x_init.ndim - 1))) * noise

    def _noise(self, like: torch.Tensor, streams: SolveStreams, step: int) -> torch.Tensor:
        """Standard normal solver noise of ``step`` (its own keyed stream per image)."""
        return per_sample_noise(like, streams.solver(step))

    def _denoise(
        self, x: torch.Tensor, sigma: float, streams: SolveStreams, step: int
    ) -> torch.Tensor:
        """The denoiser at ``step``, with that step's grid stream (used by a patch wrapper)."""
        return self.denoiser(x, sigma, streams.grid(step))

    def _check(self, x: torch.Tensor, step: int, names: Sequence[Any] | None) -> None:
        _check_finite(self.name, x, step, self.steps, float(self.sigmas[step]), names)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(steps={self.steps}, sigma_start={float(self.sigmas[0]):.4g}, "
            f"operator={self.operator!r})"
        )
