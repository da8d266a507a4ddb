"""Keyed draws happen on the generator's device (patchpnp.runtime's keyed_* functions).

PyTorch draws only on a generator's own device: a job on a CUDA GPU that asks a CPU
generator for a CUDA tensor stops with "Expected a 'cuda' device type for
generator". On a CPU-only machine data and generators always share the CPU, so
the mistake is invisible. Two guards make it visible here:

- a scan of the package's source for any draw that passes a generator outside
  ``runtime.py``;
- a harness (:func:`generators_elsewhere`) in which every generator the package
  makes claims to live on ``cuda:0`` while the data stays on the CPU, and every
  torch draw checks, as PyTorch does on a GPU, that it is asked for on its
  generator's device. Whole and patch cells of each solver, a deepinv solver, an
  MRI cell, a posterior cell and a few training steps run under it.
"""

from __future__ import annotations

import ast
import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch
from patchpnp.inference.cell import CellSpec, run_cell
from patchpnp.inference.mri_cell import Acquisition, Reconstruction, run_mri_cell
from patchpnp.inference.posterior import run_posterior_cell
from patchpnp.prior.spec import resolve_mri_prior
from patchpnp.runtime import Runtime, keyed_choice, keyed_generator, keyed_rand, keyed_randn
from patchpnp.training.loop import train_prior
from test_inference import eval_file  # noqa: F401  (a fixture)
from test_mri import mri_data  # noqa: F401  (a fixture)
from test_training import blobs, tiny_settings, write_split
from workflow_runner import tiny_mri_config

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "src" / "patchpnp"
HOME = PACKAGE / "runtime.py"  # the one module allowed to hand a generator to torch

# Every torch sampler that takes a generator: functions and in-place tensor methods.
SAMPLERS = {
    "randn",
    "rand",
    "randint",
    "randperm",
    "normal",
    "normal_",
    "bernoulli",
    "bernoulli_",
    "multinomial",
    "uniform_",
    "random_",
    "exponential_",
    "geometric_",
    "cauchy_",
    "log_normal_",
    "poisson",
}


def generator_draws(source: str) -> list[tuple[int, str]]:
    """``(line, sampler)`` of every call in ``source`` to a torch sampler that is
    handed a generator (keyword ``generator=``, or a ``**kwargs`` that may hold one)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", None))
        if name not in SAMPLERS:
            continue
        if any(k.arg in ("generator", None) for k in node.keywords):
            found.append((node.lineno, name))
    return found


def test_the_scan_sees_a_draw_with_a_generator():
    snippet = (
        "x = torch.randn(3, generator=g, device=d)\n"
        "y.normal_(generator=g)\n"
        "z = torch.multinomial(p, 1, generator=g)\n"
        "w = torch.rand(3)\n"  # torch's global stream: no generator, nothing to check
    )
    assert generator_draws(snippet) == [(1, "randn"), (2, "normal_"), (3, "multinomial")]


def test_every_generator_draw_goes_through_the_runtime_helpers():
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != HOME
        for line, name in generator_draws(path.read_text())
    ]
    assert not offenders, (
        "draw through patchpnp.runtime's keyed_* helpers, which draw on the generator's "
        "device and then move the tensor:\n" + "\n".join(offenders)
    )


# -- the harness ---------------------------------------------------------------------

CLAIMED = torch.device("cuda", 0)


class ElsewhereGenerator(torch.Generator):
    """A CPU generator that says it lives on ``cuda:0``: the mirror image of a CPU
    generator driving a CUDA job, which a CPU-only machine can run."""

    @property
    def device(self) -> torch.device:
        return CLAIMED


def _checked(sampler):
    def draw(*args, generator=None, device=None, **kwargs):
        if isinstance(generator, ElsewhereGenerator):
            asked = torch.device(device) if device is not None else torch.get_default_device()
            if asked.type != CLAIMED.type:
                # PyTorch's own words on a GPU
                raise RuntimeError(
                    f"Expected a '{asked.type}' device type for generator but found "
                    f"'{CLAIMED.type}'"
                )
            device = "cpu"  # where the numbers really come from
        return sampler(*args, generator=generator, device=device, **kwargs)

    return draw


def _checked_input(sampler):
    """Samplers whose device is their input's (multinomial, bernoulli, poisson)."""

    def draw(inputs, *args, generator=None, **kwargs):
        if isinstance(generator, ElsewhereGenerator) and inputs.device.type != CLAIMED.type:
            raise RuntimeError(
                f"Expected a '{inputs.device.type}' device type for generator but found "
                f"'{CLAIMED.type}'"
            )
        return sampler(inputs, *args, generator=generator, **kwargs)

    return draw


@contextlib.contextmanager
def generators_elsewhere(monkeypatch):
    """Every ``torch.Generator`` made inside claims ``cuda:0``; every draw from one
    must be asked for there, or it raises as PyTorch does on a GPU."""
    with monkeypatch.context() as m:
        m.setattr(torch, "Generator", ElsewhereGenerator)
        for name in ("randn", "rand", "randint", "randperm", "normal"):
            m.setattr(torch, name, _checked(getattr(torch, name)))
        for name in ("multinomial", "bernoulli", "poisson"):
            m.setattr(torch, name, _checked_input(getattr(torch, name)))
        yield


def _old_randn_like_batch(like, generator):
    """``physics.base.randn_like_batch`` before the fix: the draw at the data's device."""
    return torch.randn(like.shape, generator=generator, device=like.device)


def test_the_harness_refuses_a_draw_at_the_data_device(monkeypatch):
    like = torch.zeros(2, 1, 4, 4)
    with generators_elsewhere(monkeypatch):
        g = keyed_generator(1, 2)
        assert isinstance(g, ElsewhereGenerator)
        with pytest.raises(RuntimeError, match="Expected a 'cpu' device type for generator"):
            _old_randn_like_batch(like, g)
        drawn = keyed_randn(like.shape, g, like.device)
    # the same numbers as an ordinary CPU generator with the same keys
    assert drawn.device == like.device
    assert torch.equal(drawn, keyed_randn(like.shape, keyed_generator(1, 2), like.device))


def test_the_helpers_keep_the_numbers_of_a_plain_draw():
    g = keyed_generator(3)
    assert torch.equal(keyed_randn((2, 3), g), torch.randn(2, 3, generator=keyed_generator(3)))
    assert torch.equal(
        keyed_rand((4,), keyed_generator(5), dtype=torch.float64),
        torch.rand(4, generator=keyed_generator(5), dtype=torch.float64),
    )
    weights = torch.tensor([0.2, 0.3, 0.5])
    picks = [keyed_choice(weights, keyed_generator(7, i)) for i in range(4000)]
    assert np.bincount(picks, minlength=3) / 4000 == pytest.approx([0.2, 0.3, 0.5], abs=0.03)
    assert keyed_choice(torch.tensor([0.0, 1.0, 0.0]), keyed_generator(0)) == 1


CELL = {"task": "sr", "task_params": {"sigma_n": 0.025, "factor": 2}, "seed": 4}
RUN = {"runtime": Runtime(batch_images=2), "limit": 2, "progress": False}
SOLVERS = {
    "diffpir": {"steps": 2, "lam": 1.0, "zeta": 0.3, "sigma_start": 0.3},
    "dps": {"steps": 2, "zeta": 0.3, "sigma_start": 0.3},
}


def test_cells_draw_on_their_generators_device(
    tmp_path,
    monkeypatch,
    eval_file,  # noqa: F811
    mri_data,  # noqa: F811
):
    """A whole and a patch cell of each solver, a deepinv solver, a posterior cell,
    a zero-padded cell (the noisy margin), an MRI cell and training steps, all with
    generators that are not where the data is."""
    with generators_elsewhere(monkeypatch):
        prior = train_prior(
            tiny_settings(steps=2),
            [write_split(tmp_path / "train.h5", blobs(8, 16))],
            tmp_path / "prior",
            progress=False,
        )
        runs = [(s, p, size, "reflect") for s, p in SOLVERS.items() for size in ("whole", 8)]
        runs += [("diffpir", SOLVERS["diffpir"], 8, "zeros")]
        runs += [("dinv_dps", {"steps": 2, "weight": 1.0, "sigma_start": 0.3}, 8, "reflect")]
        for k, (solver, params, size, padding) in enumerate(runs):
            table = run_cell(
                eval_file,
                tmp_path / f"{k}.h5",
                tmp_path / f"{k}.csv",
                cell=CellSpec(**CELL, solver=solver, solver_params=params, prior=prior,
                              size=size, padding=padding),
                **RUN,
            )  # fmt: skip
            assert np.isfinite(table["psnr"]).all(), (solver, size, padding)
        posterior = run_posterior_cell(
            eval_file,
            tmp_path / "post.h5",
            tmp_path / "post.csv",
            samples=2,
            cell=CellSpec(**CELL, solver="dps", solver_params=SOLVERS["dps"], prior=prior, size=8),
            **RUN,
        )
        assert len(posterior) == 2

        config = tiny_mri_config()
        config["mri"]["image_size"] = 24
        settings = resolve_mri_prior(config, "whole")
        settings["training"]["steps"] = 1
        complex_prior = train_prior(
            settings, [mri_data["train"]], tmp_path / "mri_prior", progress=False
        )
        table = run_mri_cell(
            mri_data["eval"],
            tmp_path / "mri.h5",
            tmp_path / "mri.csv",
            dataset="d",
            acquisition=Acquisition(
                acceleration=2, center_fraction=0.25, sigma_n=0.01, cg_iters=2, mask="random"
            ),
            reconstruction=Reconstruction(
                "diffusion",
                solver="dps",
                solver_params={"steps": 2, "zeta": 0.3, "sigma_start": 0.3},
                prior=complex_prior,
                size=8,
            ),
            progress=False,
        )
        assert np.isfinite(table["psnr"]).all()
