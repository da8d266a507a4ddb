"""Classical multicoil MRI reconstructions: the baselines of docs/methods.md section 11.

Each method reconstructs one batch measured by a :class:`~patchpnp.physics.multicoil.MulticoilMRI`
operator (bound to that batch's coil maps) and returns real ``[B, 2, H, W]`` images
(real, imaginary), like the diffusion solvers:

- ``zero_filled``: ``A^H y``, the coil-combined zero-filled image (no tuning).
- ``sense``: Tikhonov-regularised SENSE, ``argmin 1/2 ||A x - y||^2 + lam/2 ||x||^2``,
  i.e. ``(A^H A + lam I) x = A^H y`` by ``iters`` conjugate-gradient iterations from
  zero (the operator's own data step with ``x0 = 0``). ``lam = 0`` is plain CG-SENSE:
  ``A^H A`` is then only positive semi-definite, which CG handles from ``x0 = 0`` (the
  right-hand side ``A^H y`` lies in the range of ``A^H A``, every Krylov vector stays
  there and CG converges to the minimum-norm least-squares solution); the iteration
  count is then the regulariser (early stopping), so it is tuned like ``lam``.
- ``cs_wavelet``: L1-wavelet compressed sensing (Lustig et al. 2007),
  ``argmin 1/2 ||A x - y||^2 + lam ||W x||_1`` with ``W`` sigpy's Daubechies-4
  wavelet transform, by sigpy's ``L1WaveletRecon`` on the CPU, one image at a time.
  sigpy supplies what would otherwise be written here: the wavelet transform (PyWavelets)
  and its soft-thresholding prox, and the solver, accelerated proximal gradient (FISTA)
  with step ``1 / lambda_max(A^H A)`` from 30 power iterations. Its SENSE model is
  ``sqrt(weights) F S`` with sigpy's centred orthonormal FFT (``center=True,
  norm='ortho'``: ``fftshift(fftn(ifftshift(.)))``), our ``fft2c``; with the 0/1 line
  mask as weights it equals this operator's ``A`` (``tests/test_mri_baselines.py``
  checks it numerically, since a mismatch would silently ruin CS). Note sigpy's
  ``lam`` multiplies an L1 norm of complex wavelet coefficients in the units of ``x``,
  so it scales with the images' intensity: it is tuned per data set.

:func:`lambda_grid` and :func:`choose_interior` are the tuning helpers: a log-spaced grid
around a guess, and the grid point with the best mean score on the tuning slices, with
a message when that point is an edge of the grid (the optimum may lie beyond it).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch

from patchpnp.layout import MRI_CLASSICAL_METHODS
from patchpnp.physics.multicoil import MulticoilMRI, to_channels

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_ITERS",
    "METHODS",
    "Choice",
    "choose_interior",
    "cs_wavelet",
    "lambda_grid",
    "reconstruct",
    "sense",
    "zero_filled",
]

METHODS = MRI_CLASSICAL_METHODS

# Iterations when none are given: CG-SENSE converges in tens of iterations on
# fastMRI-sized slices; FISTA needs more.
DEFAULT_ITERS = {"sense": 30, "cs_wavelet": 100}


def _per_sample(lam, batch: int) -> np.ndarray:
    """A float or one value per sample -> float64 ``[batch]``, all >= 0."""
    if isinstance(lam, torch.Tensor):
        lam = lam.detach().cpu().numpy()
    values = np.asarray(lam, dtype=np.float64).reshape(-1)
    if values.size == 1:
        values = np.full(batch, float(values[0]))
    if values.size != batch:
        raise ValueError(
            f"lam must be a float or one value per sample ({batch}), got {values.size}"
        )
    if not np.all(values >= 0):
        raise ValueError(f"lam must be >= 0, got {values}")
    return values


def _check_iters(iters: int) -> int:
    if int(iters) < 1 or int(iters) != iters:
        raise ValueError(f"iterations must be a positive integer, got {iters}")
    return int(iters)


def zero_filled(op: MulticoilMRI, y: torch.Tensor) -> torch.Tensor:
    """``A^H y``: the zero-filled image, coil-combined with the conjugate maps."""
    return op.A_adjoint(y)


def sense(
    op: MulticoilMRI, y: torch.Tensor, lam: float | torch.Tensor = 0.0, iters: int = 30
) -> torch.Tensor:
    """Tikhonov SENSE: ``(A^H A + lam I)^-1 A^H y`` by ``iters`` CG iterations from zero.

    ``lam`` is a float or one value per sample, ``>= 0`` (0: CG-SENSE, early stopped).
    The CG residual is recorded on ``op`` (:attr:`MulticoilMRI.worst_residual`).
    """
    lam_b = _per_sample(lam, y.shape[0])
    x0 = torch.zeros(
        (y.shape[0], 2, *y.shape[-2:]), dtype=op.maps.real.dtype, device=op.maps.device
    )
    rho = torch.from_numpy(lam_b).to(device=x0.device, dtype=x0.dtype)
    x = op.prox(x0, y, rho, iters=_check_iters(iters))
    log.debug("SENSE lam=%s: CG relative residual %s", lam_b, op.last_residual)
    return x


def cs_wavelet(
    op: MulticoilMRI, y: torch.Tensor, lam: float | torch.Tensor, iters: int = 100
) -> torch.Tensor:
    """L1-wavelet CS by sigpy's ``L1WaveletRecon``, per image on CPU (complex64).

    ``lam`` is a float or one value per sample (sigpy's ``lamda``, the weight of
    ``||W x||_1`` against ``1/2 ||A x - y||^2``); ``iters`` FISTA iterations.
    """
    import sigpy
    from sigpy.mri.app import L1WaveletRecon

    lam_b = _per_sample(lam, y.shape[0])
    iters = _check_iters(iters)
    height = y.shape[-2]
    lines = op.lines.cpu().numpy().astype(np.float32)
    lines = np.broadcast_to(lines, (y.shape[0], lines.shape[-1]))  # one mask per image
    ys = y.detach().cpu().numpy().astype(np.complex64)
    maps = op.maps.detach().cpu().numpy().astype(np.complex64)
    out = np.empty((y.shape[0], *y.shape[-2:]), dtype=np.complex64)
    for b in range(y.shape[0]):
        app = L1WaveletRecon(
            ys[b],
            maps[b],
            float(lam_b[b]),
            weights=np.ascontiguousarray(np.broadcast_to(lines[b], (height, lines.shape[-1]))),
            max_iter=iters,
            device=sigpy.cpu_device,
            show_pbar=False,
        )
        out[b] = app.run()
    z = torch.from_numpy(out).to(device=op.maps.device, dtype=op.maps.dtype)
    return to_channels(z)


def reconstruct(
    method: str,
    op: MulticoilMRI,
    y: torch.Tensor,
    lam: float | torch.Tensor | None = None,
    iters: int | None = None,
) -> torch.Tensor:
    """Dispatch to a method of :data:`METHODS`.

    ``zero_filled`` takes neither ``lam`` nor ``iters``. ``sense`` defaults to
    ``lam = 0`` and :data:`DEFAULT_ITERS`. ``cs_wavelet`` needs ``lam`` (it depends on
    the images' intensity scale, so there is no sensible default).
    """
    if method not in METHODS:
        raise ValueError(f"unknown MRI baseline {method!r}; valid: {list(METHODS)}")
    if method == "zero_filled":
        if lam is not None or iters is not None:
            raise ValueError("zero_filled takes no lam or iters")
        return zero_filled(op, y)
    iters = DEFAULT_ITERS[method] if iters is None else iters
    if method == "sense":
        return sense(op, y, 0.0 if lam is None else lam, iters)
    if lam is None:
        raise ValueError("cs_wavelet needs lam (tune it on the tuning slices)")
    return cs_wavelet(op, y, lam, iters)


def lambda_grid(center: float, decades: float, points: int) -> np.ndarray:
    """``points`` log-spaced values from ``center / 10^decades`` to ``center * 10^decades``.

    ``decades`` is the half-width: the grid spans ``2 * decades`` decades, centred (in
    log scale) on ``center``; an odd ``points`` includes ``center`` itself.
    """
    if not center > 0:
        raise ValueError(f"the grid's centre must be > 0, got {center}")
    if not decades > 0:
        raise ValueError(f"decades must be > 0, got {decades}")
    if int(points) < 3:
        raise ValueError(f"a grid needs >= 3 points to have an interior, got {points}")
    exponents = np.linspace(-float(decades), float(decades), int(points))
    return float(center) * 10.0**exponents


class Choice(NamedTuple):
    """The outcome of :func:`choose_interior`."""

    index: int  # grid index of the best mean score
    value: float  # the grid value there
    interior: bool  # False: the best is the grid's first or last point
    message: str  # what to log / report ("" when interior)


def choose_interior(
    values: Sequence[float] | np.ndarray,
    scores: Sequence | np.ndarray,
    higher_is_better: bool = True,
) -> Choice:
    """The grid point with the best mean score, and whether it is an interior optimum.

    Args:
        values: the grid, ``[k]`` (e.g. :func:`lambda_grid`).
        scores: ``[k]`` or ``[k, n]`` (one row per grid value, e.g. the PSNR of each
            tuning slice); rows are averaged, ignoring NaN.
        higher_is_better: False for a loss such as NMSE.

    A best point at either end of the grid is not known to be an optimum (a better one
    may lie beyond): ``interior`` is then False and ``message`` says so (it is also
    logged as a warning), so the tuning can report it rather than pass it off.
    """
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if s.ndim != 2 or s.shape[0] != vals.size:
        raise ValueError(f"scores must be [{vals.size}] or [{vals.size}, n], got {s.shape}")
    if vals.size < 2:
        raise ValueError("a grid needs at least 2 values")
    with warnings.catch_warnings():  # an all-NaN row is NaN: no "Mean of empty slice"
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(s, axis=1)
    if np.all(np.isnan(mean)):
        raise ValueError("every grid point scored NaN")
    key = mean if higher_is_better else -mean
    index = int(np.nanargmax(key))
    interior = 0 < index < vals.size - 1
    message = ""
    if not interior:
        edge = "lowest" if index == 0 else "highest"
        message = (
            f"best mean score {mean[index]:.4g} at the {edge} grid value {vals[index]:.4g} "
            f"(grid {vals[0]:.4g} .. {vals[-1]:.4g}): not an interior optimum; widen the grid"
        )
        log.warning(message)
    return Choice(index, float(vals[index]), interior, message)
