"""PaDIS's two solvers (patchpnp.solvers.padis; docs/methods.md section 13).

The updates are checked against hand computations with a linear denoiser
``D(x, s) = a x`` (its Jacobian is ``a I``, so DPS's data gradient is
``-a A^T r / ||r||`` in closed form) and the solve's own keyed draws; then batch
independence, common random numbers between whole and tiled denoisers, the cost
report, the zero-residual case and a run through the shifted-grid wrapper.
"""

from __future__ import annotations

import math

import pytest
import torch
from patchpnp.params import SOLVER_KEYS, SOLVER_REQUIRED, TUNED
from patchpnp.patching.patches import ShiftedGridDenoiser
from patchpnp.physics import make_operator
from patchpnp.solvers import (
    SOLVERS,
    PadisDPS,
    PadisLangevin,
    SolverDivergedError,
    SolveStreams,
    edm_sigmas,
    make_solver,
)
from patchpnp.solvers.base import per_sample_noise
from patchpnp.solvers.padis import normalised_data_direction
from patchpnp.solvers.streams import INIT_STEP
from test_patches import SmallConvNet

torch.set_num_threads(1)

A_GAIN = 0.8  # the linear denoiser's factor
SOLVER_CLASSES = {"padis_dps": PadisDPS, "padis_langevin": PadisLangevin}


def linear(a: float = A_GAIN):
    def denoise(x, sigma):
        return a * x

    return denoise


def streams(*keys: int) -> SolveStreams:
    return SolveStreams(0, keys)


def images(batch: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (0.2 + 0.6 * torch.rand(batch, 1, size, size, generator=g)).clamp(0, 1)


def measured(op, x: torch.Tensor, sigma_n: float = 0.05, seed: int = 10) -> torch.Tensor:
    gens = [torch.Generator().manual_seed(seed + b) for b in range(x.shape[0])]
    return op.measure(x, sigma_n, gens)


def per_sample(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, 1, 1, 1)


def norms(r: torch.Tensor) -> torch.Tensor:
    return per_sample(r.flatten(1).norm(dim=1))


# -- the updates, by hand ----------------------------------------------------------------
@pytest.mark.parametrize("task", ["denoise", "sr"])
def test_padis_dps_matches_the_hand_computation(task):
    """Two levels of two iterations: steps k = level * inner + j, noise z_k at level 0
    only; the data gradient of ||y - A (a x)|| is -a A^T r / ||r|| per sample."""
    op = make_operator(task, **({"factor": 2} if task == "sr" else {}))
    y = measured(op, images(2))
    zeta, inner = 0.3, 2
    solver = PadisDPS(
        linear(), op, steps=2, zeta=zeta, inner=inner, sigma_max=2.0, sigma_min=0.1,
        clip_output=False,
    )  # fmt: skip
    st = streams(3, 4)
    out, info = solver.solve(y, 0.05, st)

    x = op.init(y).clamp(0, 1)  # the clamped pseudo-inverse, no noise
    for level, s in enumerate(solver.sigmas[:2].tolist()):
        alpha = 0.5 * s**2
        for j in range(inner):
            d = A_GAIN * x
            r = y - op.A(d)
            g = -A_GAIN * op.A_adjoint(r) / norms(r)
            x_next = x - zeta * g + (alpha / 2) * (d - x) / s**2
            if level == 0:
                x_next = x_next + math.sqrt(alpha) * per_sample_noise(
                    x, st.solver(level * inner + j)
                )
            x = x_next
    torch.testing.assert_close(out, x, rtol=1e-5, atol=1e-5)
    assert (info["nfe"], info["steps"], info["inner"], info["backward_passes"]) == (4, 2, 2, 4)


def test_one_level_one_iteration_of_padis_dps():
    """One level with one iteration is the last level: a data step and the score step
    (D - x) / 4, no noise; the result does not depend on the stream keys."""
    op = make_operator("sr", factor=2)
    y = measured(op, images(1))
    solver = PadisDPS(linear(), op, steps=1, zeta=0.2, inner=1, sigma_max=0.5, clip_output=False)
    out, _ = solver.solve(y, 0.05, streams(1))
    other, _ = solver.solve(y, 0.05, streams(2))
    x = op.init(y).clamp(0, 1)
    r = y - op.A(A_GAIN * x)
    expected = x + 0.2 * A_GAIN * op.A_adjoint(r) / norms(r) + 0.25 * (A_GAIN * x - x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(out, other)


@pytest.mark.parametrize("task", ["denoise", "sr"])
def test_padis_langevin_matches_the_hand_computation(task):
    """Start s_0 z_init; per iteration x' = x + zeta min(40, 200 s) A^T r / ||r|| with
    r = y - A x, then x' + (D(x) - x) / 2 + s z_k (no z at the last level)."""
    op = make_operator(task, **({"factor": 2} if task == "sr" else {}))
    y = measured(op, images(2))
    zeta, inner = 0.05, 2
    solver = PadisLangevin(
        linear(), op, steps=2, zeta=zeta, inner=inner, sigma_max=1.0, sigma_min=0.05,
        clip_output=False,
    )  # fmt: skip
    st = streams(5, 6)
    out, info = solver.solve(y, 0.05, st)

    like = op.init(y)
    x = 1.0 * per_sample_noise(like, st.solver(INIT_STEP))
    for level, s in enumerate(solver.sigmas[:2].tolist()):
        alpha = s**2
        for j in range(inner):
            d = A_GAIN * x
            r = y - op.A(x)
            x_next = x + zeta * min(40.0, 200.0 * s) * op.A_adjoint(r) / norms(r)
            x_next = x_next + (alpha / 2) * (d - x) / s**2
            if level == 0:
                x_next = x_next + math.sqrt(alpha) * per_sample_noise(
                    x, st.solver(level * inner + j)
                )
            x = x_next
    torch.testing.assert_close(out, x, rtol=1e-5, atol=1e-5)
    assert (info["nfe"], info["backward_passes"]) == (4, 0)
    assert solver.data_step_size(0.05) == pytest.approx(zeta * 10.0)
    assert solver.data_step_size(1.0) == pytest.approx(zeta * 40.0)


def test_each_iteration_calls_the_denoiser_with_its_own_grid_stream():
    seen = []

    def recording(x, sigma, generator=None):
        seen.append((float(sigma), [g.initial_seed() for g in generator]))
        return x

    op = make_operator("denoise")
    y = measured(op, images(2))
    st = streams(7, 8)
    for cls in SOLVER_CLASSES.values():
        seen.clear()
        solver = cls(recording, op, steps=3, zeta=0.1, inner=2, sigma_max=1.0)
        solver.solve(y, 0.05, st)
        sigmas = solver.sigmas.tolist()
        expected = [
            (sigmas[level], [g.initial_seed() for g in st.grid(level * 2 + j)])
            for level in range(3)
            for j in range(2)
        ]
        assert seen == expected
        assert len({tuple(keys) for _, keys in seen}) == 6  # a fresh shift every iteration


# -- batches, common random numbers ------------------------------------------------------
@pytest.mark.parametrize("name", sorted(SOLVER_CLASSES))
@pytest.mark.parametrize("patches", [False, True])
def test_a_sample_does_not_depend_on_its_batch(name, patches):
    op = make_operator("sr", factor=2)
    y = measured(op, images(3))
    net = SmallConvNet(channels=1, seed=1)
    den = ShiftedGridDenoiser(net, patch_size=8, padding="zeros") if patches else net

    def solve(y, keys):
        return make_solver(name, den, op, steps=2, zeta=0.2, inner=2, sigma_start=1.0).solve(
            y, 0.05, streams(*keys)
        )[0]

    alone = solve(y[:1], [11])
    batch = solve(y, [11, 12, 13])
    other = solve(y[[0, 2, 1]], [11, 99, 98])
    torch.testing.assert_close(batch[:1], alone, rtol=0, atol=1e-5)
    torch.testing.assert_close(other[:1], alone, rtol=0, atol=1e-5)
    assert not torch.allclose(batch[1], batch[2])


@pytest.mark.parametrize("name", sorted(SOLVER_CLASSES))
@pytest.mark.parametrize("task", ["denoise", "sr"])
def test_whole_and_tiled_denoisers_share_the_solver_noise(name, task):
    """With a pointwise denoiser tiling changes nothing, so whole and tiled solves agree
    only if the tiles' draws (shifts, noisy zero margin: the grid stream) leave the
    solver's noise alone (common random numbers)."""
    op = make_operator(task, **({"factor": 2} if task == "sr" else {}))
    y = measured(op, images(2))
    results = []
    for den in (
        linear(),
        ShiftedGridDenoiser(linear(), patch_size=8, padding="zeros"),
        ShiftedGridDenoiser(linear(), patch_size=4, padding="reflect", patch_batch=5),
    ):
        solver = make_solver(name, den, op, steps=3, zeta=0.2, inner=2, sigma_start=1.0)
        results.append(solver.solve(y, 0.05, streams(21, 22))[0])
    for other in results[1:]:
        torch.testing.assert_close(other, results[0], rtol=0, atol=1e-6)


# -- cost, safety, arguments ---------------------------------------------------------------
@pytest.mark.parametrize("name, backward", [("padis_dps", 6), ("padis_langevin", 0)])
def test_info_reports_denoiser_calls_as_levels_times_inner(name, backward):
    op = make_operator("denoise")
    y = measured(op, images(2))
    wrapper = ShiftedGridDenoiser(linear(), patch_size=8, padding="reflect")
    solver = make_solver(name, wrapper, op, steps=3, zeta=0.2, inner=2, sigma_start=1.0)
    _, info = solver.solve(y, 0.05, streams(1, 2))
    assert info["nfe"] == solver.nfe == 6 and info["steps"] == 3 and info["inner"] == 2
    assert info["backward_passes"] == backward
    # 16 x 16 images, 8 x 8 tiles: 3 x 3 tiles per image per call.
    assert info["tiles_evaluated"] == 9 * 6 and info["backward_tiles"] == 9 * backward
    assert wrapper.calls == 6


@pytest.mark.parametrize("local", [True, False])
def test_a_zero_residual_gives_a_zero_data_step(local):
    """y = A D(x) at the start (identity denoiser, y in [0, 1]): no NaN, and with one
    noise-free level the state stays y."""
    op = make_operator("denoise")
    if not local:
        op.pixel_local = False  # through autograd of the norm instead of the one-pass product
    y = images(2)
    out, _ = PadisDPS(linear(1.0), op, steps=1, zeta=0.3, inner=3, sigma_max=0.5).solve(
        y, 0.0, streams(1, 2)
    )
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, y, rtol=0, atol=1e-7)

    sr = make_operator("sr", factor=2)
    x = images(2)
    y_sr = sr.A(x)
    y_sr[1] += 0.1  # one sample with a residual, one without
    step = normalised_data_direction(sr, x, y_sr)
    assert torch.isfinite(step).all()
    assert torch.equal(step[0], torch.zeros_like(step[0])) and step[1].abs().sum() > 0


@pytest.mark.parametrize("name", sorted(SOLVER_CLASSES))
@pytest.mark.parametrize("task", ["denoise", "sr"])
def test_runs_through_the_shifted_grid_wrapper_on_32x32_images(name, task):
    op = make_operator(task, **({"factor": 2} if task == "sr" else {}))
    x = images(2, size=32)
    y = measured(op, x)
    net = SmallConvNet(channels=1, seed=2)
    den = ShiftedGridDenoiser(net, patch_size=16, padding="reflect", patch_batch=4)
    solver = make_solver(name, den, op, steps=3, zeta=0.1, inner=2)
    out, info = solver.solve(y, 0.05, streams(1, 2))
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    assert info["nfe"] == 6 and info["tiles_evaluated"] == 9 * 6


def test_divergence_names_the_level_and_the_image():
    calls = []

    def poisoned(x, sigma):
        calls.append(1)
        out = x.clone()
        if len(calls) == 3:
            out[1, 0, 0, 0] = float("nan")
        return out

    op = make_operator("denoise")
    solver = PadisLangevin(poisoned, op, steps=3, zeta=0.1, inner=2, sigma_max=1.0)
    with pytest.raises(SolverDivergedError, match=r"padis_langevin diverged at step 1 of 3"):
        solver.solve(measured(op, images(2)), 0.05, streams(1, 2), names=["a", "b"])


@pytest.mark.parametrize(
    "params",
    [
        {"zeta": 0.0}, {"zeta": -1.0}, {"zeta": float("nan")}, {"zeta": "big"}, {"zeta": True},
        {"zeta": 0.3, "inner": 0}, {"zeta": 0.3, "inner": 2.5}, {"zeta": 0.3, "inner": True},
        {"zeta": 0.3, "inner": "10"}, {"zeta": 0.3, "steps": 0},
    ],
)  # fmt: skip
@pytest.mark.parametrize("name", sorted(SOLVER_CLASSES))
def test_bad_arguments_are_refused(name, params):
    with pytest.raises(ValueError, match="zeta|inner|steps"):
        make_solver(name, linear(), make_operator("denoise"), **{"steps": 3, **params})


def test_registration_params_and_padis_schedule():
    for name, cls in SOLVER_CLASSES.items():
        assert SOLVERS[name] is cls
        assert SOLVER_KEYS[name] == {"zeta", "inner", "sigma_start"}
        assert SOLVER_REQUIRED[name] == {"zeta"} and TUNED[name] == "zeta"
    solver = make_solver("padis_dps", linear(), make_operator("denoise"), steps=4, zeta=0.3)
    assert solver.inner == 10 and solver.nfe == 40
    # PaDIS's CT settings: 100 levels from 10 down to 0.003 ([0, 1] units), then 0.
    ct = PadisDPS(linear(), make_operator("denoise"), steps=100, zeta=0.3, sigma_start=10.0,
                  sigma_min=0.003)  # fmt: skip
    assert torch.equal(ct.sigmas, edm_sigmas(100, 40.0, 0.003, 7.0, 10.0))
    assert ct.sigmas[0] == 10.0 and ct.sigmas[99] == 0.003 and ct.sigmas[100] == 0.0
