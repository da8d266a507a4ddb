"""The deepinv cross-check: exact wrappers, the lambda conversion, and agreement of the
two DiffPIR implementations where the answer is known to be shared.

Runs only where deepinv (the ``crosscheck`` extra) is installed.
"""

import sys

import h5py
import numpy as np
import pytest
import torch
from patchpnp.physics import Denoising, SuperResolution
from patchpnp.prior.loading import build_network
from patchpnp.prior.precond import ImageSpaceDenoiser
from patchpnp.solvers.streams import SequentialStreams
from patchpnp.tools.crosscheck import (
    CrosscheckError,
    DeepinvDenoiser,
    check_physics,
    ddpm_step_for,
    deepinv_levels,
    deepinv_physics,
    make_deepinv_diffpir,
    operator_physics,
    ours_on_levels,
    require_deepinv,
    run_crosscheck,
    to_deepinv_lambda,
)
from workflow_runner import TINY_NETWORK

dinv = pytest.importorskip("deepinv")

OPERATORS = {"denoise": Denoising(), "sr": SuperResolution(2, "bicubic")}


class GaussianPrior(torch.nn.Module):
    """The exact MMSE denoiser of the prior ``x ~ N(mean, c^2 I)`` ([0, 1] units).

    Deterministic and draws no random numbers, so both DiffPIRs see the same noise
    when their generators start from the same seed.
    """

    def __init__(self, mean: torch.Tensor, c: float):
        super().__init__()
        self.mean, self.c = mean, c

    def forward(self, x, sigma):
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1)
        return self.mean + self.c**2 / (self.c**2 + s**2) * (x - self.mean)


def smooth_image(size=32):
    u = torch.linspace(0, 1, size)
    return (0.5 + 0.25 * torch.sin(6 * u)[:, None] * torch.cos(4 * u)[None, :]).reshape(
        1, 1, size, size
    )


# -- the wrappers are exact ---------------------------------------------------------------
@pytest.mark.parametrize("task", ["denoise", "sr"])
@pytest.mark.parametrize("kind", ["native", "wrapped"])
def test_physics_is_our_operator(task, kind):
    op = OPERATORS[task]
    physics = deepinv_physics(op, 0.05, (1, 16, 16), kind=kind)
    if kind == "native":  # deepinv's own classes, with their own FFT prox
        assert type(physics).__name__ == {"denoise": "Denoising", "sr": "Downsampling"}[task]
    for rho in (0.01, 0.3, 20.0):
        errors = check_physics(op, physics, (3, 1, 16, 16), rho=rho, seed=int(rho * 100))
        assert max(errors.values()) < 1e-5, errors
    assert float(physics.noise_model.sigma) == pytest.approx(0.05)  # where DiffPIR reads it


def test_check_physics_sees_a_different_operator():
    # deepinv's bicubic downsampling is not a box downsampling: the check must say so.
    errors = check_physics(
        SuperResolution(2, "box"),
        deepinv_physics(OPERATORS["sr"], 0.05, (1, 16, 16)),
        (2, 1, 16, 16),
    )
    assert errors["A"] > 0.05


def test_our_closed_form_prox_matches_deepinvs_iterative_solve():
    # deepinv's generic LinearPhysics prox (conjugate gradients on A^T A + I / gamma),
    # run with our A and A^T only: an independent check of our FFT formula.
    op = OPERATORS["sr"]
    physics = operator_physics(op, 0.05)
    g = torch.Generator().manual_seed(3)
    z = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64)
    y = op.A(torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64))
    for rho in (0.05, 1.0):
        cg = dinv.physics.LinearPhysics.prox_l2(physics, z, y, 1 / rho, max_iter=500, tol=1e-12)
        assert torch.allclose(cg, op.prox(z, y, rho), atol=2e-5)


def test_denoiser_wrapper_is_d01_of_the_network():
    net = build_network(TINY_NETWORK, seed=2).eval().requires_grad_(False)
    wrapped = DeepinvDenoiser(ImageSpaceDenoiser(net))
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    for s in (0.02, 0.3):
        expected = (net(2 * x - 1, 2 * s) + 1) / 2  # network units: [-1, 1] and 2 s
        got = wrapped(x, torch.tensor(s, dtype=torch.float32))  # how deepinv calls it
        assert torch.allclose(got, expected, atol=1e-6)
    per_sample = wrapped(x, torch.tensor([0.02, 0.3]))
    assert torch.allclose(per_sample[1:], wrapped(x[1:], 0.3), atol=1e-5)
    assert wrapped.calls == 4


# -- the lambda conversion and the schedule --------------------------------------------------
@pytest.mark.parametrize("task", ["denoise", "sr"])
def test_deepinv_data_step_is_ours_with_lambda_doubled(task):
    # deepinv's own data step at step t, L2().prox(x0, y, gamma = 1 / (2 rho_t)), equals our
    # prox with rho = lam sigma_n^2 / s^2, s = its level in [0, 1] units, when lambda_ = 2 lam.
    op, sigma_n, lam = OPERATORS[task], 0.05, 0.7
    engine = make_deepinv_diffpir(torch.nn.Identity(), steps=10, lam=lam, zeta=0.3, sigma_n=sigma_n)
    assert engine.lambda_ == to_deepinv_lambda(lam) == 2 * lam
    physics = deepinv_physics(op, sigma_n, (1, 16, 16))
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(2, 1, 16, 16, generator=g)
    y = op.measure(torch.rand(2, 1, 16, 16, generator=g), sigma_n, g)
    for t in (5, 100, 400):
        s = float(engine.reduced_alpha_cumprod[t]) / 2
        theirs = engine.data_fidelity.prox(x0, y, physics, gamma=1.0 / (2 * engine.rhos[t]))
        rho = lam * sigma_n**2 / s**2
        ours = op.prox(x0, y, rho)
        # float32 round-off grows like 1 / rho in the FFT prox (rho = 0.0017 at t = 400).
        assert torch.allclose(theirs, ours, atol=1e-6 * (1 + 1 / rho)), t
        if t < 400:  # a lambda off by 2 is far outside that tolerance where rho is not tiny
            wrong = op.prox(x0, y, 2 * rho)
            assert (wrong - theirs).abs().max() > 100 * 1e-6 * (1 + 1 / rho), t


def test_schedule_from_the_top_is_deepinvs_own():
    ours = make_deepinv_diffpir(torch.nn.Identity(), steps=50, lam=1.0, zeta=0.3, sigma_n=0.2)
    theirs = dinv.sampling.DiffPIR(torch.nn.Identity(), None, sigma=0.2, max_iter=50)
    assert torch.equal(ours.seq, theirs.seq)
    assert torch.equal(ours.get_alpha_prod()[0], theirs.get_alpha_prod()[0])
    assert deepinv_levels(ours)[0] > 78 and deepinv_levels(ours)[-1] == pytest.approx(0.005, 1e-3)


def test_started_schedule():
    engine = make_deepinv_diffpir(
        torch.nn.Identity(), steps=50, lam=1.0, zeta=0.3, sigma_n=0.025, sigma_start=0.2
    )
    levels = deepinv_levels(engine)
    assert levels[0] == pytest.approx(0.2, abs=2e-3) and ddpm_step_for(0.2) == engine.t_start
    assert bool((levels[1:] < levels[:-1]).all()) and len(levels) == 50
    assert levels[-1] == pytest.approx(0.005, rel=1e-3)
    # The initial state is scaled by sqrt(abar) of the starting step, not of step 999.
    recip = engine.get_alpha_prod()[0]
    assert recip[-1] == recip[engine.t_start]
    with pytest.raises(CrosscheckError, match="without repeating a step"):
        make_deepinv_diffpir(
            torch.nn.Identity(), steps=40, lam=1.0, zeta=0.3, sigma_n=0.01, sigma_start=0.02
        )


# -- both DiffPIRs on one problem ----------------------------------------------------------
def _both(task, lam, zeta, lambda_deepinv=None, steps=20, sigma_start=0.5, seed=7):
    """Our DiffPIR on deepinv's levels and deepinv's DiffPIR, same y, same noise stream."""
    op = OPERATORS[task]
    sigma_n = {"denoise": 0.1, "sr": 0.02}[task]
    g = torch.Generator().manual_seed(0)
    clean = smooth_image()
    y = op.measure(clean, sigma_n, g)
    # A prior a little off the truth, so the data step matters.
    prior = GaussianPrior(clean + 0.05 * torch.randn(clean.shape, generator=g), c=0.1)
    engine = make_deepinv_diffpir(
        DeepinvDenoiser(prior),
        steps=steps,
        lam=lam if lambda_deepinv is None else lambda_deepinv / 2,
        zeta=zeta,
        sigma_n=sigma_n,
        sigma_start=sigma_start,
    )
    ours = ours_on_levels(prior, op, deepinv_levels(engine), lam, zeta)
    # Batch of one: our generator and torch's global one, seeded alike, give the same
    # draws in the same order (initial noise, then one draw per re-noising).
    a, _ = ours.solve(y, sigma_n, SequentialStreams([torch.Generator().manual_seed(seed)]))
    torch.manual_seed(seed)
    physics = deepinv_physics(op, sigma_n, tuple(clean.shape[1:]))
    with torch.no_grad():
        b = engine(y, physics, x_init=op.init(y).clamp(0, 1)).clamp(0, 1)
    return float((a - b).pow(2).mean().sqrt())


@pytest.mark.parametrize("task", ["denoise", "sr"])
@pytest.mark.parametrize("lam, zeta", [(1.0, 0.3), (0.2, 0.0)])
def test_both_diffpirs_agree_with_the_converted_lambda(task, lam, zeta):
    # What still differs: for SR, deepinv's initial noise sqrt(s0^2 - sigma_n^2) against
    # our s0 (for denoising both top y's noise up to s0), and its output is the last
    # state (level 0.005) where ours denoises it once more.
    # Measured RMS differences are 2e-4 .. 3e-4 on [0, 1] images.
    assert _both(task, lam, zeta) < 1e-3


@pytest.mark.parametrize("task", ["denoise", "sr"])
def test_a_wrong_lambda_convention_is_caught(task):
    # The same comparison tells the conventions apart: deepinv's lambda_ equal to ours,
    # twice the right one (the official code's 4 lam), or the 1/8 once claimed here.
    lam = 1.0
    for wrong in (lam, 4 * lam, lam / 8):
        assert _both(task, lam, 0.3, lambda_deepinv=wrong) > 4e-3, wrong


# -- the command-line path ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_case(tmp_path_factory):
    from patchpnp.training.loop import train_prior
    from test_training import blobs, tiny_settings, write_split

    folder = tmp_path_factory.mktemp("crosscheck")
    prior = train_prior(
        tiny_settings(steps=3),
        [write_split(folder / "train.h5", blobs(32, 16))],
        folder / "p",
        progress=False,
    )
    data = folder / "eval.h5"
    with h5py.File(data, "w") as f:
        f["images"] = blobs(3, 16, seed=3)
        f["source"] = np.array([f"vol{i}.h5" for i in range(3)], dtype=object)
        f["slice"] = np.arange(3, dtype=np.int32)
    return prior, data


@pytest.mark.filterwarnings("ignore:LPIPS is recorded as missing")
def test_run_crosscheck_reproduces_the_grid_cell(tiny_case, tmp_path):
    from patchpnp.inference.cell import CellSpec, run_cell
    from patchpnp.runtime import Runtime

    prior, data = tiny_case
    task_params = {"sigma_n": 0.025, "factor": 2, "kernel": "bicubic"}
    solver_params = {"steps": 6, "lam": 0.5, "zeta": 0.3, "sigma_start": 0.2}
    table, summary = run_crosscheck(
        prior,
        data,
        task="sr",
        task_params=task_params,
        solver_params=solver_params,
        limit=2,
        runtime=Runtime(device="cpu"),
    )
    assert set(table.method) == {"ours", "deepinv", "ours_ddpm_levels"} and len(table) == 6
    assert np.isfinite(table.psnr).all()
    assert summary.set_index("method").loc["deepinv", "first_sigma"] == pytest.approx(0.2, 0.02)
    cell = run_cell(
        data,
        tmp_path / "r.h5",
        tmp_path / "m.csv",
        cell=CellSpec("sr", task_params, "diffpir", solver_params, prior),
        runtime=Runtime(device="cpu"),
        limit=2,
        progress=False,
    )
    ours = table[table.method == "ours"].sort_values("image")
    assert np.allclose(ours.psnr.to_numpy(), cell.psnr.to_numpy(), atol=1e-4)


def test_settings_without_a_deepinv_counterpart_are_refused(tiny_case):
    prior, data = tiny_case
    with pytest.raises(CrosscheckError, match="no deepinv counterpart"):
        run_crosscheck(
            prior,
            data,
            task="denoise",
            task_params={"sigma_n": 0.1},
            solver_params={"steps": 4, "lam": 1.0, "zeta": 0.3, "rho": 5.0},
        )


def test_missing_deepinv_names_the_install(monkeypatch, capsys, tiny_case):
    from patchpnp.cli import main

    monkeypatch.setitem(sys.modules, "deepinv", None)  # import deepinv now fails
    with pytest.raises(CrosscheckError, match=r"pip install -e \. \(deepinv is a main"):
        require_deepinv()
    prior, data = tiny_case
    args = ["crosscheck", "--prior", str(prior), "--data", str(data), "--task", "denoise"]
    assert main(args) == 2
    assert "pip install -e . (deepinv" in capsys.readouterr().err


def test_multicoil_mri_matches_deepinv():
    """Our multicoil operator is deepinv's MultiCoilMRI (the same centred orthonormal
    FFT, mask and coil maps): forward and adjoint agree to float precision. We keep our
    own because the solvers need its CG data step and per-batch coil maps."""
    from deepinv.physics import MultiCoilMRI
    from patchpnp.physics import MulticoilMRI

    torch.manual_seed(0)
    b, c, h, w = 2, 3, 16, 20
    maps = torch.randn(b, c, h, w, dtype=torch.complex64)
    ours = MulticoilMRI(maps, 4, 0.1, "random", seed=1)
    mask = ours.lines.to(torch.float32).expand(b, h, w).clone()
    theirs = MultiCoilMRI(mask=mask, coil_maps=maps, img_size=(h, w))
    x = torch.randn(b, 2, h, w)
    y_theirs = theirs.A(x)  # [B, 2 (real, imaginary), C, H, W]
    assert torch.allclose(torch.complex(y_theirs[:, 0], y_theirs[:, 1]), ours.A(x), atol=1e-5)
    y = torch.randn(b, c, h, w, dtype=torch.complex64)
    back = theirs.A_adjoint(torch.stack([y.real, y.imag], dim=1))
    assert torch.allclose(back, ours.A_adjoint(y), atol=1e-5)
