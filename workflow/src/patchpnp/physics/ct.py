"""Parallel-beam CT: ``y = R x + n`` with ``R`` a discrete Radon transform
(docs/methods.md section 14).

Geometry. An ``N x N`` image of attenuation in [0, 1] units, its pixel ``(i, j)``
(row, column) centred at ``x = j - (N - 1) / 2``, ``y = i - (N - 1) / 2`` pixels.
``views`` angles ``theta_v = v * angle_range / views`` cover ``[0, angle_range)``
(180 degrees: sparse view; 120 degrees: limited angle). ``detectors`` bins (default
``2 N``) evenly span the image diagonal: bin ``k`` measures the line
``x cos(theta) + y sin(theta) = t_k``, ``t_k = (k - (D - 1) / 2) tau`` with spacing
``tau = sqrt(2) N / D`` pixels (0.71 pixels for the default ``D = 2 N``: every bin sees
the image, the detector covers its corners, and it is sqrt(2)-oversampled).

Units. A line integral is taken along path lengths measured in units of the image
side (``N`` pixels = 1), so a ray crossing the whole image through attenuation 1
measures 1 whatever the resolution, and the sinogram of a [0, 1] image lies in
[0, sqrt(2)]. The measurement noise is white Gaussian on the sinogram with standard
deviation ``sigma_n`` in these units: ``sigma_n = 0.001`` is a thousandth of the line
integral across the image at attenuation 1. With the image scaled by an attenuation
``mu_max`` and a field of view ``L``, it is log-transmission noise of
``sigma_n * mu_max * L``.

Discretisation. Joseph's method: a ray steps one pixel row (or column, whichever
axis it runs closer to) at a time and linearly interpolates the two pixels it
passes between, weighted by the path length of that step. The projector is a fixed
sparse matrix, built once per image size, device and precision; the back-projection
``A_adjoint`` is its transpose, so the adjoint is exact to rounding (not an
interpolating back-projector that only approximates it), and autograd through ``A``
uses that transpose. The filtered back-projection :meth:`CT.fbp` (the initial guess
and the classical baseline) filters each projection with a Hann-windowed ramp and
back-projects with linear interpolation.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .base import LinearOperator, per_sample_shape

# FBP's window: Hann, reaching zero at this fraction of the detector's Nyquist
# frequency (0.9: the filter of PaDIS's FBP baseline).
FBP_FREQUENCY_SCALING = 0.9


class _SparseLinear(torch.autograd.Function):
    """``matrix @ x`` for a sparse matrix whose transpose is given: its gradient is the
    transpose applied to the output's gradient, itself differentiable."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, matrix: torch.Tensor, transpose: torch.Tensor):
        ctx.matrix, ctx.transpose = matrix, transpose
        # The matrix's precision, also inside a network's autocast region.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return torch.sparse.mm(matrix, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _SparseLinear.apply(grad, ctx.transpose, ctx.matrix), None, None


def joseph_entries(
    size: int, angles: torch.Tensor, detectors: int, spacing: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(rows, columns, values)`` of the projection matrix, float64 on the CPU.

    Row ``v * detectors + k`` is the ray of view ``v`` and bin ``k``; column
    ``i * size + j`` is pixel ``(i, j)``. Values are path lengths in units of the
    image side. Pixels outside the image are zero (a ray passing half a pixel outside
    still picks up the edge pixel's share).
    """
    n, d = int(size), int(detectors)
    centre = (n - 1) / 2
    t = (torch.arange(d, dtype=torch.float64) - (d - 1) / 2) * spacing  # [D] pixels
    steps = torch.arange(n, dtype=torch.float64) - centre  # pixel centres along the step axis
    k = torch.arange(d)[:, None].expand(d, n)
    m = torch.arange(n)[None, :].expand(d, n)
    rows, cols, vals = [], [], []
    for v, theta in enumerate(angles.tolist()):
        c, s = math.cos(theta), math.sin(theta)
        along_rows = abs(c) >= abs(s)  # the ray (-s, c) runs closer to the row axis
        lead, other = (c, s) if along_rows else (s, c)
        # On the step through row (column) m, the ray is at column (row) a.
        a = (t[:, None] - steps[None, :] * other) / lead + centre  # [D, N]
        low = torch.floor(a)
        frac = a - low
        low = low.long()
        weight = 1.0 / (abs(lead) * n)  # the path length of one step, in image sides
        for offset, w in ((0, 1.0 - frac), (1, frac)):
            idx = low + offset
            ok = (idx >= 0) & (idx < n) & (w > 0)
            pixel = m * n + idx if along_rows else idx * n + m
            rows.append((v * d + k)[ok])
            cols.append(pixel[ok])
            vals.append(w[ok] * weight)
    return torch.cat(rows), torch.cat(cols), torch.cat(vals)


def _csr(rows, cols, vals, shape: tuple[int, int], device, dtype) -> torch.Tensor:
    """A sparse CSR matrix from its entries (sorted on the CPU, then moved)."""
    order = torch.argsort(rows * shape[1] + cols)
    crow = torch.zeros(shape[0] + 1, dtype=torch.long)
    crow[1:] = torch.bincount(rows, minlength=shape[0]).cumsum(0)
    with warnings.catch_warnings():
        # torch flags sparse CSR as beta on first use; the operations here are basic ones.
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            crow.to(device),
            cols[order].to(device),
            vals[order].to(device=device, dtype=dtype),
            shape,
            check_invariants=False,
        )


def hann_ramp(detectors: int, spacing: float, scaling: float, device, dtype) -> torch.Tensor:
    """The frequency response (``rfft`` bins of the padded length) of the FBP filter.

    The ramp is the band-limited (Ram-Lak) kernel sampled in space, ``h[0] = 1/4``,
    ``h[n] = -1 / (pi n)^2`` for odd ``n``, divided by the bin ``spacing`` (so it has
    no zero-frequency error); a Hann window ``cos^2(pi f / (2 f_c))`` with ``f_c``
    ``scaling`` times the Nyquist frequency tapers it. Zero padding to at least twice
    the detector count keeps the circular convolution from wrapping.
    """
    padded = max(64, 1 << math.ceil(math.log2(2 * detectors)))
    offset = torch.arange(padded, dtype=torch.float64)
    offset = torch.where(offset <= padded // 2, offset, offset - padded)
    h = torch.where(
        offset.remainder(2) == 1, -1.0 / (math.pi * offset.abs().clamp_min(1)) ** 2, 0.0
    ).to(torch.float64)
    h[0] = 0.25
    response = torch.fft.rfft(h).real / spacing
    freq = torch.fft.rfftfreq(padded, dtype=torch.float64) / 0.5  # 1 at Nyquist
    ratio = freq / scaling
    window = torch.where(ratio <= 1, torch.cos(math.pi * ratio / 2) ** 2, 0.0)
    return (response * window).to(device=device, dtype=dtype)


class CT(LinearOperator):
    """Parallel-beam CT of ``views`` angles over ``angle_range`` degrees, ``detectors`` bins.

    Images ``[B, C, N, N]``, sinograms ``[B, C, views, detectors]`` (``detectors``
    default ``2 N``). ``image_size`` (set by the code, not the config) fixes ``N`` for
    :meth:`A_adjoint`, :meth:`fbp` and :meth:`prox`, which see only a sinogram; without
    it ``N`` is read from the sinogram as ``detectors / 2``, which holds for the default
    detector count only. Every tensor is built on the input's device, in float64 for a
    float64 input and float32 otherwise.
    """

    # CG iterations of the data step (:meth:`prox`), warm-started at ``x0``.
    cg_iters = 30

    def __init__(
        self,
        views: int = 60,
        angle_range: float = 180.0,
        detectors: int | None = None,
        image_size: int | None = None,
    ):
        if int(views) != views or views < 1:
            raise ValueError(f"CT views must be a positive integer, got {views}")
        if not 0 < float(angle_range) <= 360:
            raise ValueError(f"CT angle_range must be in (0, 360] degrees, got {angle_range}")
        if detectors is not None and (int(detectors) != detectors or detectors < 2):
            raise ValueError(
                f"CT detectors must be an integer >= 2 (or null: 2 N), got {detectors}"
            )
        if image_size is not None and (int(image_size) != image_size or image_size < 2):
            raise ValueError(f"CT image_size must be an integer >= 2, got {image_size}")
        self.views = int(views)
        self.angle_range = float(angle_range)
        self.detectors = None if detectors is None else int(detectors)
        self.image_size = None if image_size is None else int(image_size)
        self._matrices: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        # The CG relative residuals of the last data step (per image), for a log.
        self.last_residual: torch.Tensor | None = None

    # -- geometry ------------------------------------------------------------------------
    def angles(self) -> torch.Tensor:
        """The view angles in radians, float64 ``[views]``: uniform on ``[0, angle_range)``."""
        step = math.radians(self.angle_range) / self.views
        return torch.arange(self.views, dtype=torch.float64) * step

    def detector_count(self, size: int) -> int:
        """The detector bins for ``size x size`` images."""
        return 2 * int(size) if self.detectors is None else self.detectors

    def detector_spacing(self, size: int) -> float:
        """The bin spacing in pixels: the detector spans the image diagonal."""
        return math.sqrt(2) * int(size) / self.detector_count(size)

    def _image_size(self, x: torch.Tensor) -> int:
        if x.ndim != 4 or x.shape[-1] != x.shape[-2]:
            raise ValueError(f"CT expects square images [B, C, N, N], got {tuple(x.shape)}")
        size = int(x.shape[-1])
        if self.image_size is not None and size != self.image_size:
            raise ValueError(f"CT built for {self.image_size}-pixel images got {size} pixels")
        return size

    def _sinogram_size(self, y: torch.Tensor) -> int:
        """The image size a sinogram ``[B, C, views, detectors]`` belongs to."""
        if y.ndim != 4 or y.shape[-2] != self.views:
            raise ValueError(
                f"CT expects sinograms [B, C, {self.views}, detectors], got {tuple(y.shape)}"
            )
        d = int(y.shape[-1])
        if self.image_size is not None:
            size = self.image_size
        elif self.detectors is None and d % 2 == 0:
            size = d // 2
        else:
            raise ValueError(
                f"CT with {d} detector bins cannot tell the image size from a sinogram; "
                f"give image_size (the default detectors = 2 N needs none)"
            )
        if d != self.detector_count(size):
            raise ValueError(
                f"sinogram has {d} detector bins; CT of {size}-pixel images has "
                f"{self.detector_count(size)}"
            )
        return size

    @staticmethod
    def _work_dtype(t: torch.Tensor) -> torch.dtype:
        return torch.float64 if t.dtype == torch.float64 else torch.float32

    def matrices(
        self, size: int, device: torch.device | str, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The projector and its transpose (sparse CSR) for ``size``-pixel images, cached."""
        key = (int(size), str(torch.device(device)), dtype)
        if key not in self._matrices:
            d = self.detector_count(size)
            rows, cols, vals = joseph_entries(size, self.angles(), d, self.detector_spacing(size))
            shape = (self.views * d, size * size)
            self._matrices[key] = (
                _csr(rows, cols, vals, shape, device, dtype),
                _csr(cols, rows, vals, shape[::-1], device, dtype),
            )
        return self._matrices[key]

    # -- the operator ----------------------------------------------------------------------
    def A(self, x: torch.Tensor) -> torch.Tensor:
        """The sinogram ``[B, C, views, detectors]`` of images ``[B, C, N, N]``."""
        size = self._image_size(x)
        dtype = self._work_dtype(x)
        forward, transpose = self.matrices(size, x.device, dtype)
        b, c = x.shape[:2]
        cols = x.to(dtype).reshape(b * c, size * size).T
        y = _SparseLinear.apply(cols, forward, transpose).T
        return y.reshape(b, c, self.views, self.detector_count(size)).to(x.dtype)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """The back-projection: the exact transpose of :meth:`A`."""
        size = self._sinogram_size(y)
        dtype = self._work_dtype(y)
        forward, transpose = self.matrices(size, y.device, dtype)
        b, c = y.shape[:2]
        cols = y.to(dtype).reshape(b * c, -1).T
        x = _SparseLinear.apply(cols, transpose, forward).T
        return x.reshape(b, c, size, size).to(y.dtype)

    def prox(
        self,
        x0: torch.Tensor,
        y: torch.Tensor,
        rho: float | torch.Tensor,
        iters: int | None = None,
    ) -> torch.Tensor:
        """``(A^T A + rho I)^-1 (A^T y + rho x0)`` by CG from ``x0``: ``iters`` iterations
        (default :attr:`cg_iters`); ``A^T A`` couples every pixel, so there is no closed form."""
        x, residual = self.cg_prox(x0, y, rho, self.cg_iters if iters is None else iters)
        self.last_residual = residual.detach()
        return x

    def fbp(
        self, y: torch.Tensor, frequency_scaling: float = FBP_FREQUENCY_SCALING
    ) -> torch.Tensor:
        """Filtered back-projection with a Hann-windowed ramp filter (:func:`hann_ramp`).

        Each projection is filtered along the detector, then back-projected with linear
        interpolation and weighted by the angular step ``angle_range / views``; over
        180 degrees this inverts :meth:`A` up to the filter's band limit and the angular
        sampling. Over a limited range it is the usual FBP of the views there are.
        """
        if not 0 < frequency_scaling <= 1:
            raise ValueError(f"frequency_scaling must be in (0, 1], got {frequency_scaling}")
        size = self._sinogram_size(y)
        dtype = self._work_dtype(y)
        d, spacing = self.detector_count(size), self.detector_spacing(size)
        b, c = y.shape[:2]
        sino = y.to(dtype).reshape(b * c, self.views, d)
        response = hann_ramp(d, spacing / size, frequency_scaling, y.device, dtype)
        padded = 2 * (response.shape[0] - 1)
        filtered = torch.fft.irfft(torch.fft.rfft(sino, n=padded) * response, n=padded)[..., :d]
        # One zero bin each side: a sample beyond the detector reads zero.
        filtered = F.pad(filtered, (1, 1))
        theta = self.angles().to(device=y.device)
        coord = torch.arange(size, dtype=torch.float64, device=y.device) - (size - 1) / 2
        # Detector position (in bins, shifted by the zero pad) of every pixel in every view.
        u = (
            (
                coord[None, None, :] * torch.cos(theta)[:, None, None]
                + coord[None, :, None] * torch.sin(theta)[:, None, None]
            )
            / spacing
            + (d - 1) / 2
            + 1
        )
        u = u.clamp(0, d + 1).reshape(self.views, size * size)
        low = torch.floor(u).long().clamp(max=d)
        frac = (u - low).to(dtype)
        index = low.expand(b * c, -1, -1)
        image = filtered.gather(2, index) * (1 - frac) + filtered.gather(2, index + 1) * frac
        step = math.radians(self.angle_range) / self.views
        return (image.sum(dim=1) * step).reshape(b, c, size, size).to(y.dtype)

    def init(self, y: torch.Tensor) -> torch.Tensor:
        """The FBP (solvers clamp it to [0, 1])."""
        return self.fbp(y)

    def num_measurements(self, x_shape: Sequence[int]) -> int:
        channels, height, _ = per_sample_shape(x_shape)
        return self.views * self.detector_count(height) * channels

    def __repr__(self) -> str:
        detectors = "2N" if self.detectors is None else self.detectors
        return f"CT(views={self.views}, angle_range={self.angle_range:g}, detectors={detectors})"
