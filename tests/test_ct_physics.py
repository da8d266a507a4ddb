"""The parallel-beam CT operator (docs/methods.md section 14) and the uniform deblur kernel."""

from __future__ import annotations

import math

import pytest
import torch
from patchpnp.data.ct import phantoms
from patchpnp.physics import CT, Deblur, make_operator, uniform_kernel

GEOMETRIES = {
    "full": dict(views=90),
    "sparse20": dict(views=20),
    "sparse60": dict(views=60),
    "limited": dict(views=60, angle_range=120),
}


def psnr(x: torch.Tensor, ref: torch.Tensor) -> float:
    mse = ((x.clamp(0, 1) - ref) ** 2).mean()
    return float(10 * torch.log10(1 / mse))


@pytest.fixture(scope="module")
def phantom64() -> torch.Tensor:
    return torch.from_numpy(phantoms(2, 64, seed=0))[:, None].double()


@pytest.mark.parametrize("name", GEOMETRIES)
def test_adjoint_is_exact_in_float64(name):
    op = CT(**GEOMETRIES[name])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 2, 32, 32, generator=g, dtype=torch.float64)
    y = torch.randn(2, 2, op.views, 64, generator=g, dtype=torch.float64)
    ax, aty = op.A(x), op.A_adjoint(y)
    assert ax.shape == y.shape and aty.shape == x.shape
    lhs, rhs = (ax * y).sum(), (x * aty).sum()
    assert abs(float(lhs - rhs)) <= 1e-12 * float(ax.norm() * y.norm())


def test_autograd_through_A_is_the_adjoint():
    op = CT(views=20)
    x = torch.rand(2, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, 1, 20, 32, dtype=torch.float64)
    (grad,) = torch.autograd.grad((op.A(x) * y).sum(), x)
    torch.testing.assert_close(grad, op.A_adjoint(y), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(op.A, (x[:1, :, :6, :6].detach().requires_grad_(),))


def test_line_integrals_are_in_image_sides():
    op = CT(views=4)  # 0, 45, 90, 135 degrees
    y = op.A(torch.ones(1, 1, 32, 32, dtype=torch.float64))[0, 0]
    # A ray through the centre crosses one image side at 0 and 90 degrees, a diagonal at 45.
    assert float(y[0].max()) == pytest.approx(1.0, abs=1e-9)
    assert float(y[2].max()) == pytest.approx(1.0, abs=1e-9)
    assert float(y[1].max()) == pytest.approx(math.sqrt(2), rel=0.02)
    assert float(y.min()) >= 0


def test_fbp_inverts_smooth_images():
    op = CT(views=180)
    c = torch.arange(48, dtype=torch.float64) - 23.5
    blob = 0.8 * torch.exp(-(c[None, :] ** 2 + (c[:, None] - 4) ** 2) / (2 * 7.0**2))[None, None]
    assert psnr(op.fbp(op.A(blob)), blob) > 45


def test_fbp_quality_orders_the_geometries(phantom64):
    scores = {}
    for name, geometry in GEOMETRIES.items():
        op = CT(**geometry)
        scores[name] = psnr(op.init(op.A(phantom64)), phantom64)
    assert scores["sparse60"] > 21
    assert scores["sparse60"] > scores["sparse20"] + 0.5
    assert scores["limited"] < scores["sparse60"] - 2


def test_measure_adds_white_noise_of_sigma_n(phantom64):
    op = CT(views=60)
    clean = op.A(phantom64)
    gens = [torch.Generator().manual_seed(s) for s in (1, 2)]
    y = op.measure(phantom64, 0.05, gens)
    noise = y - clean
    assert float(noise.std()) == pytest.approx(0.05, rel=0.03)
    assert abs(float(noise.mean())) < 0.003
    # sample 1's noise comes from its own generator only
    again = op.measure(phantom64[1:], 0.05, [torch.Generator().manual_seed(2)])
    torch.testing.assert_close(again[0], y[1])
    assert op.num_measurements(phantom64.shape) == 60 * 128 * 1
    assert op.num_measurements((3, 64, 64)) == 60 * 128 * 3


def test_prox_solves_the_normal_equations(phantom64):
    op = CT(views=20)
    y = op.A(phantom64)
    x0 = torch.zeros_like(phantom64)
    rho = torch.tensor([0.5, 2.0], dtype=torch.float64)
    x = op.prox(x0, y, rho, iters=60)
    lhs = op.A_adjoint(op.A(x)) + rho[:, None, None, None] * x
    rhs = op.A_adjoint(y) + rho[:, None, None, None] * x0
    assert float((lhs - rhs).norm() / rhs.norm()) < 1e-6
    assert op.last_residual.shape == (2,)
    # each sample runs its own CG: its result does not depend on its batch mates
    alone = op.prox(x0[1:], y[1:], rho[1:], iters=60)
    torch.testing.assert_close(alone, x[1:], rtol=0, atol=1e-10)
    assert torch.allclose(op.prox(phantom64, y, 1e7), phantom64, atol=1e-5)


def test_device_and_dtype_follow_the_input():
    op = CT(views=10)
    x = torch.rand(1, 1, 16, 16)
    y = op.A(x)
    assert y.dtype == torch.float32 and op.A_adjoint(y).dtype == torch.float32
    assert {key[1] for key in op._matrices} == {"cpu"}
    if torch.cuda.is_available():
        yc = op.A(x.cuda())
        assert yc.device.type == "cuda" and op.fbp(yc).device.type == "cuda"
        torch.testing.assert_close(yc.cpu(), y, rtol=1e-5, atol=1e-6)


def test_image_size_comes_from_the_config_or_the_default_detectors():
    y = CT(views=8).A(torch.rand(1, 1, 16, 16))
    assert y.shape == (1, 1, 8, 32)
    assert CT(views=8).A_adjoint(y).shape == (1, 1, 16, 16)
    custom = CT(views=8, detectors=40)
    yc = custom.A(torch.rand(1, 1, 16, 16))
    with pytest.raises(ValueError, match="image_size"):
        custom.A_adjoint(yc)
    assert CT(views=8, detectors=40, image_size=16).fbp(yc).shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="views"):
        CT(views=0)
    op = make_operator("ct", views=20, angle_range=120, detectors=None)
    assert isinstance(op, CT) and "angle_range=120" in repr(op)


def test_uniform_deblur_kernel():
    op = Deblur(kernel="uniform", size=5)
    w = op.kernel.weights
    assert w.shape == (5, 5) and torch.allclose(w, torch.full((5, 5), 1 / 25, dtype=w.dtype))
    assert op.kernel.origin == (2, 2)
    # centred: an impulse spreads symmetrically around itself
    delta = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    delta[..., 8, 8] = 1
    out = op.A(delta)[0, 0]
    assert float(out[6:11, 6:11].sum()) == pytest.approx(1.0) and float(out[8, 8]) > 0
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64)
    y = torch.randn(2, 1, 16, 16, generator=g, dtype=torch.float64)
    assert float((op.A(x) * y).sum()) == pytest.approx(float((x * op.A_adjoint(y)).sum()))
    with pytest.raises(ValueError, match="size"):
        Deblur(kernel="uniform")
    assert uniform_kernel(4).origin == (2, 2)
