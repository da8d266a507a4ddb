"""Tests of the diffusion solvers (DPS, DiffPIR) and the EDM schedule, with oracle priors.

The oracle prior is Gaussian and independent per pixel, ``x ~ N(mu, tau^2)`` with a
sharp mean image ``mu`` (a checkerboard), so the exact MMSE denoiser is
``D(x, s) = (tau^2 x + s^2 mu) / (tau^2 + s^2)`` and the exact posterior mean of
``y = A x + n`` is the operator's prox: ``argmin ||y - A x||^2 + (sigma_n/tau)^2 ||x - mu||^2``.
A diffusion solver driven by this denoiser is a (near) posterior sampler, so the
average of a few runs must come close to the posterior mean, and each run must beat
the measurement baseline (noisy image / bicubic upsampling, which blurs the edges).
"""

from __future__ import annotations

import math

import pytest
import torch
from patchpnp.patching.patches import ShiftedGridDenoiser
from patchpnp.physics import make_operator
from patchpnp.solvers import (
    DPS,
    DiffPIR,
    SolverDenoiser,
    SolverDivergedError,
    SolveStreams,
    dps_step_size,
    edm_sigmas,
    make_solver,
)
from patchpnp.solvers.dps import data_gradient
from test_patches import CountingInner, SmallConvNet

torch.set_num_threads(1)

H = 32
TAU = 0.05


def checkerboard_mean(size: int = H) -> torch.Tensor:
    i = torch.arange(size)
    board = ((i[:, None] // 4 + i[None, :] // 4) % 2).float()
    return (0.3 + 0.4 * board).reshape(1, 1, size, size)


MU = checkerboard_mean()


def gaussian_oracle(mu, tau: float = TAU):
    """The exact MMSE denoiser of the per-pixel Gaussian prior ``N(mu, tau^2)``."""

    def denoise(x: torch.Tensor, sigma) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return (tau**2 * x + s**2 * mu) / (tau**2 + s**2)

    return denoise


ORACLE = gaussian_oracle(MU)
FLAT_ORACLE = gaussian_oracle(0.5)  # constant mean: the same denoiser on any tile


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1.0 / ((a - b) ** 2).flatten(1).mean(1))


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def streams(*keys: int) -> SolveStreams:
    """A solve's random streams, one image key per image (keys play the seeds' part)."""
    return SolveStreams(0, keys)


def sample_images(batch: int, seed: int = 0, mu=MU) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return mu + TAU * torch.randn(batch, 1, H, H, generator=g)


def problem(task: str, sigma_n: float, batch: int = 3, **params):
    op = make_operator(task, **params)
    x = sample_images(batch)
    y = op.measure(x, sigma_n, gens(*range(100, 100 + batch)))
    posterior_mean = op.prox(MU.expand_as(x), y, sigma_n**2 / TAU**2)
    return op, x, y, posterior_mean


def average_of_runs(solver, y, sigma_n, runs: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``runs`` copies of each image in one batch; return (first runs, run means)."""
    b = y.shape[0]
    x_hat, _ = solver.solve(y.repeat_interleave(runs, 0), sigma_n, streams(*range(b * runs)))
    x_hat = x_hat.reshape(b, runs, *x_hat.shape[1:])
    return x_hat[:, 0], x_hat.mean(1)


class Counting:
    """Wraps a denoiser, counting calls (and optionally poisoning one sample's output)."""

    def __init__(self, inner, nan_at_call: int | None = None, nan_sample: int = 0):
        self.inner, self.calls = inner, 0
        self.nan_at_call, self.nan_sample = nan_at_call, nan_sample

    def __call__(self, x, sigma):
        self.calls += 1
        out = self.inner(x, sigma)
        if self.nan_at_call is not None and self.calls == self.nan_at_call + 1:
            out = out.clone()
            out[self.nan_sample, 0, 0, 0] = float("nan")
        return out


# -- schedule --------------------------------------------------------------------------------
def test_edm_sigmas_endpoints_and_monotonicity():
    s = edm_sigmas(10)
    assert s.shape == (11,) and s.dtype == torch.float64
    assert s[0].item() == 40.0 and s[-2].item() == pytest.approx(0.001) and s[-1].item() == 0.0
    assert bool((s[1:] < s[:-1]).all())
    # The rho = 7 formula at an interior point.
    hi, lo = 40.0 ** (1 / 7), 0.001 ** (1 / 7)
    assert s[3].item() == pytest.approx((hi + 3 / 9 * (lo - hi)) ** 7, rel=1e-12)


def test_edm_sigmas_sigma_start_reapplies_the_formula():
    s = edm_sigmas(8, sigma_start=0.5)
    assert s.shape == (9,) and s[0].item() == 0.5 and s[-2].item() == pytest.approx(0.001)
    assert bool((s[1:] < s[:-1]).all())
    hi, lo = 0.5 ** (1 / 7), 0.001 ** (1 / 7)
    assert s[4].item() == pytest.approx((hi + 4 / 7 * (lo - hi)) ** 7, rel=1e-12)
    assert edm_sigmas(1, sigma_start=0.2).tolist() == [0.2, 0.0]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": 0},
        {"steps": 2.5},
        {"steps": 5, "sigma_start": 50.0},
        {"steps": 5, "sigma_start": 0.0005},
    ],
)
def test_edm_sigmas_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        edm_sigmas(**kwargs)


# -- quality with the oracle prior ------------------------------------------------------------
def test_diffpir_denoising_reaches_the_gaussian_posterior_mean():
    sigma_n = 0.1
    op, x, y, post = problem("denoise", sigma_n)
    solver = DiffPIR(ORACLE, op, steps=50, lam=1.0, zeta=1.0, sigma_start=1.0)
    single, mean = average_of_runs(solver, y, sigma_n, runs=8)
    noisy, best = psnr(y, x), psnr(post, x)
    assert bool((best > noisy + 6).all())  # the test problem has room to improve
    assert bool((psnr(single, x) > noisy + 3).all())
    # 8-run average of a posterior sampler: MSE ~ MMSE (1 + 1/8), i.e. ~0.5 dB below.
    assert bool((psnr(mean, x) > best - 1.0).all())


def test_diffpir_super_resolution_beats_bicubic_and_nears_the_posterior_mean():
    sigma_n = 0.025
    op, x, y, post = problem("sr", sigma_n, factor=2)
    solver = DiffPIR(ORACLE, op, steps=50, lam=1.0, zeta=1.0, sigma_start=1.0)
    single, mean = average_of_runs(solver, y, sigma_n, runs=8)
    bicubic = psnr(op.init(y), x)
    assert bool((psnr(single, x) > bicubic + 3).all())
    assert bool((psnr(mean, x) > psnr(post, x) - 1.0).all())


def test_dps_denoising_improves_on_the_noisy_input():
    sigma_n = 0.1
    op, x, y, _ = problem("denoise", sigma_n)
    solver = DPS(ORACLE, op, steps=30, zeta=0.3, sigma_start=1.0)
    x_hat, _ = solver.solve(y, sigma_n, streams(1, 2, 3))
    assert bool((psnr(x_hat, x) > psnr(y, x) + 3).all())


def test_dps_step_size_units():
    # zeta on the official [-1, 1] scale: the [0, 1] step is half of it, with network sigmas.
    assert dps_step_size(1.0, 0.0, 0.0) == pytest.approx(0.5)
    s, t = 0.3, 0.1
    expected = 0.5 * 0.7 * math.sqrt((1 + (2 * s) ** 2) * (1 + (2 * t) ** 2))
    assert dps_step_size(0.7, s, t) == pytest.approx(expected)


# -- batches, seeds, gradients ------------------------------------------------------------
def build(name: str, denoiser, op, steps: int = 6):
    if name == "dps":
        return make_solver("dps", denoiser, op, steps=steps, zeta=0.3, sigma_start=1.0)
    return make_solver("diffpir", denoiser, op, steps=steps, lam=1.0, zeta=0.3, sigma_start=1.0)


@pytest.mark.parametrize("name", ["dps", "diffpir"])
@pytest.mark.parametrize("patches", [False, True])
def test_a_sample_does_not_depend_on_its_batch(name, patches):
    op = make_operator("denoise")
    x = sample_images(3, mu=0.5)
    y = op.measure(x, 0.1, gens(7, 8, 9))
    den = (
        ShiftedGridDenoiser(FLAT_ORACLE, patch_size=16, padding="reflect")
        if patches
        else FLAT_ORACLE
    )
    alone, _ = build(name, den, op).solve(y[:1], 0.1, streams(11))
    batch, _ = build(name, den, op).solve(y, 0.1, streams(11, 12, 13))
    other_batch, _ = build(name, den, op).solve(y[[0, 2, 1]], 0.1, streams(11, 99, 98))
    torch.testing.assert_close(batch[:1], alone, rtol=0, atol=1e-6)
    torch.testing.assert_close(other_batch[:1], alone, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["dps", "diffpir"])
def test_solves_are_deterministic_given_the_seeds(name):
    op = make_operator("sr", factor=2)
    y = op.measure(sample_images(2), 0.025, gens(1, 2))
    a, _ = build(name, ORACLE, op).solve(y, 0.025, streams(5, 6))
    b, _ = build(name, ORACLE, op).solve(y, 0.025, streams(5, 6))
    c, _ = build(name, ORACLE, op).solve(y, 0.025, streams(5, 7))
    assert torch.equal(a, b)
    assert torch.equal(a[0], c[0]) and not torch.equal(a[1], c[1])


def test_dps_guidance_is_per_sample():
    op = make_operator("denoise")
    x = sample_images(2)
    y = op.measure(x, 0.1, gens(1, 2))
    y_changed = y.clone()
    y_changed[1] = 1.0 - y_changed[1]
    a, _ = build("dps", ORACLE, op, steps=3).solve(y, 0.1, streams(5, 6))
    b, _ = build("dps", ORACLE, op, steps=3).solve(y_changed, 0.1, streams(5, 6))
    assert torch.equal(a[0], b[0])  # sample 0 ignores sample 1's measurement...
    assert not torch.equal(a[1], b[1])  # ...which does change sample 1


# -- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["dps", "diffpir"])
def test_divergence_names_the_step_and_the_image(name):
    op = make_operator("denoise")
    y = op.measure(sample_images(3), 0.1, gens(1, 2, 3))
    solver = build(name, Counting(ORACLE, nan_at_call=2, nan_sample=1), op)
    with pytest.raises(SolverDivergedError, match=r"step 2 of 6.*image 1 .*'slice-b'") as err:
        solver.solve(y, 0.1, streams(4, 5, 6), names=["slice-a", "slice-b", "slice-c"])
    assert (err.value.step, err.value.index, err.value.name) == (2, 1, "slice-b")
    assert isinstance(err.value, ValueError)


def test_diffpir_rejects_zero_measurement_noise_before_any_work():
    op = make_operator("denoise")
    y = op.measure(sample_images(1), 0.1, gens(1))
    den = Counting(ORACLE)
    with pytest.raises(ValueError, match="sigma_n must be > 0"):
        build("diffpir", den, op).solve(y, 0.0, streams(2))
    assert den.calls == 0


@pytest.mark.parametrize(
    "params", [{"steps": 5, "zeta": 0.0}, {"steps": 5, "zeta": -1.0}, {"steps": 0, "zeta": 0.3}]
)
def test_dps_rejects_bad_parameters(params):
    with pytest.raises(ValueError):
        DPS(ORACLE, make_operator("denoise"), **params)


def test_unknown_solver_names_the_valid_ones():
    valid = (
        r"\['diffpir', 'dinv_dps', 'dinv_ilvr', 'dinv_pigdm', 'dps', 'padis_dps', "
        r"'padis_langevin'\]"
    )
    with pytest.raises(ValueError, match=rf"'langevin'.*{valid}"):
        make_solver("langevin", ORACLE, make_operator("denoise"), steps=3)


def test_streams_must_match_the_batch():
    op = make_operator("denoise")
    y = op.measure(sample_images(2), 0.1, gens(1, 2))
    with pytest.raises(ValueError, match="one image key per image"):
        build("diffpir", ORACLE, op).solve(y, 0.1, streams(1))
    with pytest.raises(ValueError, match="SolveStreams"):
        build("diffpir", ORACLE, op).solve(y, 0.1, gens(1, 2))


# -- cost accounting ----------------------------------------------------------------------
def test_adapter_passes_generators_only_to_denoisers_that_take_them():
    seen = {}

    def with_generator(x, sigma, generator=None):
        seen["generator"] = generator
        return x

    gs = gens(1, 2)
    x = torch.zeros(2, 1, 4, 4)
    assert SolverDenoiser(with_generator).accepts_generator
    SolverDenoiser(with_generator)(x, 0.1, gs)
    assert seen["generator"] == gs
    assert not SolverDenoiser(ORACLE).accepts_generator
    assert SolverDenoiser(ShiftedGridDenoiser(FLAT_ORACLE, patch_size=8)).accepts_generator


@pytest.mark.parametrize("name, backward", [("dps", 5), ("diffpir", 0)])
def test_info_counts_calls_backward_passes_and_tiles(name, backward):
    op = make_operator("denoise")
    y = op.measure(sample_images(2, mu=0.5)[..., :16, :16], 0.1, gens(1, 2))
    _, info = build(name, Counting(FLAT_ORACLE), op, steps=5).solve(y, 0.1, streams(3, 4))
    assert (info["nfe"], info["backward_passes"]) == (5, backward)
    assert info["tiles_evaluated"] is None and info["batch_size"] == 2

    # 16 x 16 images, 8 x 8 tiles: k = 2, M = 8, (k + 1)^2 = 9 tiles per image per call.
    wrapper = ShiftedGridDenoiser(FLAT_ORACLE, patch_size=8, padding="reflect", patch_batch=4)
    wrapper.tiles_evaluated = 1000  # counts from earlier work must not leak into this solve
    _, info = build(name, wrapper, op, steps=5).solve(y, 0.1, streams(3, 4))
    assert info["nfe"] == 5 and info["backward_passes"] == backward
    assert info["tiles_evaluated"] == 9 * 5
    assert info["backward_tiles"] == 9 * backward
    assert wrapper.calls == 5


# -- the first state -------------------------------------------------------------------------
def test_first_state_noise_is_the_level_the_denoiser_is_told():
    """Denoising: y already carries sigma_n, so only sqrt(s0^2 - sigma_n^2) is added and y
    is not clamped; elsewhere the guess is clamped and s0 added (docs/methods.md section 6)."""
    x = torch.full((2, 1, 64, 64), 0.02)  # dark: clamping y would fold its noise
    op = make_operator("denoise")
    y = op.measure(x, 0.2, gens(1, 2))
    solver = DiffPIR(ORACLE, op, steps=5, lam=1.0, zeta=0.3, sigma_start=0.5)
    state = solver.initial_state(y, torch.tensor([0.2, 0.2], dtype=torch.float64), streams(3, 4))
    total = (state - x).flatten(1).std(1)
    assert torch.allclose(total, torch.tensor([0.5, 0.5]), rtol=0.05)
    added = (state - y).flatten(1).std(1)
    assert torch.allclose(added, torch.tensor([0.5**2 - 0.2**2]).sqrt(), rtol=0.05)

    sr = make_operator("sr", factor=2)
    y_sr = sr.measure(x, 0.025, gens(1, 2))
    state = DiffPIR(ORACLE, sr, steps=5, lam=1.0, zeta=0.3, sigma_start=0.2).initial_state(
        y_sr, torch.tensor([0.025, 0.025], dtype=torch.float64), streams(3, 4)
    )
    guess = sr.init(y_sr).clamp(0, 1)
    assert torch.allclose((state - guess).flatten(1).std(1), torch.tensor([0.2, 0.2]), rtol=0.05)


def test_a_first_level_below_the_measurement_noise_is_refused():
    op = make_operator("denoise")
    y = op.measure(sample_images(1), 0.3, gens(1))
    with pytest.raises(ValueError, match="raise sigma_start to at least sigma_n"):
        DPS(ORACLE, op, steps=3, zeta=0.3, sigma_start=0.2).solve(y, 0.3, streams(1))


class _NotLocal(type(make_operator("denoise"))):
    """Denoising declared non-local: DPS then differentiates the norm by autograd."""

    pixel_local = False


@pytest.mark.parametrize("patch", [None, 8])
def test_dps_one_pass_data_gradient_equals_autograd_of_the_norm(patch):
    """For denoising, DPS's data gradient through the one-pass product (scaled by
    1 / ||y - x0|| afterwards) equals autograd of the per-sample norms, tiled (through
    the recomputing backward, with micro-batches) or not; the tiled one evaluates each
    tile once instead of twice."""
    net = SmallConvNet(channels=1, seed=3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 1, 24, 24, generator=g), torch.rand(2, 1, 24, 24, generator=g)
    results = {}
    for operator in (make_operator("denoise"), _NotLocal()):
        inner = CountingInner(net)
        den = inner if patch is None else ShiftedGridDenoiser(inner, patch, patch_batch=2)
        grids = [torch.Generator().manual_seed(5 + b) for b in range(2)]
        x0, grad = data_gradient(SolverDenoiser(den), operator, x, y, 0.3, grids)
        results[operator.pixel_local] = (x0, grad, inner.calls)
    (x0_l, grad_l, calls_l), (x0_a, grad_a, calls_a) = results[True], results[False]
    assert torch.equal(x0_l, x0_a)
    assert torch.allclose(grad_l, grad_a, rtol=1e-5, atol=1e-7)
    chunks = 1 if patch is None else 2 * 4 * 4 // 2
    assert calls_l == {False: 0, True: chunks}
    assert calls_a == {False: 0 if patch is None else chunks, True: chunks}
