"""Tests of the shifted-grid patch denoiser: exactness, coverage, batching, gradients, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from patchpnp.patching.patches import AxisGrid, ShiftedGridDenoiser, image_coordinates
from torch import nn

PADDINGS = ("zeros", "reflect", "replicate")


def whole_image_coords(b: int, h: int, w: int, dtype=torch.float32) -> torch.Tensor:
    rows = (torch.arange(h, dtype=torch.float64) / (h - 1) - 0.5) * 2
    cols = (torch.arange(w, dtype=torch.float64) / (w - 1) - 0.5) * 2
    grid = torch.stack([rows[:, None].expand(h, w), cols[None, :].expand(h, w)])
    return grid.to(dtype).expand(b, 2, h, w)


class Pointwise(nn.Module):
    """A fixed random nonlinear per-pixel map of (x, sigma[, coords]): tiling cannot change it."""

    def __init__(self, channels: int = 2, coord_channels: int = 0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.coord_channels = coord_channels
        self.w1 = nn.Parameter(
            torch.randn(8, channels + coord_channels, generator=g), requires_grad=False
        )
        self.w2 = nn.Parameter(torch.randn(channels, 8, generator=g), requires_grad=False)

    def forward(self, x, sigma, coords=None):
        if self.coord_channels:
            x = torch.cat([x, coords], dim=1)
        s = sigma.view(-1, 1, 1, 1) if isinstance(sigma, torch.Tensor) else sigma
        h = torch.tanh(torch.einsum("oc,bchw->bohw", self.w1, x) + s)
        return torch.einsum("oc,bchw->bohw", self.w2, h)


class SmallConvNet(nn.Module):
    """A non-pointwise inner denoiser: 3x3 convolutions with a nonlinearity."""

    def __init__(self, channels: int = 1, width: int = 8, coord_channels: int = 0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.coord_channels = coord_channels
        self.net = nn.Sequential(
            nn.Conv2d(channels + coord_channels + 1, width, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(width, channels, 3, padding=1),
        )
        self.requires_grad_(False)

    def forward(self, x, sigma, coords=None):
        s = (
            torch.as_tensor(sigma, dtype=x.dtype)
            .reshape(-1, 1, 1, 1)
            .expand(x.shape[0], 1, *x.shape[2:])
        )
        parts = [x, s] + ([coords] if self.coord_channels else [])
        return x + self.net(torch.cat(parts, dim=1))


def numpy_source_index(n: int, pad: int, padding: str) -> torch.Tensor:
    """The image index each padded position copies, from numpy's own padding modes
    (which reflect back and forth when the margin is wider than the image)."""
    mode = {"reflect": "reflect", "replicate": "edge", "zeros": "edge"}[padding]
    return torch.from_numpy(np.pad(np.arange(n), pad, mode=mode))


def reference_shifted_grid(
    inner, x, sigma, patch, padding, shifts, coords=False, margin_noise=None
):
    """Independent, non-memory-bounded implementation (plain autograd through everything)."""
    b_, _, h, w = x.shape
    rows, cols = AxisGrid.for_axis(h, patch), AxisGrid.for_axis(w, patch)
    src_r = numpy_source_index(h, rows.pad, padding)
    src_c = numpy_source_index(w, cols.pad, padding)
    if padding == "zeros":
        canvas = F.pad(x, (cols.pad, cols.pad, rows.pad, rows.pad))
        if margin_noise is not None:
            canvas = canvas + margin_noise
    else:
        canvas = x[:, :, src_r][:, :, :, src_c]
    outs = []
    for b, (a, c) in enumerate(shifts):
        row_tiles = []
        for p in range(rows.count):
            col_tiles = []
            for q in range(cols.count):
                r0, c0 = a + p * patch, c + q * patch
                tile = canvas[b : b + 1, :, r0 : r0 + patch, c0 : c0 + patch]
                sig = sigma[b : b + 1] if isinstance(sigma, torch.Tensor) else sigma
                if coords:
                    rr, cc = src_r[r0 : r0 + patch], src_c[c0 : c0 + patch]
                    co = image_coordinates(rr, cc, h, w)[None].to(x.dtype)
                    col_tiles.append(inner(tile, sig, coords=co))
                else:
                    col_tiles.append(inner(tile, sig))
            row_tiles.append(torch.cat(col_tiles, dim=3))
        window = torch.cat(row_tiles, dim=2)
        outs.append(window[:, :, rows.pad - a : rows.pad - a + h, cols.pad - c : cols.pad - c + w])
    return torch.cat(outs)


# (a) exactness against whole-image inference for a pointwise inner --------------------------
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(
    "shape,patch",
    [((2, 2, 32, 32), 8), ((2, 2, 30, 30), 8), ((3, 2, 20, 36), 8), ((1, 2, 17, 23), 5)],
)
@pytest.mark.parametrize("coords", [False, True])
def test_pointwise_inner_equals_whole_image(padding, shape, patch, coords):
    inner = Pointwise(channels=shape[1], coord_channels=2 if coords else 0)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    sigma = torch.rand(shape[0], generator=torch.Generator().manual_seed(2))
    den = ShiftedGridDenoiser(inner, patch, padding=padding, patch_batch=7)
    b_, _, h, w = shape
    ref = inner(x, sigma, coords=whole_image_coords(b_, h, w)) if coords else inner(x, sigma)
    for _ in range(4):  # several shifts
        assert torch.allclose(den(x, sigma), ref, atol=1e-6)


# (b) tile coverage ---------------------------------------------------------------------
class Recorder(nn.Module):
    def __init__(self, value=None):
        super().__init__()
        self.value = value
        self.seen: list[torch.Tensor] = []

    def forward(self, x, sigma):
        self.seen.append(x.detach().clone())
        return torch.full_like(x, self.value) if self.value is not None else x


@pytest.mark.parametrize(
    "shape,patch", [((2, 1, 32, 32), 8), ((2, 1, 30, 26), 8), ((1, 1, 40, 16), 12)]
)
def test_every_pixel_covered_exactly_once(shape, patch):
    b_, _, h, w = shape
    ones = ShiftedGridDenoiser(Recorder(1.0), patch, padding="reflect")
    assert torch.equal(ones(torch.rand(shape), 0.1), torch.ones(shape))

    # Pixel ids 1..HW with zero padding: over every tile, each id must appear exactly once.
    ids = torch.arange(1, h * w + 1, dtype=torch.float64).reshape(1, 1, h, w).repeat(b_, 1, 1, 1)
    rec = Recorder()
    den = ShiftedGridDenoiser(rec, patch, padding="zeros", patch_batch=5, noisy_margin=False)
    rows, cols = AxisGrid.for_axis(h, patch), AxisGrid.for_axis(w, patch)
    seen_shifts = set()
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        rec.seen.clear()
        plan_gen_state = gen.get_state()
        out = den(ids, 0.1, generator=gen)
        assert torch.equal(out, ids)  # identity inner -> identity wrapper
        tiles = torch.cat(rec.seen)
        assert tiles.shape == (b_ * rows.count * cols.count, 1, patch, patch)
        per_sample = tiles.reshape(b_, -1)
        for b in range(b_):
            vals = per_sample[b][per_sample[b] > 0]
            assert torch.equal(torch.sort(vals).values, ids[b].flatten())
        probe = torch.Generator()
        probe.set_state(plan_gen_state)
        seen_shifts.update(den.draw_shifts(b_, rows, cols, probe))
    # Shifts range over [0, P) on both axes (P < N here).
    assert min(a for a, _ in seen_shifts) == 0 and max(a for a, _ in seen_shifts) < patch
    assert max(a for a, _ in seen_shifts) > 0 and max(c for _, c in seen_shifts) > 0


def test_grid_geometry():
    assert AxisGrid.for_axis(64, 32) == AxisGrid(size=64, tile=32, count=3, pad=32)
    assert AxisGrid.for_axis(64, 16) == AxisGrid(size=64, tile=16, count=5, pad=16)
    assert AxisGrid.for_axis(60, 16) == AxisGrid(size=60, tile=16, count=5, pad=20)
    assert AxisGrid.for_axis(320, 128) == AxisGrid(size=320, tile=128, count=4, pad=192)
    assert AxisGrid.for_axis(20, 32) == AxisGrid(size=20, tile=32, count=1, pad=12)
    assert AxisGrid.for_axis(32, 32) == AxisGrid(size=32, tile=32, count=1, pad=0)
    assert AxisGrid.for_axis(64, 32).shifts == 32 and AxisGrid.for_axis(20, 32).shifts == 12


@pytest.mark.parametrize("n, p", [(320, 128), (320, 64), (320, 256), (64, 16), (60, 16), (17, 5)])
def test_every_offset_mod_p_can_be_a_seam(n, p):
    """Seams sit at image positions shift - M + q P; every residue mod P must be reachable
    (N = 320, P = 128 is the paper config's profile: N // P + 1 tiles would reach only 64),
    and from every shift the window must still cover the whole image."""
    axis = AxisGrid.for_axis(n, p)
    offsets = {(a - axis.pad) % p for a in range(axis.shifts)}
    assert offsets == set(range(p))
    for a in range(axis.shifts):
        assert a <= axis.pad and a + axis.span >= axis.pad + n
        assert a + axis.span <= n + 2 * axis.pad
    # The wrapper draws from that range: over many draws, every residue shows up.
    den = ShiftedGridDenoiser(Recorder(), p, padding="reflect")
    rows, cols = den.grid(n, n)
    drawn = den.draw_shifts(4000, rows, cols, torch.Generator().manual_seed(0))
    assert {(a - rows.pad) % p for a, _ in drawn} == set(range(p))


# (c) micro-batching does not change the result --------------------------------------------
@pytest.mark.parametrize("padding", PADDINGS)
def test_patch_batch_invariance(padding):
    inner = SmallConvNet(channels=1)
    x = torch.rand(2, 1, 28, 36, generator=torch.Generator().manual_seed(3))
    outs = []
    for pb in (1, 3, None):
        den = ShiftedGridDenoiser(inner, 8, padding=padding, patch_batch=pb)
        outs.append(den(x, 0.2, generator=torch.Generator().manual_seed(9)))
        assert den.tiles_evaluated == 2 * 5 * 6  # ceil((N + P - 1) / P) tiles a side
    for o in outs[1:]:
        assert torch.allclose(o, outs[0], atol=1e-6)


# (d) memory-bounded gradient == plain autograd -------------------------------------------
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(
    "shape,patch,coords",
    [((2, 1, 24, 24), 8, False), ((2, 1, 22, 30), 8, False), ((2, 1, 22, 26), 8, True)],
)
def test_memory_bounded_gradient_matches_autograd(padding, shape, patch, coords):
    inner = SmallConvNet(channels=1, coord_channels=2 if coords else 0)
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(shape, generator=gen)
    weights = torch.randn(shape, generator=gen)
    sigma = torch.tensor([0.1, 0.5])
    den = ShiftedGridDenoiser(inner, patch, padding=padding, patch_batch=3)

    xg = x.clone().requires_grad_(True)
    out = den(xg, sigma, generator=torch.Generator().manual_seed(11))
    assert out.grad_fn is not None and "MemoryBounded" in type(out.grad_fn).__name__
    (out * weights).sum().backward()
    rows, cols = den.grid(*shape[-2:])
    assert den.backward_tiles == shape[0] * rows.count * cols.count

    plan = den.plan(x, sigma, torch.Generator().manual_seed(11))  # the same draws
    xr = x.clone().requires_grad_(True)
    ref = reference_shifted_grid(
        inner, xr, sigma, patch, padding, plan.shifts, coords, plan.margin_noise
    )
    (ref * weights).sum().backward()

    assert torch.allclose(out.detach(), ref.detach(), atol=1e-6)
    rel = (xg.grad - xr.grad).norm() / xr.grad.norm()
    assert rel < 1e-5, rel


def test_gradient_with_trainable_inner_falls_back_to_autograd():
    inner = SmallConvNet(channels=1)
    inner.requires_grad_(True)
    den = ShiftedGridDenoiser(inner, 8, padding="reflect", patch_batch=2)
    x = torch.rand(1, 1, 20, 20).requires_grad_(True)
    with pytest.warns(UserWarning, match="not memory-bounded"):
        out = den(x, 0.3, generator=torch.Generator().manual_seed(0))
    out.sum().backward()
    assert inner.net[0].weight.grad is not None and x.grad is not None


def test_no_graph_without_requires_grad():
    den = ShiftedGridDenoiser(SmallConvNet(), 8)
    out = den(torch.rand(1, 1, 20, 20), 0.3)
    assert out.grad_fn is None


# (e) seeds and batch composition ---------------------------------------------------------
def test_same_seed_same_output_and_per_sample_generators():
    inner = SmallConvNet(channels=1)
    x = torch.rand(3, 1, 24, 28, generator=torch.Generator().manual_seed(5))
    den = ShiftedGridDenoiser(inner, 8, padding="zeros", patch_batch=4)
    a = den(x, 0.3, generator=torch.Generator().manual_seed(1))
    b = den(x, 0.3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    c = den(x, 0.3, generator=torch.Generator().manual_seed(2))
    assert not torch.allclose(a, c)  # seams moved (zero padding and a 3x3 net: not pointwise)
    # Default generator: seeded at construction.
    d1 = ShiftedGridDenoiser(inner, 8, padding="zeros", seed=7)(x, 0.3)
    d2 = ShiftedGridDenoiser(inner, 8, padding="zeros", seed=7)(x, 0.3)
    assert torch.equal(d1, d2)
    # Per-sample generators: sample 1's result does not depend on its batch mates.
    batch = den(x, 0.3, generator=[torch.Generator().manual_seed(100 + i) for i in range(3)])
    alone = den(x[1:2], 0.3, generator=[torch.Generator().manual_seed(101)])
    assert torch.allclose(batch[1:2], alone, atol=1e-6)
    with pytest.raises(ValueError, match="generators"):
        den(x, 0.3, generator=[torch.Generator()])


def test_one_shift_per_sample():
    den = ShiftedGridDenoiser(Recorder(), 8, padding="zeros")
    rows, cols = den.grid(32, 32)
    shifts = den.draw_shifts(64, rows, cols, torch.Generator().manual_seed(0))
    assert len(shifts) == 64 and len(set(shifts)) > 10


# (f) pass-through --------------------------------------------------------------------
@pytest.mark.parametrize("coords", [False, True])
def test_pass_through_when_patch_covers_image(coords):
    inner = SmallConvNet(channels=1, coord_channels=2 if coords else 0)
    x = torch.rand(2, 1, 16, 12)
    den = ShiftedGridDenoiser(inner, 16, padding="reflect")
    state = den.generator.get_state()
    out = den(x, 0.2)
    ref = inner(x, 0.2, coords=whole_image_coords(2, 16, 12)) if coords else inner(x, 0.2)
    assert torch.allclose(out, ref, atol=1e-7)
    assert torch.equal(den.generator.get_state(), state)  # no shift drawn
    assert den.calls == 1 and den.tiles_evaluated == 2


# (g) margins wider than the image, and PaDIS's noisy zero margin --------------------------
def test_reflect_with_a_margin_wider_than_the_image():
    # Height 10 with P = 32 (< width 64): M = 32 - 10 = 22 >= 10, reflected back and forth.
    inner = SmallConvNet()
    x = torch.rand(1, 1, 10, 64, generator=torch.Generator().manual_seed(0))
    den = ShiftedGridDenoiser(inner, 32, padding="reflect")
    plan = den.plan(x, 0.1, torch.Generator().manual_seed(3))
    ref = reference_shifted_grid(inner, x, 0.1, 32, "reflect", plan.shifts)
    out = den(x, 0.1, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(out, ref, atol=1e-6)


def test_zero_margin_holds_noise_at_the_current_level_from_the_given_generators():
    rec = Recorder()
    x = torch.full((2, 1, 32, 32), 0.5)
    sigma = torch.tensor([0.1, 0.4])
    den = ShiftedGridDenoiser(rec, 16, padding="zeros")
    out = den(x, sigma, generator=[torch.Generator().manual_seed(i) for i in (1, 2)])
    assert torch.equal(out, x)  # the margin never reaches the output
    plan = den.plan(x, sigma, [torch.Generator().manual_seed(i) for i in (1, 2)])
    canvas = plan.pad(x)
    m = plan.rows.pad
    inside = canvas[:, :, m:-m, m:-m]
    margin = torch.cat([canvas[:, :, :m].flatten(1), canvas[:, :, -m:].flatten(1)], dim=1)
    assert torch.equal(inside, x)
    assert margin.mean(1).abs().max() < 0.03
    assert torch.allclose(margin.std(1), sigma, rtol=0.05)
    # Same generators, same margin; the tiles the network saw carry it.
    again = den.plan(x, sigma, [torch.Generator().manual_seed(i) for i in (1, 2)])
    assert torch.equal(again.margin_noise, plan.margin_noise)
    assert torch.cat(rec.seen).std() > 0.05
    # noisy_margin=False: PaDIS's band without noise, clean zeros (only for ablations).
    clean = ShiftedGridDenoiser(rec, 16, padding="zeros", noisy_margin=False)
    assert clean.plan(x, sigma, torch.Generator()).margin_noise is None


@pytest.mark.parametrize("padding", PADDINGS)
def test_coordinates_of_padded_pixels_stay_in_the_training_range(padding):
    """Training shows crops inside the image, coordinates in [-1, 1]: a padded pixel gets
    the coordinates of the pixel it copies (reflect, replicate) or of the nearest one."""
    den = ShiftedGridDenoiser(Pointwise(channels=1, coord_channels=2), 8, padding=padding)
    x = torch.rand(2, 1, 20, 12)
    plan = den.plan(x, 0.1, torch.Generator().manual_seed(0))
    coords = plan.coords()
    assert coords.abs().max() <= 1.0 + 1e-6
    tiles = plan.tiles_in(torch.arange(240.0).reshape(1, 1, 20, 12).repeat(2, 1, 1, 1))
    rows = (coords[:, 0] / 2 + 0.5) * 19
    cols = (coords[:, 1] / 2 + 0.5) * 11
    if padding != "zeros":  # each tile pixel shows the image pixel its coordinates name
        assert torch.allclose(tiles[:, 0], rows.round() * 12 + cols.round())


def test_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        ShiftedGridDenoiser(SmallConvNet(), 8, padding="circular")
    with pytest.raises(ValueError, match="patch_batch"):
        ShiftedGridDenoiser(SmallConvNet(), 8, patch_batch=0)


def test_gradient_recomputes_only_when_micro_batches_bound_memory():
    """Default policy: one batch of all tiles differentiates by plain autograd (no
    extra forward pass); micro-batches use the recomputing backward. Same gradient."""
    inner = SmallConvNet(channels=1)
    x = torch.rand(1, 1, 20, 20, generator=torch.Generator().manual_seed(2))
    grads = {}
    for patch_batch in (None, 2, 100):
        den = ShiftedGridDenoiser(inner, 8, padding="reflect", patch_batch=patch_batch)
        xg = x.clone().requires_grad_(True)
        out = den(xg, 0.3, generator=torch.Generator().manual_seed(5))
        bounded = "MemoryBounded" in type(out.grad_fn).__name__
        assert bounded == (patch_batch == 2), patch_batch  # 9 tiles: only 2 splits them
        out.square().sum().backward()
        grads[patch_batch] = xg.grad
    assert torch.allclose(grads[None], grads[2], rtol=1e-5, atol=1e-6)
    assert torch.allclose(grads[None], grads[100], rtol=1e-5, atol=1e-6)


# (e) the one-pass product for a pixel-local cotangent ----------------------------------------
class CountingInner(nn.Module):
    """Counts the network calls made with and without autograd."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.coord_channels = inner.coord_channels
        self.calls = {False: 0, True: 0}

    def forward(self, x, sigma, **kw):
        self.calls[torch.is_grad_enabled() and x.requires_grad] += 1
        return self.inner(x, sigma, **kw)


@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(
    "shape,patch,coords,patch_batch",
    [((2, 1, 24, 24), 8, False, 3), ((2, 1, 22, 30), 8, False, None), ((2, 1, 22, 26), 8, True, 1),
     ((1, 1, 20, 20), 32, False, 1)],
)  # fmt: skip
def test_local_vjp_matches_autograd_in_one_pass(padding, shape, patch, coords, patch_batch):
    """``(D(x), J^T g(D(x)))`` for a pixel-local ``g`` equals plain autograd through the
    reference, evaluates every tile once (with autograd, no recomputation) and counts as
    the forward does; the last case passes through (one tile covers the image)."""
    inner = CountingInner(SmallConvNet(channels=1, coord_channels=2 if coords else 0))
    gen = torch.Generator().manual_seed(4)
    x = torch.rand(shape, generator=gen)
    y = torch.rand(shape, generator=gen)
    sigma = torch.tensor([0.1, 0.5])[: shape[0]]
    den = ShiftedGridDenoiser(inner, patch, padding=padding, patch_batch=patch_batch)

    def cotangent(values, b, rows, cols):  # nonlinear in the output, pixel by pixel
        return values.square() - y[b, :, rows, cols]

    out, grad = den.local_vjp(x, sigma, cotangent, generator=torch.Generator().manual_seed(11))
    tiles = den.tiles_evaluated
    chunks = 1 if patch_batch is None else -(-tiles // patch_batch)
    assert inner.calls == {False: 0, True: chunks}
    assert den.backward_tiles == tiles and den.calls == 1

    xr = x.clone().requires_grad_(True)
    if den.passes_through(*shape[-2:]):
        ref = inner.inner(xr, sigma)
    else:
        plan = den.plan(x, sigma, torch.Generator().manual_seed(11))  # the same draws
        ref = reference_shifted_grid(
            inner.inner, xr, sigma, patch, padding, plan.shifts, coords, plan.margin_noise
        )
    (ref.detach().square() - y).mul(ref).sum().backward()  # cotangent of g, held fixed
    assert torch.allclose(out, ref.detach(), atol=1e-6)
    rel = (grad - xr.grad).norm() / xr.grad.norm()
    assert rel < 1e-5, rel


@pytest.mark.parametrize("n,p", [(320, 128), (24, 8), (17, 5)])
def test_every_image_pixel_has_one_tile_region(n, p):
    """The tiles' image regions partition the image, for every shift, in both axes."""
    den = ShiftedGridDenoiser(Pointwise(channels=1), p, padding="reflect")
    rows, _ = den.grid(n, n)
    for shift in range(rows.shifts):
        plan = den.plan(torch.zeros(1, 1, n, n), 0.1)
        plan.shifts = [(shift, (shift * 7) % rows.shifts)]
        hits = torch.zeros(n, n, dtype=torch.long)
        for tile in range(plan.num_tiles):
            b, img_r, img_c, tile_r, tile_c = plan.image_region(tile)
            assert b == 0
            assert img_r.stop - img_r.start == tile_r.stop - tile_r.start
            assert img_c.stop - img_c.start == tile_c.stop - tile_c.start
            hits[img_r, img_c] += 1
        assert bool((hits == 1).all()), shift
