"""Multicoil MRI: operator checks, fastMRI masks, the classical baselines and fastMRI metrics."""

import numpy as np
import pytest
import torch
from patchpnp.inference.mri_baselines import (
    METHODS,
    choose_interior,
    lambda_grid,
    reconstruct,
    sense,
    zero_filled,
)
from patchpnp.metrics.mri import magnitude, mri_scores, nmse, ssim
from patchpnp.metrics.quality import psnr
from patchpnp.physics.mri import fastmri_line_mask
from patchpnp.physics.multicoil import MulticoilMRI, to_channels
from scipy.ndimage import gaussian_filter


def _random_maps(shape, dtype=torch.complex128, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g)).to(dtype)


def _real_dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """The real inner product of complex (or real) tensors viewed as real vectors."""
    if a.is_complex():
        return float((a.real * b.real + a.imag * b.imag).sum())
    return float((a * b).sum())


# -- the operator ------------------------------------------------------------------------
@pytest.mark.parametrize("mask", ["equispaced", "random"])
def test_multicoil_adjoint_is_exact(mask):
    maps = _random_maps((2, 3, 16, 20))
    op = MulticoilMRI(maps, 4, 0.08, mask, seed=3)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 2, 16, 20, generator=g, dtype=torch.float64)
    y = _random_maps((2, 3, 16, 20), seed=2)
    lhs, rhs = _real_dot(op.A(x), y), _real_dot(x, op.A_adjoint(y))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


def test_cg_prox_solves_its_normal_equations_per_sample():
    maps = _random_maps((2, 3, 16, 20)) / 3**0.5
    op = MulticoilMRI(maps, 4, 0.08, cg_iters=100)
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(2, 2, 16, 20, generator=g, dtype=torch.float64)
    y = op.A(torch.randn(2, 2, 16, 20, generator=g, dtype=torch.float64))
    rho = torch.tensor([0.05, 2.0], dtype=torch.float64)
    x = op.prox(x0, y, rho)
    b = op.A_adjoint(y) + rho.reshape(-1, 1, 1, 1) * x0
    res = torch.linalg.vector_norm((op.normal(x, rho) - b).reshape(2, -1), dim=1)
    assert torch.all(res / torch.linalg.vector_norm(b.reshape(2, -1), dim=1) < 1e-8)
    assert torch.all(op.last_residual < 1e-8)
    # Each sample is solved with its own rho: the same as solving it alone.
    for i in range(2):
        alone = MulticoilMRI(maps[i : i + 1], 4, 0.08, cg_iters=100)
        xi = alone.prox(x0[i : i + 1], y[i : i + 1], float(rho[i]))
        torch.testing.assert_close(xi, x[i : i + 1], rtol=1e-8, atol=1e-10)


def test_sense_with_lam_zero_is_plain_cg_sense():
    """lam = 0: A^H A is only PSD; CG from zero still reduces the normal residual, no NaN."""
    maps = _random_maps((1, 4, 16, 16)) / 2
    op = MulticoilMRI(maps, 2, 0.16)
    g = torch.Generator().manual_seed(7)
    y = op.A(torch.randn(1, 2, 16, 16, generator=g, dtype=torch.float64))
    x = sense(op, y, 0.0, 150)
    assert torch.isfinite(x).all()
    grad = op.A_adjoint(op.A(x) - y)
    assert float(grad.norm() / op.A_adjoint(y).norm()) < 1e-6
    # No data at all: zero, not NaN (the CG guards against 0 / 0).
    x = sense(op, torch.zeros_like(y), 0.0, 5)
    assert torch.equal(x, torch.zeros_like(x))
    assert op.cg_iters == 10  # sense works on a copy: the caller's operator is untouched


# -- fastMRI line masks ------------------------------------------------------------------------
@pytest.mark.parametrize("width", [64, 320, 368])
@pytest.mark.parametrize(("accel", "center"), [(4, 0.08), (8, 0.04)])
def test_equispaced_mask_has_exactly_width_over_r_lines(width, accel, center):
    mask = fastmri_line_mask(width, accel, center, "equispaced")
    assert int(mask.sum()) == round(width / accel)
    n_c = round(center * width)
    start = (width - n_c + 1) // 2
    assert mask[start : start + n_c].all()  # the centre: n_c adjacent columns ...
    assert start <= width // 2 < start + n_c  # ... around the DC column
    op = MulticoilMRI(_random_maps((1, 1, 4, width), torch.complex64), accel, center)
    assert torch.equal(op.lines, mask)


@pytest.mark.parametrize("width", [64, 320, 368])
@pytest.mark.parametrize(("accel", "center"), [(4, 0.08), (8, 0.04)])
def test_random_mask_averages_width_over_r_lines(width, accel, center):
    counts = [int(fastmri_line_mask(width, accel, center, "random", s).sum()) for s in range(200)]
    assert abs(np.mean(counts) / (width / accel) - 1) < 0.03
    n_c = round(center * width)
    start = (width - n_c + 1) // 2
    assert fastmri_line_mask(width, accel, center, "random", 11)[start : start + n_c].all()


# -- sigpy's conventions -----------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(16, 20), (15, 21)])
def test_sigpy_sense_model_equals_our_operator(shape):
    """sigpy's Sense (centred orthonormal FFT, sqrt(weights)) must be our A, or CS is wrong."""
    import sigpy as sp
    import sigpy.mri  # noqa: F401

    maps = _random_maps((1, 3, *shape), torch.complex64, seed=4)
    op = MulticoilMRI(maps, 4, 0.1, "random", seed=2)
    x = torch.randn(1, 2, *shape, generator=torch.Generator().manual_seed(8))
    weights = np.broadcast_to(op.lines.numpy().astype(np.float32), shape)
    model = sp.mri.linop.Sense(maps[0].numpy(), weights=weights)
    z = (x[0, 0] + 1j * x[0, 1]).numpy().astype(np.complex64)
    ours = op.A(x)[0].numpy()
    np.testing.assert_allclose(model(z), ours, atol=1e-5 * np.abs(ours).max())
    y = op.A(torch.randn(1, 2, *shape, generator=torch.Generator().manual_seed(9)))
    back = op.A_adjoint(y)[0]
    theirs = model.H(y[0].numpy())
    np.testing.assert_allclose(theirs.real, back[0].numpy(), atol=1e-5 * float(back.abs().max()))
    np.testing.assert_allclose(theirs.imag, back[1].numpy(), atol=1e-5 * float(back.abs().max()))


# -- the baselines on a phantom ----------------------------------------------------------------
def _phantom(n: int = 64) -> np.ndarray:
    """A few ellipses, slightly blurred, with a smooth phase: complex ``[n, n]``."""
    yy, xx = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    img = np.zeros((n, n))
    for cx, cy, a, b, th, v in [
        (0, 0, 0.8, 0.9, 0, 0.6),
        (0, 0, 0.7, 0.8, 0, -0.3),
        (-0.25, 0.1, 0.15, 0.3, 0.4, 0.5),
        (0.3, -0.2, 0.2, 0.12, -0.3, 0.4),
        (0.05, 0.45, 0.08, 0.08, 0, 0.6),
    ]:
        c, s = np.cos(th), np.sin(th)
        u, w = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
        img += v * ((u / a) ** 2 + (w / b) ** 2 <= 1)
    img = gaussian_filter(img, 1.0)
    return img * np.exp(1j * (0.6 * xx + 0.4 * yy**2 + 0.3))


def _coil_maps(n: int = 64, coils: int = 4) -> np.ndarray:
    """Smooth Gaussian sensitivities around the object with phase ramps, sum |S|^2 = 1."""
    yy, xx = np.mgrid[-1 : 1 : n * 1j, -1 : 1 : n * 1j]
    maps = []
    for k in range(coils):
        ang = 2 * np.pi * k / coils + 0.3
        cx, cy = 1.1 * np.cos(ang), 1.1 * np.sin(ang)
        gauss = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.5**2))
        maps.append(gauss * np.exp(1j * (0.5 * k * xx - 0.3 * yy)))
    maps = np.stack(maps)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0, keepdims=True))


@pytest.fixture(scope="module")
def phantom_case():
    x = torch.from_numpy(_phantom()).to(torch.complex64)[None]
    maps = torch.from_numpy(_coil_maps()).to(torch.complex64)[None]
    return to_channels(x), maps


def _measure(phantom_case, accel, center):
    target, maps = phantom_case
    op = MulticoilMRI(maps, accel, center, "equispaced")
    y = op.measure(target, 0.01, torch.Generator().manual_seed(0))
    data_range = magnitude(target.numpy()).max(axis=(-2, -1))

    def score(recon):
        assert recon.shape == target.shape and recon.dtype == target.dtype
        return float(mri_scores(recon.numpy(), target.numpy(), data_range)["psnr"][0])

    return op, y, score


def test_baselines_beat_zero_filling_at_4x(phantom_case):
    op, y, score = _measure(phantom_case, 4, 0.08)
    zf = score(reconstruct("zero_filled", op, y))
    torch.testing.assert_close(reconstruct("zero_filled", op, y), zero_filled(op, y))
    assert score(reconstruct("sense", op, y, lam=0.0, iters=10)) > zf + 2.0
    assert score(reconstruct("sense", op, y, lam=1e-2, iters=30)) > zf + 2.0
    assert score(reconstruct("cs_wavelet", op, y, lam=1e-3, iters=100)) > zf + 3.0


def test_cs_wavelet_beats_cg_sense_at_8x(phantom_case):
    op, y, score = _measure(phantom_case, 8, 0.04)
    best_sense = max(score(sense(op, y, 0.0, it)) for it in (5, 10, 20))  # its best stop
    cs = score(reconstruct("cs_wavelet", op, y, lam=1e-3, iters=100))
    assert cs > best_sense + 0.2
    assert best_sense > score(zero_filled(op, y))


def test_reconstruct_validates_its_arguments(phantom_case):
    target, maps = phantom_case
    op = MulticoilMRI(maps, 4, 0.08)
    y = op.A(target)
    assert METHODS == ("zero_filled", "sense", "cs_wavelet")
    with pytest.raises(ValueError, match="unknown MRI baseline"):
        reconstruct("espirit", op, y)
    with pytest.raises(ValueError, match="needs lam"):
        reconstruct("cs_wavelet", op, y)
    with pytest.raises(ValueError, match="no lam"):
        reconstruct("zero_filled", op, y, lam=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        reconstruct("sense", op, y, lam=-1.0)
    with pytest.raises(ValueError, match="positive integer"):
        reconstruct("sense", op, y, iters=0)


# -- tuning helpers -----------------------------------------------------------------------------
def test_lambda_grid_is_log_spaced_around_its_centre():
    grid = lambda_grid(1e-3, 2, 9)
    np.testing.assert_allclose(grid[[0, 4, 8]], [1e-5, 1e-3, 1e-1])
    np.testing.assert_allclose(np.diff(np.log10(grid)), 0.5)
    with pytest.raises(ValueError):
        lambda_grid(0.0, 2, 9)
    with pytest.raises(ValueError):
        lambda_grid(1.0, 2, 2)


def test_choose_interior_flags_an_edge_optimum():
    values = lambda_grid(1.0, 1, 5)
    inner = choose_interior(values, [[1, 2], [3, 4], [5, 6], [4, 5], [np.nan, 0]])
    assert inner.index == 2 and inner.interior and inner.message == ""
    assert inner.value == pytest.approx(values[2])
    edge = choose_interior(values, [9, 3, 2, 1, 0])
    assert edge.index == 0 and not edge.interior and "not an interior optimum" in edge.message
    loss = choose_interior(values, [9, 3, 2, 1, 0], higher_is_better=False)
    assert loss.index == 4 and not loss.interior and "highest" in loss.message
    with pytest.raises(ValueError):
        choose_interior(values, [1, 2, 3])


# -- fastMRI metrics ---------------------------------------------------------------------------
def test_metrics_known_values():
    rng = np.random.default_rng(0)
    img = rng.random((32, 32)) + 0.5
    assert psnr(img[None], img[None], 1.5)[0] == float("inf")
    assert nmse(img, img) == 0.0
    assert ssim(img, img, 1.5) == pytest.approx(1.0)
    gt = np.ones((8, 8))
    assert psnr(gt[None], gt[None] + 0.1, 1.0)[0] == pytest.approx(20.0)  # mse 0.01 -> 20 dB
    assert psnr(gt[None], gt[None] + 0.1, 10.0)[0] == pytest.approx(40.0)
    assert nmse(gt, gt + 0.1) == pytest.approx(0.01)
    assert ssim(img, img + rng.normal(0, 0.2, img.shape), 1.5) < 0.9


def test_mri_scores_compare_magnitudes_per_image():
    assert magnitude(np.array([[[[3.0]], [[4.0]]]]))[0, 0, 0] == 5.0
    rng = np.random.default_rng(1)
    target = rng.normal(size=(3, 2, 24, 24))
    recon = target + 0.05 * rng.normal(size=target.shape)
    dr = magnitude(target).max(axis=(-2, -1))
    scores = mri_scores(recon, target, dr)
    assert set(scores) == {"psnr", "ssim", "nmse"}
    assert all(v.shape == (3,) for v in scores.values())
    # A phase rotation leaves the magnitudes, hence every score, unchanged.
    z = target[:, 0] + 1j * target[:, 1]
    z = z * np.exp(1j * 0.7)
    rotated = np.stack([z.real, z.imag], axis=1)
    same = mri_scores(rotated, target, dr)
    assert np.all(same["psnr"] > 250) and np.allclose(same["nmse"], 0, atol=1e-25)
    np.testing.assert_allclose(same["ssim"], 1.0)
    # A common intensity scale (with the volume maximum as data range) changes nothing.
    scaled = mri_scores(7 * recon, 7 * target, 7 * dr)
    for key in scores:
        np.testing.assert_allclose(scaled[key], scores[key], rtol=1e-9)
    with pytest.raises(ValueError):
        mri_scores(recon[:, :1], target[:, :1], dr)
