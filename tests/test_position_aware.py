"""The position-aware (padis) prior: its training canvas, patch-size mixture and batch
rule, and patch inference that gives every tile the coordinates training gave the same
pixels (docs/methods.md section 13)."""

from __future__ import annotations

import copy

import pytest
import torch
from patchpnp.patching.patches import CanvasError, ShiftedGridDenoiser, image_coordinates
from patchpnp.prior.loading import build_network, canvas_pad, load_prior
from patchpnp.prior.precond import canvas_coordinates, coordinate_channels
from patchpnp.prior.spec import padis_patch_mixture, resolve_prior
from patchpnp.runtime import keyed_randint
from patchpnp.training.schemes import Scheme, step_generator
from torch import nn
from workflow_runner import TINY_NETWORK


class Images:
    """A stand-in for the training set: image ``k`` holds ``k * N^2 + r N + c + 1`` at
    ``(r, c)``, so a value names its image and pixel (0 is the zero margin)."""

    def __init__(self, count: int, size: int):
        n = torch.arange(count * size * size, dtype=torch.float32) + 1
        self.data = n.reshape(count, 1, size, size)

    def __len__(self) -> int:
        return len(self.data)

    def get(self, idx) -> torch.Tensor:
        return self.data[list(idx)]


class Spy(nn.Module):
    """A position-aware inner denoiser that records its inputs and returns them."""

    def __init__(self, canvas_pad: int | None):
        super().__init__()
        self.coord_channels, self.canvas_pad = 2, canvas_pad
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, sigma, coords=None):
        self.calls.append((x.detach().clone(), coords.detach().clone()))
        return x


class Affine(nn.Module):
    """Pointwise in pixel and coordinates: ``0.5 x + 0.1 + 0.2 row + 0.3 col``."""

    def __init__(self, canvas_pad: int | None):
        super().__init__()
        self.coord_channels, self.canvas_pad = 2, canvas_pad

    def forward(self, x, sigma, coords=None):
        return x * 0.5 + 0.1 + 0.2 * coords[:, :1] + 0.3 * coords[:, 1:]


def padis(size=32, sizes=(8,), probs=(1.0,), pad=None, batch=4, train_patch=None):
    return Scheme(
        "padis",
        image_size=size,
        batch_size=batch,
        train_patch=train_patch,
        patch_sizes=sizes,
        patch_probs=probs,
        pad=pad,
    )


# --- coordinates -------------------------------------------------------------------------


def test_canvas_coordinates_span_the_padded_canvas():
    n, pad = 16, 4
    r = n + 2 * pad
    idx = torch.arange(-pad, n + pad)  # image indices of every canvas pixel
    c = canvas_coordinates(idx, idx, n, n, pad)[0]
    assert c.shape == (2, r, r)
    assert c[0, 0, 0] == -1 and c[0, -1, 0] == 1 and c[1, 0, 0] == -1 and c[1, 0, -1] == 1
    assert c[0, :, 5].unique().numel() == r and c[1, 5, :].unique().numel() == r  # rows first
    # image pixel i sits at canvas index i + pad
    img = canvas_coordinates(torch.arange(n), torch.arange(n), n, n, pad)
    torch.testing.assert_close(
        img, coordinate_channels(torch.arange(n) + pad, torch.arange(n) + pad, r, r), rtol=0, atol=0
    )
    assert img[0, 0, 0, 0].item() == pytest.approx((pad / (r - 1) - 0.5) * 2)


def test_training_draws_corners_over_the_whole_canvas_with_canvas_coordinates():
    n, pad, p = 32, 8, 8
    scheme, images = padis(n, (p,), pad=pad, batch=4), Images(3, n)
    assert scheme.canvas == n + 2 * pad
    tops, lefts, margin_only = [], [], 0
    for step in range(40):
        d = scheme.positions(len(images), 7, step)
        x, coords = scheme.draw(images, 7, step)
        tops.append(d.top)
        lefts.append(d.left)
        padded = torch.nn.functional.pad(images.data[d.images], (pad,) * 4)
        for b, (t, l) in enumerate(zip(d.top.tolist(), d.left.tolist(), strict=True)):
            assert torch.equal(x[b], padded[b, :, t : t + p, l : l + p])
            margin_only += int((x[b] == 0).all())
            expected = coordinate_channels(
                torch.arange(t, t + p), torch.arange(l, l + p), n + 2 * pad, n + 2 * pad
            )
            assert torch.equal(coords[b : b + 1], expected)
    corners = torch.cat(tops + lefts)
    assert corners.min() == 0 and corners.max() == n + 2 * pad - p  # [0, R - p]
    assert margin_only > 0  # patches wholly in the margin are drawn too
    assert padis(n, (p,)).pad == n // 4  # default pad


def test_whole_and_patch_draws_are_unchanged():
    """The draws of the whole and patch schemes are those of before the canvas."""
    images = Images(5, 16)
    for scheme in (Scheme("whole", 16, 3), Scheme("patch", 16, 3, train_patch=8)):
        x, coords = scheme.draw(images, 11, 4)
        g = step_generator(11, 4)
        idx = keyed_randint(5, (3,), g)
        room = 16 - scheme.sizes[0]
        top, left = keyed_randint(room + 1, (3,), g), keyed_randint(room + 1, (3,), g)
        size = scheme.sizes[0]
        ref = torch.stack(
            [
                images.data[i, :, t : t + size, l : l + size]
                for i, t, l in zip(idx.tolist(), top.tolist(), left.tolist(), strict=True)
            ]
        )
        assert coords is None and torch.equal(x, ref)
    with pytest.raises(ValueError, match="padis"):
        Scheme("patch", 16, 3, train_patch=8, pad=2)


# --- mixture and batch --------------------------------------------------------------------


def test_mixture_fits_the_network():
    m = padis_patch_mixture(256, 5)  # paper network: multiples of 16
    assert (m.sizes, m.probs, m.note) == ((16, 32, 64), (0.2, 0.3, 0.5), "")
    demo = padis_patch_mixture(64, 4)  # demo network: multiples of 8, N/16 = 4 -> 8
    assert (demo.sizes, demo.probs) == ((8, 16), (0.5, 0.5))
    assert "N/16 = 4 -> 8" in demo.note and "merged" in demo.note
    mri = padis_patch_mixture(320, 5)
    assert (mri.sizes, mri.probs) == ((16, 32, 80), (0.2, 0.3, 0.5)) and "merged" not in mri.note
    with pytest.raises(ValueError, match="smaller"):
        padis_patch_mixture(8, 5)


def test_mixture_frequencies_match_the_probabilities():
    scheme = padis(256, (16, 32, 64), (0.2, 0.3, 0.5), train_patch=64)
    steps = 4000
    drawn = [scheme.patch_size(step_generator(3, s)) for s in range(steps)]
    counts = torch.tensor([drawn.count(p) for p in (16, 32, 64)], dtype=torch.float64)
    expected = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64) * steps
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 13.8  # 2 degrees of freedom, p = 0.001
    # keyed by (seed, step): a resumed run draws the same
    assert drawn[123] == scheme.patch_size(step_generator(3, 123))


def test_batch_grows_as_one_over_the_patch_side():
    scheme = padis(256, (16, 32, 64), (0.2, 0.3, 0.5), batch=16, train_patch=64)
    assert [scheme.batch_for(p) for p in (16, 32, 64)] == [64, 32, 16]  # PaDIS's per unit
    assert padis(256, (16, 32, 64), (0.2, 0.3, 0.5), batch=16).batch_for(16) == 64


def test_resolved_settings_and_saved_canvas(tmp_path):
    config = {
        "seed": 1,
        "data": {"image_size": 64},
        "network": {**copy.deepcopy(TINY_NETWORK), "channel_mult": [1, 2, 4, 4]},
        "training": {"batch_size": 16},
        "priors": {
            "padis": {"scheme": "padis", "train_patch": 16},
            "patch": {"scheme": "patch", "train_patch": 32},
            "wide": {"scheme": "padis", "pad": 24, "patch_sizes": [8, 24]},
        },
    }
    s = resolve_prior(config, "padis")
    assert s["scheme"] == {
        "name": "padis",
        "image_size": 64,
        "batch_size": 16,
        "train_patch": 16,
        "pad": 16,
        "patch_sizes": [8, 16],
        "patch_probs": [0.5, 0.5],
    }
    assert resolve_prior(config, "patch")["scheme"] == {
        "name": "patch",
        "image_size": 64,
        "batch_size": 16,
        "train_patch": 32,
    }
    wide = resolve_prior(config, "wide")["scheme"]
    assert (wide["pad"], wide["patch_probs"], wide["train_patch"]) == (24, [1.0, 1.0], 24)
    Scheme(**s["scheme"])  # the saved settings rebuild the scheme
    # The canvas travels with the weights.
    s["network"] = {**copy.deepcopy(TINY_NETWORK), "coord_channels": 2}
    torch.save({"settings": s, "ema": build_network(s["network"]).state_dict()}, tmp_path / "a.pt")
    den, _ = load_prior(tmp_path / "a.pt")
    assert den.canvas_pad == 16
    old = copy.deepcopy(s)
    del old["scheme"]["pad"]
    assert canvas_pad(old) is None  # a padis prior saved before the canvas was recorded
    assert canvas_pad(resolve_prior(config, "patch")) is None


# --- inference ------------------------------------------------------------------------------


def test_tiles_get_the_coordinates_training_gave_the_same_pixels():
    """A training patch and an inference tile that show the same canvas pixels (image
    pixels, found by their values, and the margin beside them) give them the same
    coordinates."""
    n, pad, p = 32, 8, 8
    scheme, images = padis(n, (p,), pad=pad, batch=8), Images(1, n)
    trained = {}
    for step in range(25):
        d = scheme.positions(1, 5, step)
        x, coords = scheme.draw(images, 5, step)
        for b, (t, l) in enumerate(zip(d.top.tolist(), d.left.tolist(), strict=True)):
            for u in range(p):
                for v in range(p):
                    trained[(t + u, l + v)] = coords[b, :, u, v]
                    if 0 <= t + u - pad < n and 0 <= l + v - pad < n:  # an image pixel
                        assert x[b, 0, u, v] == (t + u - pad) * n + (l + v - pad) + 1

    spy = Spy(canvas_pad=pad)
    den = ShiftedGridDenoiser(spy, p, padding="zeros", noisy_margin=False)
    for seed in range(6):
        den(images.data, 0.3, torch.Generator().manual_seed(seed))
    seen, margin, inside = 0, 0, 0
    for tiles, coords in spy.calls:
        for tile, co in zip(tiles, coords, strict=True):
            nz = tile[0].nonzero()
            if len(nz) == 0:
                continue  # a tile wholly in the margin: no pixel to place it by
            u0, v0 = nz[0].tolist()
            code = int(tile[0, u0, v0]) - 1
            r0, c0 = divmod(code, n)  # image pixel -> canvas index + pad
            for u in range(p):
                for v in range(p):
                    key = (r0 + u - u0 + pad, c0 + v - v0 + pad)
                    if key in trained:
                        assert torch.equal(co[:, u, v], trained[key]), key
                        seen += 1
                        is_image = all(pad <= k < n + pad for k in key)
                        inside += is_image
                        margin += not is_image
    assert inside > 0 and margin > 0 and seen == inside + margin


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
@pytest.mark.parametrize("patch_batch", [None, 5])
def test_tiled_equals_whole_for_a_pointwise_denoiser(padding, patch_batch):
    n, pad = 32, 8
    inner = Affine(canvas_pad=pad)
    x = torch.rand(2, 1, n, n, generator=torch.Generator().manual_seed(0))
    ar = torch.arange(n)
    whole = inner(x, 0.2, canvas_coordinates(ar, ar, n, n, pad))
    den = ShiftedGridDenoiser(inner, 8, padding=padding, patch_batch=patch_batch)
    for seed in range(3):
        gens = [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 9)]
        assert torch.equal(den(x, 0.2, gens), whole)
    # gradients (memory-bounded with micro-batches) and the one-pass local product
    xr = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(den(xr, 0.2).sum(), xr)
    assert torch.equal(g, torch.full_like(x, 0.5))
    out, gl = den.local_vjp(x, 0.2, lambda v, b, r, c: torch.ones_like(v))
    assert torch.equal(out, whole) and torch.equal(gl, torch.full_like(x, 0.5))
    # one tile covering the image: the pass-through has canvas coordinates too
    assert torch.equal(ShiftedGridDenoiser(inner, n, padding=padding)(x, 0.2), whole)


def test_margin_wider_than_the_canvas_is_refused():
    x = torch.rand(1, 1, 32, 32)
    den = ShiftedGridDenoiser(Spy(canvas_pad=4), 8, padding="zeros")
    with pytest.raises(CanvasError, match=r"M = 8.*canvas pad 4"):
        den(x, 0.1)
    with pytest.raises(CanvasError):
        den.local_vjp(x, 0.1, lambda v, b, r, c: v)
    ShiftedGridDenoiser(Spy(canvas_pad=8), 8, padding="zeros")(x, 0.1)  # M = 8 = pad


def test_priors_without_a_canvas_keep_image_coordinates():
    """A position-aware prior with no canvas recorded: coordinates over the unpadded
    image, margin pixels those of the nearest image pixel (as before the canvas)."""
    spy = Spy(canvas_pad=None)
    den = ShiftedGridDenoiser(spy, 8, padding="zeros")
    x = torch.rand(1, 1, 32, 32)
    plan = den.plan(x, 0.1, torch.Generator().manual_seed(2))
    a, c = plan.shifts[0]
    idx_r = (torch.arange(a, a + plan.rows.span) - plan.rows.pad).clamp(0, 31)
    idx_c = (torch.arange(c, c + plan.cols.span) - plan.cols.pad).clamp(0, 31)
    expected = plan.to_tiles(image_coordinates(idx_r, idx_c, 32, 32)[None])
    assert torch.equal(plan.coords(), expected)
    ShiftedGridDenoiser(spy, 32)(x, 0.1)
    assert torch.equal(
        spy.calls[-1][1][0], image_coordinates(torch.arange(32), torch.arange(32), 32, 32)
    )
