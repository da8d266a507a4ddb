"""Shifted-grid patch inference (PaDIS, Hu et al. 2024) with the padding fix of Roy et al. 2025.

:class:`ShiftedGridDenoiser` turns any image-space denoiser ``inner(x, sigma)`` into a
denoiser of the same signature that only ever shows ``inner`` ``P x P`` tiles. Per
image axis of length ``N`` with ``P < N``: ``T = ceil((N + P - 1) / P)`` tiles
(``N / P + 1`` when ``P`` divides ``N``) and ``M = T P - N`` (``M = P`` then); the
image is padded by ``M`` on both sides, a shift ``a`` is drawn uniformly from
``[0, P)``, so that every offset mod ``P`` can be a seam, and the window
``[a, a + T P)`` of the padded canvas, which always contains the image, is cut into
``T`` tiles (:class:`patchpnp.patching.tiling.AxisGrid`).
All tiles are denoised at the same sigma, put back, and the central ``N`` pixels are
kept. Redrawing the shift at every call moves the seams, so they average out over a
solver's steps; living inside the denoiser, the scheme works with any solver.

Padding: ``'zeros'`` (PaDIS), ``'reflect'`` (the paper's fix: no artificial
foreground-to-background edge) or ``'replicate'``. PaDIS's zero margin is part of the
diffusion state: at level ``s`` it holds zeros (black, -1 in network units) plus
fresh noise of level ``s``, as every other pixel of the state does; a clean black band
beside noisy pixels is something the prior never saw, and would bias the ablation in
the paper's favour. Reflection and replication copy image pixels (their noise
included) through an index map, so a margin of any width works (``M >= N`` reflects
back and forth) and the gradient folds back onto the copied pixels exactly.

Random draws. The shifts and the margin noise of a call come from the generators the
caller passes (one per sample: the solver's *grid* stream, docs/methods.md section 10),
never from the solver's noise stream, so tiling changes nothing else in a solve.

Coordinate channels (position-aware priors, docs/methods.md section 13). A prior
trained by the ``padis`` scheme saw patches of a canvas: the training image zero-padded
by ``pad`` on every side (``canvas_pad``, recorded with its weights; the inner denoiser
carries it, :func:`patchpnp.prior.loading.canvas_pad`). Inference gives every tile its
slice of that canvas's coordinate map: image pixel ``i`` has canvas index ``i + pad``,
and a margin pixel its own canvas index (not the nearest image pixel's), computed by
the function training uses (:func:`patchpnp.prior.precond.canvas_coordinates`), so at
the training size a pixel has the coordinates it had in training (PaDIS itself
normalises them by another canvas at test time, a known pitfall). The margin must lie
on the canvas: ``M <= pad``, else :class:`CanvasError`. Where ``P`` divides ``N`` the
grid is PaDIS's, ``(k + 1) P = N + M`` with ``M = P`` and the shift in ``[0, M)``; so
with PaDIS's pad of N/4 the tiles may be up to N/4 (PaDIS: 64 at 256). A padded pixel
keeps its position's coordinates whatever the padding puts there (reflection shows
image content at margin coordinates); the zero margin is what training showed. The
whole-image pass-through uses the canvas too (the image at offset ``pad``). Images of
another size than the training images sit on a canvas of their own size plus ``2 pad``.
A position-aware prior without a recorded canvas (trained before the canvas was
recorded: coordinates over the unpadded image) keeps the old rule: a padded pixel gets
the coordinates of the image pixel it copies (reflect, replicate) or, in a zero margin,
of the nearest image pixel, so no coordinate leaves that prior's trained range.

Rectangular images are handled axis by axis. On an axis with ``P >= N`` the tiles
still have ``P`` pixels (``k = 0``, ``M = P - N``, one tile row), so a prior trained on
``P x P`` patches always sees ``P x P`` inputs; only when ``P`` covers both sides is the
wrapper a plain pass-through to ``inner`` (no padding, no shift drawn).

Gradients. When ``x`` requires grad (DPS differentiates the denoiser), the wrapper uses
:class:`_MemoryBoundedTiles`: the forward pass runs every tile without autograd and keeps
only ``x`` and the shifts; the backward pass recomputes one micro-batch of tiles at a
time with autograd, takes its vector-Jacobian product and accumulates it on the padded
canvas, then applies the adjoint of the padding. With the shift fixed the wrapper is a
sum of independent tile maps, so this is exact, and peak memory is that of one
micro-batch instead of growing with the number of tiles. The recomputation costs one
extra forward pass per tile, so by default (``memory_bounded_grad=None``) it is used
only where it bounds memory: when ``patch_batch`` splits the tiles into several
micro-batches. With all tiles in one batch, plain autograd holds the same activations
and is a third faster (one forward and one backward instead of two and one). Only the
gradient with respect to ``x`` is produced: if ``inner`` has parameters that require
grad, the wrapper falls back to plain autograd (exact for the parameters too, but not
memory-bounded) and warns.

One pass for a pixel-local cotangent. The recomputation is needed because a general
cotangent ``g`` (DPS's ``A^T (A x0 - y)`` for super-resolution) is known only once the
whole ``x0`` is. When ``g`` at a pixel depends on ``x0`` there only (denoising),
:meth:`ShiftedGridDenoiser.local_vjp` takes each tile's cotangent from its own output and
differentiates the micro-batch at once: one forward and one backward per tile, the
memory of one micro-batch, and no recomputation.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from patchpnp.errors import PatchpnpError
from patchpnp.layout import PADDINGS
from patchpnp.patching.tiling import AxisGrid
from patchpnp.prior.precond import (
    canvas_coordinates,
    coordinate_channels,
    whole_image_coordinates,
)
from patchpnp.runtime import keyed_randint, keyed_randn_per_sample

# ``cotangent(values, sample, rows, cols)``: the cotangent on the image pixels
# ``[sample, :, rows, cols]``, computed from the denoised ``values`` there ([C, h, w])
# alone: a pixel-local one, such as DPS's ``A^T (A x0 - y)`` for ``A = I``.
LocalCotangent = Callable[[torch.Tensor, int, slice, slice], torch.Tensor]


class CanvasError(PatchpnpError, ValueError):
    """The inference margin does not fit on a position-aware prior's training canvas."""


def whole_image_vjp(
    out: torch.Tensor, x: torch.Tensor, cotangent: LocalCotangent
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, J^T g)`` for an output ``out`` recorded from ``x``, ``g = cotangent(out)``
    taken sample by sample on the whole image (the untiled form of the local product)."""
    values = out.detach()
    rows, cols = slice(0, values.shape[-2]), slice(0, values.shape[-1])
    g = torch.stack([cotangent(values[b], b, rows, cols) for b in range(values.shape[0])])
    if not out.requires_grad:
        return values, torch.zeros_like(x)
    (gx,) = torch.autograd.grad(out, x, g.to(out.dtype))
    return values, gx


def source_positions(axis: AxisGrid, padding: str) -> torch.Tensor:
    """The image position every position of the padded axis copies (``[size + 2 pad]``).

    ``reflect`` mirrors about the edge pixels (torch's ``'reflect'``, period
    ``2 (N - 1)``, so margins wider than the image reflect back and forth),
    ``replicate`` repeats the edge pixel; for ``zeros`` the margin copies nothing and
    the nearest image position is returned (used for coordinate channels only).
    """
    pos = torch.arange(axis.size + 2 * axis.pad) - axis.pad
    if padding == "reflect" and axis.size > 1:
        period = 2 * (axis.size - 1)
        pos = pos.remainder(period)
        return torch.where(pos >= axis.size, period - pos, pos)
    return pos.clamp(0, axis.size - 1)


def image_coordinates(
    rows: torch.Tensor, cols: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """Coordinate channels ``(i / (N - 1) - 0.5) * 2`` at image rows/cols (may be out of range).

    Returns ``[2, len(rows), len(cols)]``: the row channel first, then the column channel,
    the normalisation of position-aware priors trained before their canvas was recorded
    (coordinates over the unpadded image; priors with a canvas use
    :func:`patchpnp.prior.precond.canvas_coordinates`).
    Positions outside the image would extrapolate beyond [-1, 1]; the wrapper passes
    the positions that :func:`source_positions` gives, so they never do.
    The same function as training uses (:func:`patchpnp.prior.coordinate_channels`).
    """
    return coordinate_channels(rows, cols, height, width)[0]


class _TilePlan:
    """One call's tiling: the grid, the per-sample shifts, and how to call the inner network.

    Everything that the memory-bounded backward must replay exactly lives here, so the
    forward and the recomputation cannot disagree.
    """

    def __init__(
        self,
        module: ShiftedGridDenoiser,
        rows: AxisGrid,
        cols: AxisGrid,
        shifts: list[tuple[int, int]],
        sigma: float | torch.Tensor,
        device: torch.device,
        dtype: torch.dtype,
        margin_noise: torch.Tensor | None = None,
    ):
        self.inner = module.inner
        self.padding = module.padding
        self.uses_coords = module.inner_coord_channels == 2
        self.canvas_pad = module.canvas_pad
        self.rows, self.cols = rows, cols
        self.shifts = shifts
        self.batch = len(shifts)
        self.tiles_per_sample = rows.count * cols.count
        self.num_tiles = self.batch * self.tiles_per_sample
        self.chunk = module.patch_batch or self.num_tiles
        self.sigma = _sigma_per_tile(sigma, self.batch, self.tiles_per_sample)
        self.device, self.dtype = device, dtype
        # Zero padding only: level-sigma noise on the margin (zero inside the image),
        # drawn once per call so the memory-bounded backward replays the same canvas.
        self.margin_noise = margin_noise
        self.row_src = source_positions(rows, self.padding).to(device)
        self.col_src = source_positions(cols, self.padding).to(device)

    # -- geometry: image <-> padded canvas <-> shifted windows <-> tiles -----------------
    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """The padded canvas. Its autograd is the padding's exact adjoint (index maps
        fold the gradient back onto the copied pixels; the zero margin drops it)."""
        if self.padding != "zeros":
            return x.index_select(-2, self.row_src).index_select(-1, self.col_src)
        mr, mc = self.rows.pad, self.cols.pad
        canvas = F.pad(x, (mc, mc, mr, mr))
        if self.margin_noise is not None:
            canvas = canvas + self.margin_noise.to(dtype=canvas.dtype)
        return canvas

    def windows(self, canvas: torch.Tensor) -> torch.Tensor:
        """Each sample's shifted window ``[B, C, span_r, span_c]`` of the padded canvas."""
        lr, lc = self.rows.span, self.cols.span
        return torch.stack(
            [canvas[b, :, a : a + lr, c : c + lc] for b, (a, c) in enumerate(self.shifts)]
        )

    def windows_adjoint(self, windows: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`windows`: put each window back on a zero canvas."""
        b_, ch = windows.shape[:2]
        canvas = windows.new_zeros(
            b_, ch, self.rows.size + 2 * self.rows.pad, self.cols.size + 2 * self.cols.pad
        )
        lr, lc = self.rows.span, self.cols.span
        for b, (a, c) in enumerate(self.shifts):
            canvas[b, :, a : a + lr, c : c + lc] += windows[b]
        return canvas

    def to_tiles(self, windows: torch.Tensor) -> torch.Tensor:
        """``[B, C, span_r, span_c] -> [B * T, C, P, P]``, tiles sample-major, row-major."""
        b_, ch = windows.shape[:2]
        nr, nc, pr, pc = self.rows.count, self.cols.count, self.rows.tile, self.cols.tile
        tiles = windows.reshape(b_, ch, nr, pr, nc, pc).permute(0, 2, 4, 1, 3, 5)
        return tiles.reshape(b_ * nr * nc, ch, pr, pc)

    def from_tiles(self, tiles: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_tiles` (tiles do not overlap, so it is also its adjoint)."""
        ch = tiles.shape[1]
        nr, nc, pr, pc = self.rows.count, self.cols.count, self.rows.tile, self.cols.tile
        windows = tiles.reshape(self.batch, nr, nc, ch, pr, pc).permute(0, 3, 1, 4, 2, 5)
        return windows.reshape(self.batch, ch, nr * pr, nc * pc)

    def crop(self, windows: torch.Tensor) -> torch.Tensor:
        """The image region of each window (it starts at ``M - shift`` inside the window)."""
        h, w = self.rows.size, self.cols.size
        mr, mc = self.rows.pad, self.cols.pad
        return torch.stack(
            [
                windows[b, :, mr - a : mr - a + h, mc - c : mc - c + w]
                for b, (a, c) in enumerate(self.shifts)
            ]
        )

    def crop_adjoint(self, g: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`crop`: ``g`` in the image region of zero windows."""
        h, w = self.rows.size, self.cols.size
        mr, mc = self.rows.pad, self.cols.pad
        windows = g.new_zeros(g.shape[0], g.shape[1], self.rows.span, self.cols.span)
        for b, (a, c) in enumerate(self.shifts):
            windows[b, :, mr - a : mr - a + h, mc - c : mc - c + w] = g[b]
        return windows

    def coords(self) -> torch.Tensor:
        """Coordinate channels of every tile ``[B * T, 2, P, P]``: on the prior's training
        canvas when it has one, else in original image coordinates (module doc)."""
        per_sample = []
        row_src, col_src = self.row_src.cpu(), self.col_src.cpu()
        for a, c in self.shifts:
            if self.canvas_pad is not None:
                # Window pixel j sits at padded index shift + j, image index
                # shift + j - M, canvas index shift + j - M + canvas_pad.
                rows = torch.arange(a, a + self.rows.span) - self.rows.pad
                cols = torch.arange(c, c + self.cols.span) - self.cols.pad
                h, w = self.rows.size, self.cols.size
                per_sample.append(canvas_coordinates(rows, cols, h, w, self.canvas_pad)[0])
                continue
            # Window pixel j sits at canvas index shift + j; it shows the image pixel
            # source_positions gives there (module doc: coordinates stay in training range).
            rows = row_src[a : a + self.rows.span]
            cols = col_src[c : c + self.cols.span]
            per_sample.append(image_coordinates(rows, cols, self.rows.size, self.cols.size))
        windows = torch.stack(per_sample).to(device=self.device, dtype=self.dtype)
        return self.to_tiles(windows)

    # -- network evaluation ----------------------------------------------------------------
    def chunks(self) -> list[slice]:
        return [
            slice(i, min(i + self.chunk, self.num_tiles))
            for i in range(0, self.num_tiles, self.chunk)
        ]

    def run_inner(
        self, tiles: torch.Tensor, idx: slice, coords: torch.Tensor | None
    ) -> torch.Tensor:
        sigma = (
            self.sigma[idx]
            if isinstance(self.sigma, torch.Tensor) and self.sigma.ndim
            else self.sigma
        )
        if self.uses_coords:
            return self.inner(tiles, sigma, coords=coords[idx])
        return self.inner(tiles, sigma)

    def tiles_in(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_tiles(self.windows(self.pad(x)))

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """The shifted-grid denoiser, differentiable by plain autograd if grad mode is on."""
        tiles = self.tiles_in(x)
        coords = self.coords() if self.uses_coords else None
        out = torch.cat([self.run_inner(tiles[i], i, coords) for i in self.chunks()])
        return self.crop(self.from_tiles(out))

    def vjp(self, x: torch.Tensor, g: torch.Tensor, counter: Callable[[int], None]) -> torch.Tensor:
        """``J(x)^T g`` by micro-batched recomputation; memory of one micro-batch of tiles."""
        with torch.no_grad():
            tiles = self.tiles_in(x)
            g_tiles = self.to_tiles(self.crop_adjoint(g))
            coords = self.coords() if self.uses_coords else None
        grad_tiles = torch.zeros_like(tiles)
        for idx in self.chunks():
            with torch.enable_grad():
                t = tiles[idx].detach().requires_grad_(True)
                out = self.run_inner(t, idx, coords)
                if out.requires_grad:
                    (gt,) = torch.autograd.grad(
                        out, t, g_tiles[idx].to(out.dtype), allow_unused=True
                    )
                    if gt is not None:
                        grad_tiles[idx] = gt
            counter(idx.stop - idx.start)
        return self.tiles_adjoint(x, grad_tiles)

    def tiles_adjoint(self, x: torch.Tensor, grad_tiles: torch.Tensor) -> torch.Tensor:
        """Gradients of the tiles (inputs) to the gradient of the image ``x``."""
        grad_canvas = self.windows_adjoint(self.from_tiles(grad_tiles))
        # Adjoint of the padding: autograd of the padding itself folds the gradient of
        # padded pixels back onto their sources (reflect / replicate) or drops it (zeros).
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (gx,) = torch.autograd.grad(self.pad(xx), xx, grad_canvas)
        return gx

    def image_region(self, tile: int) -> tuple[int, slice, slice, slice, slice]:
        """Where tile number ``tile`` lands: ``(sample, image rows, image cols, tile rows,
        tile cols)``; the slices are empty for a tile that lies in the margin only."""
        b, k = divmod(tile, self.tiles_per_sample)
        r, c = divmod(k, self.cols.count)
        a, s = self.shifts[b]

        def span(index: int, axis: AxisGrid, shift: int) -> tuple[slice, slice]:
            # Window pixel j shows image pixel j - (pad - shift) (see :meth:`crop`).
            offset = axis.pad - shift
            lo, hi = index * axis.tile - offset, (index + 1) * axis.tile - offset
            lo, hi = max(lo, 0), min(hi, axis.size)
            hi = max(hi, lo)
            start = offset - index * axis.tile  # image position -> tile position
            return slice(lo, hi), slice(lo + start, hi + start)

        img_r, tile_r = span(r, self.rows, a)
        img_c, tile_c = span(c, self.cols, s)
        return b, img_r, img_c, tile_r, tile_c

    def local_vjp(
        self, x: torch.Tensor, cotangent: LocalCotangent, counter: Callable[[int], None]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The denoised image and ``J(x)^T g`` for a pixel-local ``g = cotangent(output)``,
        in one pass: each micro-batch is evaluated with autograd, its cotangent taken from
        its own output and differentiated at once. One forward and one backward per tile
        (the recomputing :meth:`vjp` needs two forwards), memory of one micro-batch."""
        with torch.no_grad():
            tiles = self.tiles_in(x)
            coords = self.coords() if self.uses_coords else None
        out_tiles, grad_tiles = None, torch.zeros_like(tiles)
        for idx in self.chunks():
            with torch.enable_grad():
                t = tiles[idx].detach().requires_grad_(True)
                out = self.run_inner(t, idx, coords)
                if out_tiles is None:
                    out_tiles = out.new_empty((self.num_tiles, *out.shape[1:]))
                out_tiles[idx] = out.detach()
                g = torch.zeros_like(out_tiles[idx])
                for j, tile in enumerate(range(idx.start, idx.stop)):
                    b, img_r, img_c, tile_r, tile_c = self.image_region(tile)
                    if img_r.stop > img_r.start and img_c.stop > img_c.start:
                        g[j, :, tile_r, tile_c] = cotangent(
                            out_tiles[tile, :, tile_r, tile_c], b, img_r, img_c
                        )
                if out.requires_grad:
                    (gt,) = torch.autograd.grad(out, t, g, allow_unused=True)
                    if gt is not None:
                        grad_tiles[idx] = gt
            counter(idx.stop - idx.start)
        return self.crop(self.from_tiles(out_tiles)), self.tiles_adjoint(x, grad_tiles)


class _MemoryBoundedTiles(torch.autograd.Function):
    """Autograd node of the tiled denoiser that stores only ``x`` (and the plan) for backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, plan: _TilePlan, module: ShiftedGridDenoiser):
        ctx.plan, ctx.module = plan, module
        ctx.save_for_backward(x)
        with torch.no_grad():
            return plan.apply(x)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        (x,) = ctx.saved_tensors
        return ctx.plan.vjp(x, g, ctx.module.count_backward), None, None


def _sigma_per_tile(sigma, batch: int, tiles_per_sample: int):
    """Repeat a per-sample sigma (leading dim ``B``) for each sample's tiles; scalars pass as is."""
    if isinstance(sigma, torch.Tensor) and sigma.ndim > 0:
        if sigma.shape[0] != batch:
            raise ValueError(
                f"sigma must be a scalar or have one entry per sample (batch {batch}), "
                f"got shape {tuple(sigma.shape)}"
            )
        return sigma.repeat_interleave(tiles_per_sample, dim=0)
    return sigma


GeneratorArg = torch.Generator | Sequence[torch.Generator] | None


class ShiftedGridDenoiser(nn.Module):
    """PaDIS shifted-grid patch inference around an image-space denoiser ``inner(x, sigma)``.

    Args:
        inner: the denoiser, called as ``inner(tiles, sigma)`` or, when
            ``inner.coord_channels == 2``, ``inner(tiles, sigma, coords=coords)`` with
            coordinate channels ``[tiles, 2, P, P]`` (rows first): on the training
            canvas of ``inner.canvas_pad`` pixels when it has one (``load_prior`` sets
            it for priors of the padis scheme), else in original image coordinates.
        patch_size: the tile side ``P``.
        padding: ``'zeros'``, ``'reflect'`` or ``'replicate'``.
        patch_batch: tiles per network call (micro-batch); ``None`` runs all tiles of
            all samples at once. The result does not depend on it; peak memory does.
        seed: seed of the wrapper-owned generator used when ``forward`` gets none.
        noisy_margin: with ``'zeros'``, fill the margin with zeros plus noise at the
            call's sigma (PaDIS, the default); ``False`` keeps it clean black (only to
            measure what the noise changes).
        memory_bounded_grad: when ``x`` requires grad, ``True`` uses the recomputing
            backward, ``False`` plain autograd through all tiles (same values, memory
            growing with the number of tiles), ``None`` (default) the recomputing one
            only when ``patch_batch`` splits a call's tiles into several micro-batches.

    Counters (cumulative, see :meth:`reset_counters`): ``calls`` (forward calls),
    ``tiles_evaluated`` (network inputs evaluated in forward passes, summed over the
    batch; a pass-through counts one per image) and ``backward_tiles`` (inputs
    differentiated; for the plain-autograd paths counted when the graph is recorded).
    """

    def __init__(
        self,
        inner: Callable[..., torch.Tensor],
        patch_size: int,
        padding: str = "reflect",
        patch_batch: int | None = None,
        seed: int = 0,
        memory_bounded_grad: bool | None = None,
        noisy_margin: bool = True,
    ):
        super().__init__()
        if padding not in PADDINGS:
            raise ValueError(f"unknown padding {padding!r}; valid: {list(PADDINGS)}")
        if int(patch_size) != patch_size or patch_size < 1:
            raise ValueError(f"patch_size must be a positive integer, got {patch_size}")
        if patch_batch is not None and (int(patch_batch) != patch_batch or patch_batch < 1):
            raise ValueError(f"patch_batch must be a positive integer or None, got {patch_batch}")
        self.inner = inner
        self.patch_size = int(patch_size)
        self.padding = padding
        self.patch_batch = None if patch_batch is None else int(patch_batch)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.memory_bounded_grad = (
            None if memory_bounded_grad is None else bool(memory_bounded_grad)
        )
        self.noisy_margin = bool(noisy_margin)
        self.reset_counters()
        self._warned_param_grad = False

    @property
    def inner_coord_channels(self) -> int:
        return int(getattr(self.inner, "coord_channels", 0) or 0)

    @property
    def canvas_pad(self) -> int | None:
        """The training canvas's margin of a position-aware ``inner`` (``None``: none)."""
        pad = getattr(self.inner, "canvas_pad", None)
        if self.inner_coord_channels != 2 or pad is None:
            return None
        return int(pad)

    def check_canvas(self, rows: AxisGrid, cols: AxisGrid) -> None:
        """Refuse a margin wider than the prior's training canvas pad (``M <= pad``)."""
        pad = self.canvas_pad
        if pad is None:
            return
        for axis, name in ((rows, "rows"), (cols, "columns")):
            if axis.pad > pad:
                raise CanvasError(
                    f"patch inference with tiles of {axis.tile} on an image of {axis.size} "
                    f"{name} pads it by M = {axis.pad} pixels, more than the canvas pad "
                    f"{pad} the position-aware prior was trained with: the margin's "
                    f"coordinates would leave the training canvas (need M <= {pad}; a tile "
                    f"size that divides the image has M = tile size)"
                )

    def reset_counters(self) -> None:
        self.calls = 0
        self.tiles_evaluated = 0
        self.backward_tiles = 0

    def grid(self, height: int, width: int) -> tuple[AxisGrid, AxisGrid]:
        """The row and column tilings of a ``height x width`` image."""
        return AxisGrid.for_axis(height, self.patch_size), AxisGrid.for_axis(width, self.patch_size)

    def passes_through(self, height: int, width: int) -> bool:
        """True when one tile covers the image: then the wrapper is ``inner`` itself."""
        return self.patch_size >= height and self.patch_size >= width

    def draw_shifts(
        self, batch: int, rows: AxisGrid, cols: AxisGrid, generator: GeneratorArg = None
    ) -> list[tuple[int, int]]:
        """One shift ``(a, b)`` uniform in ``[0, M_rows) x [0, M_cols)`` per sample.

        A single generator is used for the samples in order; a list gives sample ``b``
        its own generator, so its shift does not depend on the rest of the batch.
        """
        gens = self._generators(batch, generator)

        def draw(high: int, g: torch.Generator) -> int:
            if high <= 0:  # an axis whose single tile fits exactly: nothing to shift
                return 0
            return int(keyed_randint(high, (1,), g).item())

        return [(draw(rows.shifts, g), draw(cols.shifts, g)) for g in gens]

    def plan(
        self, x: torch.Tensor, sigma: float | torch.Tensor, generator: GeneratorArg = None
    ) -> _TilePlan:
        """Draw this call's shifts (and zero-margin noise) and return the tiling.

        Each sample draws its shift, then its margin noise, from its own generator
        (the solver's grid stream), so nothing here touches the solver's noise.
        """
        rows, cols = self.grid(*x.shape[-2:])
        self.check_canvas(rows, cols)
        gens = self._generators(x.shape[0], generator)
        shifts = self.draw_shifts(x.shape[0], rows, cols, gens)
        noise = None
        if self.padding == "zeros" and self.noisy_margin:
            noise = self._margin_noise(x, sigma, rows, cols, gens)
        return _TilePlan(self, rows, cols, shifts, sigma, x.device, x.dtype, noise)

    def _generators(self, batch: int, generator: GeneratorArg) -> list[torch.Generator]:
        """One generator per sample: the caller's, or the wrapper's own shared in order."""
        if generator is None:
            generator = self.generator
        if isinstance(generator, torch.Generator):
            return [generator] * batch
        gens = list(generator)
        if len(gens) != batch:
            raise ValueError(f"got {len(gens)} generators for a batch of {batch} samples")
        return gens

    @staticmethod
    def _margin_noise(
        x: torch.Tensor,
        sigma: float | torch.Tensor,
        rows: AxisGrid,
        cols: AxisGrid,
        gens: Sequence[torch.Generator],
    ) -> torch.Tensor:
        """``sigma_b n`` on the zero margin of each sample's canvas, 0 over the image."""
        b, ch, h, w = x.shape
        shape = (ch, h + 2 * rows.pad, w + 2 * cols.pad)
        noise = keyed_randn_per_sample(shape, gens, x.device, torch.float32).to(x.dtype)
        level = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).detach().reshape(-1)
        level = level.expand(b) if level.numel() == 1 else level
        if level.numel() != b:
            raise ValueError(f"sigma must be a scalar or one value per sample (batch {b})")
        noise[:, :, rows.pad : rows.pad + h, cols.pad : cols.pad + w] = 0.0
        return noise * level.reshape(b, 1, 1, 1)

    def forward(
        self, x: torch.Tensor, sigma: float | torch.Tensor, generator: GeneratorArg = None
    ) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}")
        batch, _, height, width = x.shape
        self.calls += 1
        recording = torch.is_grad_enabled() and x.requires_grad
        if self.passes_through(height, width):
            self.tiles_evaluated += batch
            self.backward_tiles += batch if recording else 0
            return self.forward_pass_through(x, sigma)

        plan = self.plan(x, sigma, generator)
        self.tiles_evaluated += plan.num_tiles
        if not recording:
            return plan.apply(x)
        if not self._recompute_for_grad(plan.num_tiles):
            self.backward_tiles += plan.num_tiles
            return plan.apply(x)
        if self._inner_params_need_grad():
            if not self._warned_param_grad:
                warnings.warn(
                    "ShiftedGridDenoiser: the inner network has parameters that require grad, "
                    "so the gradient uses plain autograd over all tiles (not memory-bounded). "
                    "Freeze the prior (requires_grad_(False)) for the memory-bounded path.",
                    stacklevel=2,
                )
                self._warned_param_grad = True
            self.backward_tiles += plan.num_tiles
            return plan.apply(x)
        return _MemoryBoundedTiles.apply(x, plan, self)

    def local_vjp(
        self,
        x: torch.Tensor,
        sigma: float | torch.Tensor,
        cotangent: LocalCotangent,
        generator: GeneratorArg = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The denoised image ``D(x)`` and ``J(x)^T g`` for a pixel-local cotangent
        ``g = cotangent(D(x))`` (its value at a pixel depends on ``D(x)`` there only).

        Then a tile's cotangent is known as soon as the tile is denoised, so every
        micro-batch is evaluated once with autograd and differentiated at once: one
        forward and one backward per tile and the memory of one micro-batch, where the
        general vector-Jacobian product (``g`` needs the whole output first) recomputes
        every tile. Same shifts, margin noise and counters as :meth:`forward`.
        """
        if x.ndim != 4:
            raise ValueError(f"expected images [B, C, H, W], got shape {tuple(x.shape)}")
        batch, _, height, width = x.shape
        self.calls += 1
        x = x.detach()
        if self.passes_through(height, width):
            self.tiles_evaluated += batch
            self.backward_tiles += batch
            with torch.enable_grad():
                xi = x.requires_grad_(True)
                return whole_image_vjp(self.forward_pass_through(xi, sigma), xi, cotangent)
        plan = self.plan(x, sigma, generator)
        self.tiles_evaluated += plan.num_tiles
        return plan.local_vjp(x, cotangent, self.count_backward)

    def count_backward(self, tiles: int) -> None:
        """Count ``tiles`` inputs differentiated (the tile plans report as they go)."""
        self.backward_tiles += tiles

    def forward_pass_through(self, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
        """``inner`` on whole images (one tile covers them), with their coordinates
        (on the training canvas, the image at offset ``canvas_pad``, when there is one)."""
        if self.inner_coord_channels == 2:
            coords = whole_image_coordinates(*x.shape[-2:], self.canvas_pad)
            coords = coords.to(device=x.device, dtype=x.dtype)
            return self.inner(x, sigma, coords=coords.expand(x.shape[0], -1, -1, -1))
        return self.inner(x, sigma)

    def _recompute_for_grad(self, num_tiles: int) -> bool:
        if self.memory_bounded_grad is not None:
            return self.memory_bounded_grad
        return self.patch_batch is not None and num_tiles > self.patch_batch

    def _inner_params_need_grad(self) -> bool:
        if not isinstance(self.inner, nn.Module):
            return False
        return any(p.requires_grad for p in self.inner.parameters())

    def extra_repr(self) -> str:
        return (
            f"patch_size={self.patch_size}, padding={self.padding!r}, "
            f"patch_batch={self.patch_batch}, memory_bounded_grad={self.memory_bounded_grad}, "
            f"noisy_margin={self.noisy_margin}, canvas_pad={self.canvas_pad}"
        )
