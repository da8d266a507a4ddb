"""deepinv's posterior samplers behind our solver interface: units, keyed streams, cost."""

import numpy as np
import pytest
import torch
from patchpnp.inference.posterior import posterior_stats
from patchpnp.params import DEEPINV_SOLVERS, SOLVER_KEYS, TUNED
from patchpnp.patching.patches import ShiftedGridDenoiser
from patchpnp.physics import make_operator
from patchpnp.solvers import SolveStreams, make_solver, solver_class
from patchpnp.solvers.deepinv_solvers import operator_physics

MU, TAU = 0.4, 0.2
TASKS = {"denoise": ({}, 0.2), "sr": ({"factor": 2, "kernel": "bicubic"}, 0.025)}


def gaussian_mmse(x, sigma):
    """The exact [0, 1]-space MMSE denoiser of i.i.d. N(MU, TAU^2) pixels: pointwise."""
    s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
    return MU + TAU**2 / (TAU**2 + s**2) * (x - MU)


def problem(task, n=3, side=32, seed=0):
    params, sigma_n = TASKS[task]
    op = make_operator(task, **params)
    g = torch.Generator().manual_seed(seed)
    x = MU + TAU * torch.randn(n, 1, side, side, generator=g)
    y = op.A(x)
    return op, x, y + sigma_n * torch.randn(y.shape, generator=g), sigma_n


def solve(name, denoiser, op, y, sigma_n, keys=(1, 2, 3), sample=0, steps=8, weight=1.0):
    solver = make_solver(name, denoiser, op, steps=steps, weight=weight, sigma_start=0.5)
    return solver.solve(y, sigma_n, SolveStreams(7, list(keys), sample))


def test_registered_with_one_tuned_weight():
    for name in DEEPINV_SOLVERS:
        assert SOLVER_KEYS[name] == {"weight", "sigma_start"} and TUNED[name] == "weight"
        assert solver_class(name).name == name
    with pytest.raises(ValueError, match="unknown solver"):
        solver_class("dinv_nope")
    op, _, y, sigma_n = problem("denoise")
    with pytest.raises(ValueError, match="weight must be > 0"):
        solve("dinv_dps", gaussian_mmse, op, y, sigma_n, weight=0.0)


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("name", DEEPINV_SOLVERS)
def test_common_random_numbers_whole_equals_every_tiling(name, task):
    """With a pointwise denoiser, tiling changes nothing: the whole cell and every patch
    cell (any padding) must agree bit for bit, so the solver noise is the image's own."""
    op, _, y, sigma_n = problem(task)
    whole, info = solve(name, gaussian_mmse, op, y, sigma_n)
    assert info["nfe"] == 8 and info["backward_passes"] == (0 if name == "dinv_ilvr" else 8)
    for padding in ("reflect", "zeros"):
        tiled = ShiftedGridDenoiser(gaussian_mmse, 16, padding=padding, patch_batch=3)
        patch, pinfo = solve(name, tiled, op, y, sigma_n)
        assert torch.equal(whole, patch), (name, task, padding)
        backward = pinfo["backward_tiles"]
        assert (backward == 0) if name == "dinv_ilvr" else (backward == pinfo["tiles_evaluated"])


@pytest.mark.parametrize("name", DEEPINV_SOLVERS)
def test_draws_are_keyed_per_image_and_per_sample(name):
    op, _, y, sigma_n = problem("denoise")
    batch, _ = solve(name, gaussian_mmse, op, y, sigma_n)
    alone, _ = solve(name, gaussian_mmse, op, y[1:2], sigma_n, keys=(2,))
    assert torch.allclose(batch[1:2], alone, atol=1e-6)  # independent of its companions
    again, _ = solve(name, gaussian_mmse, op, y, sigma_n)
    other, _ = solve(name, gaussian_mmse, op, y, sigma_n, sample=1)
    assert torch.equal(batch, again)
    assert not torch.allclose(batch, other)  # sample 1: other solver noise


def test_deepinv_dps_weight_moves_by_the_level_squared():
    """Why deepinv's DPS needs a weight in the hundreds: its step to sigma 0 from ``s_0``
    is ``D(x) - s_0^2 weight grad ||A D(x) - y||`` in [0, 1] units, where the original DPS
    moves ``zeta grad``. One step (s_0 = 0.5) with two weights differs by exactly
    ``s_0^2 (w1 - w0) grad``."""
    op, _, y, sigma_n = problem("denoise", n=2)
    outs = [
        solve("dinv_dps", gaussian_mmse, op, y, sigma_n, keys=(1, 2), steps=1, weight=w)[0]
        for w in (1, 5)
    ]
    solver = make_solver("dinv_dps", gaussian_mmse, op, steps=1, weight=1.0, sigma_start=0.5)
    x0 = solver.initial_state(y, torch.tensor([sigma_n] * 2), SolveStreams(7, [1, 2]))
    x0 = x0.clone().requires_grad_(True)
    residual = (op.A(gaussian_mmse(x0, 0.5)) - y).flatten(1).norm(dim=1).sum()
    (grad,) = torch.autograd.grad(residual, x0)
    assert torch.allclose(outs[1] - outs[0], -(0.5**2) * 4 * grad, atol=1e-5)


def test_operator_physics_is_ours():
    op, x, y, sigma_n = problem("sr")
    physics = operator_physics(op, sigma_n)
    assert torch.allclose(physics.A(x), op.A(x))
    assert torch.allclose(physics.A_adjoint(y), op.A_adjoint(y))
    z = torch.rand_like(x)
    rho = torch.full((x.shape[0],), 2.0)
    assert torch.allclose(physics.prox_l2(z, y, 0.5), op.prox(z, y, rho), atol=1e-6)
    assert float(physics.noise_model.sigma) == pytest.approx(sigma_n)


def test_posterior_stats_by_hand():
    truth = np.array([0.0, 0.0, 1.0]).reshape(1, 1, 1, 3)
    # pixel 0: mean 1, sd 1.41, error 1 (covered); pixel 1: the clamp, every sample and
    # the truth 0 (sd 0: says nothing, left out); pixel 2: mean 0.1, sd 0.14, error 0.9.
    samples = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.2]]).reshape(2, 1, 1, 1, 3)
    cols, mean, sd = posterior_stats(samples, truth)
    assert mean.ravel().tolist() == pytest.approx([1.0, 0.0, 0.1])
    assert sd.ravel() == pytest.approx([np.sqrt(2), 0.0, np.sqrt(0.02)])
    # Over the pixels with spread: 1 of 2 (counting the clamped pixel gave 2 of 3).
    assert cols["coverage_1sd"][0] == 0.5
    assert cols["coverage_2sd"][0] == 0.5
    assert cols["zero_sd_fraction"][0] == pytest.approx(1 / 3)
    # No spread anywhere: no coverage to report.
    flat, _, _ = posterior_stats(np.zeros((2, 1, 1, 1, 3)), truth)
    assert np.isnan(flat["coverage_1sd"][0]) and flat["zero_sd_fraction"][0] == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        posterior_stats(samples[:1], truth)


def test_calibrated_coverage_matches_gaussian_samples():
    """Truth and K = 4 samples drawn from one Gaussian: the measured coverage is the
    Student-t reference of the uncertainty table (0.56 / 0.83, not 0.68 / 0.95)."""
    from patchpnp.evaluation.uncertainty import calibrated_coverage

    rng = np.random.default_rng(0)
    draws = rng.normal(size=(5, 1, 1, 200, 200))
    cols, _, _ = posterior_stats(draws[1:], draws[0])
    for z in (1, 2):
        expect = calibrated_coverage(z, 4)
        assert cols[f"coverage_{z}sd"][0] == pytest.approx(expect, abs=0.01)
    assert calibrated_coverage(1, 4) == pytest.approx(0.563, abs=0.002)
    assert calibrated_coverage(2, 10_000) == pytest.approx(0.954, abs=0.002)


def test_pigdm_covariance_in_pigdm_units():
    """deepinv's data term receives the level in [0, 1] units (``s / 2``); PiGDM's
    ``r_t^2 = s^2 / (1 + s^2)`` is for [-1, 1] data, so in [0, 1] units it is a quarter of
    that at ``s = 2 sigma``. deepinv's own formula on the [0, 1] level is up to 4x larger."""
    from patchpnp.solvers.deepinv_solvers import pigdm_r_t2

    for sigma in (0.01, 0.1, 0.5, 2.0):
        s = 2 * sigma
        assert pigdm_r_t2(sigma) == pytest.approx(s**2 / (1 + s**2) / 4)

    # deepinv's formula on the [0, 1] level: ~1x ours at low noise, 4x at high noise.
    def deepinv_r_t2(sigma):
        return sigma**2 / (1 + sigma**2)

    assert deepinv_r_t2(0.01) / pigdm_r_t2(0.01) == pytest.approx(1.0, abs=1e-3)
    assert deepinv_r_t2(0.5) / pigdm_r_t2(0.5) == pytest.approx(1.6)
    assert deepinv_r_t2(100.0) / pigdm_r_t2(100.0) == pytest.approx(4.0, rel=1e-3)
    assert pigdm_r_t2(100.0) == pytest.approx(0.25, rel=1e-4)  # the [0, 1] prior variance
