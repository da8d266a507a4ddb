"""Our priors as deepinv denoisers: units, the patch wrapper, and DPS through it."""

import re

import deepinv as dinv
import pytest
import torch
from patchpnp.metrics.memory import PeakMemory
from patchpnp.patching.patches import ShiftedGridDenoiser
from patchpnp.prior.loading import load_prior
from patchpnp.prior.precond import ImageSpaceDenoiser
from patchpnp.solvers.deepinv_export import PatchpnpDenoiser, deepinv_denoiser
from patchpnp.training.loop import train_prior
from test_training import blobs, tiny_settings, write_split


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prior")
    data = [write_split(folder / "train.h5", blobs(32, 16))]
    return train_prior(tiny_settings(steps=3), data, folder / "p", progress=False)


def test_export_is_our_denoiser_to_float_tolerance(tiny_prior):
    ours, _ = load_prior(tiny_prior)
    theirs = deepinv_denoiser(tiny_prior)
    assert isinstance(theirs, dinv.models.Denoiser)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for sigma in (0.1, torch.tensor(0.1), [0.1], torch.tensor([0.05, 0.1, 0.2])):
            expect = ours(x, torch.as_tensor(sigma, dtype=torch.float32).reshape(-1).expand(3))
            assert torch.allclose(theirs(x, sigma), expect, atol=1e-6)
    with pytest.raises(ValueError, match="one per sample"):
        theirs(x, torch.tensor([0.1, 0.2]))


class GaussianPrecond(torch.nn.Module):
    """The exact MMSE denoiser of i.i.d. Gaussian pixels, in network units ([-1, 1]):
    data N(m, v) per pixel, so ``D(x, s) = m + v / (v + s^2) (x - m)``."""

    img_channels, coord_channels = 1, 0

    def __init__(self, mean: float, var: float):
        super().__init__()
        self.mean, self.var = mean, var

    def forward(self, x, sigma, coords=None):
        s2 = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, 1, 1, 1) ** 2
        return self.mean + self.var / (self.var + s2) * (x - self.mean)


def test_units_give_the_gaussian_mmse_denoiser_in_image_space():
    """Pixels N(mu, tau^2) in [0, 1] units are N(2 mu - 1, 4 tau^2) in network units, the
    noise 2 sigma: through D01 and the export, the denoiser must be the [0, 1]-space MMSE
    ``mu + tau^2 / (tau^2 + sigma^2) (x - mu)``, whatever the patch tiling."""
    mu, tau = 0.4, 0.2
    net = ImageSpaceDenoiser(GaussianPrecond(2 * mu - 1, 4 * tau**2))
    x = torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor([0.1, 0.3])
    expect = mu + (tau**2 / (tau**2 + sigma**2)).reshape(-1, 1, 1, 1) * (x - mu)
    for inner in (net, ShiftedGridDenoiser(net, 8, padding="reflect", patch_batch=3)):
        with torch.no_grad():
            assert torch.allclose(PatchpnpDenoiser(inner)(x, sigma), expect, atol=1e-6)


def _dps_loss_grad(denoiser, x, y):
    x = x.detach().requires_grad_(True)
    loss = ((denoiser(x, 0.2) - y) ** 2).sum()
    return torch.autograd.grad(loss, x)[0]


@pytest.mark.slow
def test_memory_bounded_gradient_is_autograds_with_bounded_memory(tiny_prior):
    """DPS differentiates ``||y - A D(x)||^2`` through the denoiser: with micro-batches,
    the wrapper's recomputing backward gives autograd's gradient with less memory."""
    g = torch.Generator().manual_seed(2)
    # 32 px: 50 tiles of 8 px, so autograd holds about 12 micro-batches' activations at once
    x, y = torch.rand(2, 1, 32, 32, generator=g), torch.rand(2, 1, 32, 32, generator=g)
    grads, peaks = {}, {}
    for name, bounded in (("bounded", True), ("autograd", False)):
        inner, _ = load_prior(tiny_prior)
        wrapper = ShiftedGridDenoiser(inner, 8, patch_batch=4, seed=5, memory_bounded_grad=bounded)
        denoiser = PatchpnpDenoiser(wrapper)
        _dps_loss_grad(denoiser, x, y)  # warm-up: allocator caches, lazy inits
        wrapper.generator.manual_seed(5)
        meter = PeakMemory("cpu")
        meter.start()
        grads[name] = _dps_loss_grad(denoiser, x, y)
        peaks[name] = meter.stop().working_mib
    assert torch.allclose(grads["bounded"], grads["autograd"], atol=1e-5)
    assert peaks["bounded"] < 0.5 * peaks["autograd"], peaks


def test_deepinv_dps_runs_through_the_patch_wrapper(tiny_prior):
    torch.manual_seed(0)
    denoiser = deepinv_denoiser(tiny_prior, patch_size=8, patch_batch=8)
    physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(sigma=0.1))
    x = torch.rand(1, 1, 16, 16)
    y = physics(x)
    model = dinv.sampling.DPS(denoiser, num_steps=3, dtype=torch.float32, rng=torch.Generator())
    x_hat = model(y, physics, seed=0)
    assert x_hat.shape == x.shape and torch.isfinite(x_hat).all()
    assert denoiser.denoiser.backward_tiles > 0  # deepinv's DPS went through the wrapper


def test_readme_deepinv_example_runs(tmp_path, tiny_prior, repo_root):
    """The README's ten lines, with the tiny prior in place of a trained one."""
    text = (repo_root / "README.md").read_text()
    block = re.search(r"## Our priors in deepinv.*?```python\n(.*?)```", text, re.S)
    assert block, "README has no deepinv example"
    code = block.group(1)
    assert len(code.strip().splitlines()) <= 10
    split = write_split(tmp_path / "eval.h5", blobs(1, 16))
    code = code.replace("results/priors/patch/ema.pt", str(tiny_prior))
    code = code.replace("results/data/mni_t1_singlecoil/eval.h5", str(split))
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert torch.isfinite(namespace["x_hat"]).all()
