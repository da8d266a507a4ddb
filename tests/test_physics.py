"""Tests of the forward models: adjoints, proxes, shapes, the registry."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from patchpnp.physics import (
    MRI,
    Deblur,
    Denoising,
    LinearOperator,
    SuperResolution,
    line_mask,
    make_operator,
)

OPERATORS = {
    "denoise": lambda: Denoising(),
    "sr2-bicubic": lambda: SuperResolution(2, "bicubic"),
    "sr2-box": lambda: SuperResolution(2, "box"),
    "sr3-bicubic": lambda: SuperResolution(3, "bicubic"),
    "deblur": lambda: Deblur(sigma=1.5),
    "mri-equispaced": lambda: MRI(acceleration=4, center_fraction=0.08),
    "mri-random": lambda: MRI(acceleration=3, center_fraction=0.1, mask="random", seed=3),
}
SHAPES = [(2, 1, 24, 24), (3, 2, 18, 30), (1, 1, 36, 12)]


def real_inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample real inner product (complex tensors viewed as real pairs)."""
    return (a.conj() * b).real.flatten(1).sum(1) if a.is_complex() else (a * b).flatten(1).sum(1)


def random_measurement(op: LinearOperator, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    y = op.A(torch.rand(x.shape, generator=gen, dtype=x.dtype))
    noise = torch.randn(
        torch.view_as_real(y).shape if y.is_complex() else y.shape, generator=gen, dtype=x.dtype
    )
    if y.is_complex():
        noise = torch.view_as_complex(noise)
    if isinstance(op, MRI):
        noise = noise * op.mask(x.shape[-1], x)  # measurements live on the sampled lines
    return y + noise


def objective(op, x, x0, y, rho):
    r = op.A(x) - y
    return real_inner(r, r) + rho * real_inner(x - x0, x - x0)


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adjoint_identity(name, shape, dtype):
    op = OPERATORS[name]()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=gen, dtype=dtype)
    y = op.A(torch.rand(shape, generator=gen, dtype=dtype))
    y = y + torch.randn_like(y)  # an arbitrary element of the measurement space
    lhs, rhs = real_inner(op.A(x), y), real_inner(x, op.A_adjoint(y))
    scale = op.A(x).abs().flatten(1).norm(dim=1) * y.abs().flatten(1).norm(dim=1)
    assert ((lhs - rhs).abs() / scale).max() < 1e-5
    assert op.A_adjoint(y).shape == x.shape and op.A_adjoint(y).dtype == dtype


@pytest.mark.parametrize("name", OPERATORS)
@pytest.mark.parametrize("shape", [(2, 1, 24, 24), (2, 1, 18, 30)])
def test_prox_minimises_objective(name, shape):
    op = OPERATORS[name]()
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(shape, generator=gen, dtype=torch.float64)
    y = random_measurement(op, x0, gen)
    rho = torch.tensor([0.3, 2.0], dtype=torch.float64)  # per sample
    x_prox = op.prox(x0, y, rho)

    # Independent minimiser: L-BFGS on the objective itself, from x0.
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [x],
        max_iter=500,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        history_size=50,
        line_search_fn="strong_wolfe",
    )

    def closure():
        opt.zero_grad()
        loss = objective(op, x, x0, y, rho).sum()
        loss.backward()
        return loss

    opt.step(closure)
    x_iter = x.detach()
    f_prox = objective(op, x_prox, x0, y, rho)
    f_iter = objective(op, x_iter, x0, y, rho)
    assert (f_prox <= f_iter + 1e-9 * f_iter.abs().clamp_min(1)).all()
    assert (x_prox - x_iter).abs().max() < 1e-4
    # First-order optimality: A^T (A x - y) + rho (x - x0) = 0.
    grad = op.A_adjoint(op.A(x_prox) - y) + rho.view(-1, 1, 1, 1) * (x_prox - x0)
    assert grad.abs().max() < 1e-8


@pytest.mark.parametrize("name", OPERATORS)
def test_prox_large_rho_returns_x0(name):
    op = OPERATORS[name]()
    gen = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 1, 24, 24, generator=gen)
    y = random_measurement(op, x0, gen)
    assert torch.allclose(op.prox(x0, y, 1e7), x0, atol=1e-5)


@pytest.mark.parametrize("name", OPERATORS)
def test_prox_float_and_tensor_rho_agree(name):
    op = OPERATORS[name]()
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(3, 1, 24, 24, generator=gen, dtype=torch.float64)
    y = random_measurement(op, x0, gen)
    a = op.prox(x0, y, 0.7)
    b = op.prox(x0, y, torch.full((3,), 0.7, dtype=torch.float64))
    assert torch.allclose(a, b, atol=1e-12)
    # Batch independence: each sample's prox only sees its own data.
    c = op.prox(x0[1:2], y[1:2], 0.7)
    assert torch.allclose(a[1:2], c, atol=1e-12)


def test_shapes_and_num_measurements():
    x = torch.rand(2, 3, 24, 36)
    assert Denoising().A(x).shape == x.shape
    assert Denoising().num_measurements(x.shape) == 3 * 24 * 36
    sr = SuperResolution(2)
    assert sr.A(x).shape == (2, 3, 12, 18)
    assert sr.num_measurements(x.shape) == 3 * 12 * 18
    assert sr.init(sr.A(x)).shape == x.shape
    assert Deblur(sigma=1.0).A(x).shape == x.shape
    mri = MRI(acceleration=4)
    y = mri.A(x)
    assert y.shape == x.shape and y.is_complex()
    n_lines = int(line_mask(36, 4, 0.08).sum())
    assert mri.num_measurements(x.shape) == 2 * 3 * 24 * n_lines
    assert mri.num_measurements(x.shape[1:]) == mri.num_measurements(x.shape)


def test_measure_noise_statistics_and_generators():
    x = torch.rand(4, 1, 72, 72)
    for op in OPERATORS.values():
        op = op()
        y = op.measure(x, 0.1, torch.Generator().manual_seed(5))
        r = y - op.A(x)
        # Data consistency of the truth: about 1 by construction of num_measurements.
        dc = r.abs().flatten(1).norm(dim=1) / (0.1 * op.num_measurements(x.shape) ** 0.5)
        assert ((dc - 1).abs() < 0.1).all(), (op, dc)
        # Same seed -> same measurement; per-sample generators -> batch independence.
        y2 = op.measure(x, 0.1, torch.Generator().manual_seed(5))
        assert torch.equal(y, y2)
        gens = [torch.Generator().manual_seed(10 + b) for b in range(4)]
        yb = op.measure(x, 0.1, gens)
        y_alone = op.measure(x[2:3], 0.1, [torch.Generator().manual_seed(12)])
        assert torch.allclose(yb[2:3], y_alone)


def test_mri_mask_is_conjugate_symmetric_and_prox_is_real_exact():
    for width in (32, 33, 40):
        for kind in ("equispaced", "random"):
            m = line_mask(width, 4, 0.1, kind, seed=1)
            freq = torch.arange(width) - width // 2
            for c in range(width):
                mirror = int((-freq[c] + width // 2) % width)
                assert m[c] == m[mirror]
            assert m[width // 2]  # DC always sampled
    # Random masks hit roughly the requested rate.
    rate = line_mask(320, 4, 0.08, "random", seed=0).float().mean()
    assert 0.18 < rate < 0.32


def test_init():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 32, 32, generator=gen)
    assert torch.equal(Denoising().init(x), x)
    sr = SuperResolution(2)
    y = sr.A(x)
    ref = F.interpolate(y, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.allclose(sr.init(y), ref)
    mri = MRI()
    y = mri.A(x)
    assert torch.allclose(mri.init(y), mri.A_adjoint(y))
    # Fully sampled MRI: the zero-filled reconstruction is the image itself.
    full = MRI(acceleration=1)
    assert torch.allclose(full.init(full.A(x)), x, atol=1e-6)


def test_sr_matches_antialiased_bicubic_downsampling():
    # The kernel geometry (pixel centres, as torch/imresize) is what makes the bicubic
    # upsampling initial guess aligned with the measurements.
    x = torch.rand(1, 1, 48, 48, dtype=torch.float64)
    for s in (2, 3):
        ref = F.interpolate(
            x, scale_factor=1 / s, mode="bicubic", antialias=True, align_corners=False
        )
        assert (SuperResolution(s).A(x) - ref)[..., 3:-3, 3:-3].abs().max() < 1e-12
        assert torch.allclose(SuperResolution(s, "box").A(x), F.avg_pool2d(x, s))


def test_sr_non_divisible_size_errors():
    sr = SuperResolution(2)
    with pytest.raises(ValueError, match="divisible by 2"):
        sr.A(torch.rand(1, 1, 25, 24))
    with pytest.raises(ValueError, match="divisible"):
        sr.prox(torch.rand(1, 1, 24, 27), torch.rand(1, 1, 12, 13), 1.0)


def test_make_operator_registry():
    assert isinstance(make_operator("denoise"), Denoising)
    op = make_operator("sr", factor=2, kernel="box")
    assert isinstance(op, SuperResolution) and op.factor == 2
    assert isinstance(make_operator("deblur", sigma=2.0), Deblur)
    assert isinstance(make_operator("mri", acceleration=8, mask="random", seed=4), MRI)
    with pytest.raises(ValueError, match=r"unknown task 'inpaint'.*denoise.*mri.*sr"):
        make_operator("inpaint")
    with pytest.raises(ValueError, match="kernel"):
        make_operator("sr", kernel="lanczos")
    with pytest.raises(ValueError, match="mask"):
        make_operator("mri", mask="spiral")


@pytest.mark.parametrize("width", [64, 65, 320, 368, 372])
@pytest.mark.parametrize(("acceleration", "center_fraction"), [(4, 0.08), (8, 0.04)])
def test_equispaced_mask_achieves_its_acceleration(width, acceleration, center_fraction):
    """fastMRI's convention (EquispacedMaskFractionFunc): centre plus outer lines make
    width / R lines, the outer spacing being widened to make room for the centre.

    Tolerance: half a line for even widths (the count is a whole number; an odd leftover
    takes the self-mirrored Nyquist column), one line for odd widths (lines come in
    conjugate pairs, so the outer count is even). Spacing by R itself, the old rule,
    samples about n_c (1 - 1/R) lines too many: 20 at 320 / R 4.
    """
    m = line_mask(width, acceleration, center_fraction, "equispaced")
    tol = 0.5 if width % 2 == 0 else 1.0
    assert abs(int(m.sum()) - width / acceleration) <= tol
    freq = torch.arange(width) - width // 2
    n_c = 2 * (round(width * center_fraction) // 2) + 1
    assert m[freq.abs() <= n_c // 2].all()  # the fully sampled centre
    # Outer lines on one side: evenly spaced (gaps differ by at most one column), at
    # fastMRI's adjusted acceleration R (N - n_c) / (N - R n_c) to within a column once
    # there are enough of them: with k lines a side, rounding to whole line pairs moves
    # the spacing by up to 1 / (2k) of itself (15 instead of 12.2 at width 64, R 8, k 2).
    pos = freq[m & (freq > n_c // 2)]
    gaps = pos.diff()
    assert len(pos) >= 2 and int(gaps.max() - gaps.min()) <= 1
    if width >= 320:
        adjusted = acceleration * (width - n_c) / (width - acceleration * n_c)
        assert abs(gaps.float().mean().item() - adjusted) < 1
