"""Single-coil Cartesian MRI: undersampled, centred, orthonormal 2D Fourier transform.

Conventions (those of fastMRI's ``fft2c``): k-space is centred, i.e.
``F x = fftshift(fft2(ifftshift(x), norm="ortho"))``, so the DC term sits at index
``(H // 2, W // 2)``. Measurements are complex k-space tensors ``[B, C, H, W]`` of
the image's size, zero at the locations the mask does not sample ("zero-filled").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from patchpnp.params import MASK_TYPES
from patchpnp.runtime import keyed_rand

from .base import GeneratorLike, LinearOperator, as_batch_weight, per_sample_shape, randn_like_batch


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two dimensions."""
    x = torch.fft.ifftshift(x, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c` (also its adjoint, the transform being unitary)."""
    k = torch.fft.ifftshift(k, dim=(-2, -1))
    return torch.fft.fftshift(torch.fft.ifft2(k, norm="ortho"), dim=(-2, -1))


def mirror_columns(width: int) -> torch.Tensor:
    """Index of the column holding frequency ``-f`` for each column of frequency ``f``.

    With centred k-space, column ``c`` has frequency ``f = c - width // 2``; frequency
    ``-f`` (mod ``width``) is column ``(2 (width // 2) - c) mod width``.
    """
    c = torch.arange(width)
    return (2 * (width // 2) - c).remainder(width)


def line_mask(
    width: int,
    acceleration: int = 4,
    center_fraction: float = 0.08,
    kind: str = "equispaced",
    seed: int = 0,
    symmetric: bool = True,
) -> torch.Tensor:
    """A boolean mask over the ``width`` phase-encode columns of centred k-space.

    ``symmetric=False`` gives the masks of complex images (multicoil MRI), where
    ``f`` and ``-f`` carry different information: :func:`fastmri_line_mask`.

    The central ``round(center_fraction * width)`` low frequencies (rounded up to a
    symmetric set) are always sampled. Both kinds then aim at ``width / acceleration``
    lines in total, centre included (fastMRI's convention; the centre is not extra):

    - ``equispaced`` (fastMRI's ``EquispacedMaskFractionFunc``): the outer lines are
      spaced by the adjusted acceleration ``R (N - n_c) / (N - R n_c)`` rather than by
      ``R``, so that centre plus outer lines make ``N / R``. Here the spacing is fitted
      to a whole number of lines: ``round(N / R) - n_c`` outer lines, half on each side,
      one at the middle of each of equal bins between the centre and the edge. Spacing
      by ``R`` itself (the plain ``EquiSpacedMaskFunc``) would sample
      ``n_c + (N - n_c) / R`` lines: an acceleration of 3.2 instead of 4 at 8% centre.
    - ``random``: each remaining frequency pair is drawn with the probability that
      makes the expected count ``N / R`` (fastMRI's ``RandomMaskFunc`` rule).

    The mask is conjugate-symmetric: frequency ``f`` is sampled iff ``-f`` is. For a
    real image, k-space is Hermitian, so this loses no information relative to the
    lines sampled, and it makes the real-constrained prox exact in closed form. Lines
    therefore come in pairs; :func:`_equispaced_outer` says how close that lets the
    equispaced count get.
    """
    _check_mask(kind, acceleration, center_fraction)
    if not symmetric:
        return fastmri_line_mask(width, acceleration, center_fraction, kind, seed)
    freq = torch.arange(width) - width // 2
    num_low = round(width * center_fraction)
    mask = freq.abs() <= num_low // 2
    if kind == "equispaced":
        mask |= _equispaced_outer(width, int(mask.sum()), width / acceleration)
    else:
        prob = (width / acceleration - int(mask.sum())) / max(width - int(mask.sum()), 1)
        u = keyed_rand((width,), torch.Generator().manual_seed(int(seed)))
        # One draw per frequency pair: negative frequencies copy their mirror's draw.
        u = torch.where(freq < 0, u[mirror_columns(width)], u)
        mask |= u < prob
    mask |= mask[mirror_columns(width)]
    return mask


def _check_mask(kind: str, acceleration: float, center_fraction: float) -> None:
    if kind not in MASK_TYPES:
        raise ValueError(f"unknown MRI mask {kind!r}; valid: {list(MASK_TYPES)}")
    if not acceleration >= 1:
        raise ValueError(f"acceleration must be >= 1, got {acceleration}")
    if not 0 <= center_fraction <= 1.0 / acceleration:
        raise ValueError(
            f"center_fraction must lie in [0, 1 / acceleration = {1 / acceleration:.3g}] (the "
            f"centre counts towards the width / acceleration lines), got {center_fraction}"
        )


def fastmri_line_mask(
    width: int,
    acceleration: float = 4,
    center_fraction: float = 0.08,
    kind: str = "equispaced",
    seed: int = 0,
) -> torch.Tensor:
    """fastMRI's line masks for complex images: ``round(width / acceleration)`` lines in all.

    The centre is fastMRI's: ``n_c = round(center_fraction * width)`` adjacent columns
    starting at ``(width - n_c + 1) // 2``. Then, as fastMRI's mask functions intend
    (the centre is part of the budget, so the acceleration is what it says):

    - ``equispaced`` (``EquispacedMaskFractionFunc``): the remaining
      ``round(width / R) - n_c`` lines spread evenly over the columns outside the
      centre, at the adjusted spacing ``(width - n_c) / (width / R - n_c)``; fixed
      offset (fastMRI draws one; a fixed one keeps every cell on one mask).
    - ``random`` (``RandomMaskFunc``): each column outside the centre is sampled with
      probability ``(width / R - n_c) / (width - n_c)``, from a generator seeded by ``seed``.
    """
    _check_mask(kind, acceleration, center_fraction)
    n_c = round(center_fraction * width)
    mask = torch.zeros(width, dtype=torch.bool)
    start = (width - n_c + 1) // 2
    mask[start : start + n_c] = True
    outside = torch.nonzero(~mask).flatten()
    want = max(round(width / acceleration) - n_c, 0)
    if kind == "equispaced":
        k = min(want, len(outside))
        picks = torch.floor((torch.arange(k) + 0.5) * len(outside) / max(k, 1)).long()
        mask[outside[picks]] = True
    else:
        prob = want / max(len(outside), 1)
        u = keyed_rand((width,), torch.Generator().manual_seed(int(seed)))
        mask[outside[u[outside] < prob]] = True
    return mask


def _equispaced_outer(width: int, n_centre: int, target: float) -> torch.Tensor:
    """Outer lines of the equispaced mask: a conjugate-symmetric set evenly spread over
    the frequencies beyond the centre, as close to ``target - n_centre`` lines as pairs
    allow.

    Each side holds the frequencies ``c + 1 .. h`` (``c = n_centre // 2``, ``h`` the
    highest frequency with a mirror, ``(width - 1) // 2``); it is cut into ``k`` equal
    bins and the middle of each is sampled, so the spacing is ``(h - c) / k``, fastMRI's
    adjusted acceleration up to whole lines. An even width's Nyquist column (``-width /
    2``, its own mirror) takes an odd leftover line, so the total is within half a line
    of ``target``; an odd width has no such column and lands within one line.
    """
    freq = torch.arange(width) - width // 2
    c, h = n_centre // 2, (width - 1) // 2
    want = max(target - n_centre, 0.0)
    if width % 2 == 0:
        outer = round(want)
        k, nyquist = outer // 2, outer % 2 == 1
    else:
        k, nyquist = round(want / 2), False
    k = min(k, h - c)
    picked = c + torch.ceil((torch.arange(k) + 0.5) * (h - c) / max(k, 1)).long()
    return torch.isin(freq.abs(), picked) | (nyquist & (freq == -(width // 2)))


class MRI(LinearOperator):
    """``y = M F x`` for real images ``x``: Cartesian line undersampling of centred k-space.

    Lines are phase-encode columns (the mask varies along the width, every row of a
    sampled column is kept). ``A_adjoint`` returns ``Re(F^H M y)``, the exact adjoint
    for the real inner product on complex measurements viewed as real pairs.
    """

    def __init__(
        self,
        acceleration: int = 4,
        center_fraction: float = 0.08,
        mask: str = "equispaced",
        seed: int = 0,
    ):
        if mask not in MASK_TYPES:
            raise ValueError(f"unknown MRI mask {mask!r}; valid: {list(MASK_TYPES)}")
        self.acceleration = int(acceleration)
        self.center_fraction = float(center_fraction)
        self.mask_type = mask
        self.seed = int(seed)
        self._mask_cache: dict[tuple, torch.Tensor] = {}

    def mask(self, width: int, like: torch.Tensor | None = None) -> torch.Tensor:
        """The sampling mask as a real 0/1 tensor ``[width]`` (broadcasts over rows)."""
        device = None if like is None else like.device
        dtype = torch.float32 if like is None else like.real.dtype
        key = (width, device, dtype)
        if key not in self._mask_cache:
            m = line_mask(width, self.acceleration, self.center_fraction, self.mask_type, self.seed)
            self._mask_cache[key] = m.to(device=device, dtype=dtype)
        return self._mask_cache[key]

    def A(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_complex():
            raise TypeError("MRI operates on real images")
        return self.mask(x.shape[-1], x) * fft2c(x.to(_complex_of(x.dtype)))

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(self.mask(y.shape[-1], y) * y).real

    def prox(self, x0: torch.Tensor, y: torch.Tensor, rho: float | torch.Tensor) -> torch.Tensor:
        """``Re(F^H [(M y + rho F x0) / (M + rho)])``.

        Exact for the real-constrained problem because the mask is conjugate-symmetric:
        ``F^H M F`` then maps real images to real images, so the complex solution of the
        normal equations is already real (up to rounding, which ``Re`` removes).
        """
        rho = as_batch_weight(rho, x0)
        m = self.mask(x0.shape[-1], x0)
        k = (m * y + rho * fft2c(x0.to(_complex_of(x0.dtype)))) / (m + rho)
        return ifft2c(k).real

    def measure(
        self, x: torch.Tensor, sigma_n: float, generator: GeneratorLike = None
    ) -> torch.Tensor:
        """``y = M (F x + n)``, complex noise with ``sigma_n`` per real and imaginary part."""
        y = self.A(x)
        noise = randn_like_batch(torch.view_as_real(y), generator, dtype=x.dtype)
        return y + sigma_n * self.mask(x.shape[-1], x) * torch.view_as_complex(noise)

    def init(self, y: torch.Tensor) -> torch.Tensor:
        """The zero-filled reconstruction ``Re(F^H M y)``."""
        return self.A_adjoint(y)

    def num_measurements(self, x_shape: Sequence[int]) -> int:
        c, h, w = per_sample_shape(x_shape)
        # Each sampled k-space location is one complex number, i.e. two real measurements.
        return (
            2
            * c
            * h
            * int(
                line_mask(
                    w, self.acceleration, self.center_fraction, self.mask_type, self.seed
                ).sum()
            )
        )

    def __repr__(self) -> str:
        return (
            f"MRI(acceleration={self.acceleration}, center_fraction={self.center_fraction}, "
            f"mask={self.mask_type!r}, seed={self.seed})"
        )


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64
