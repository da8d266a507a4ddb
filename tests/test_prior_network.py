"""Unit tests of the EDM2 prior: MP layers, U-Net, preconditioning, loss, EMA, lr schedule."""

from __future__ import annotations

import math

import pytest
import torch
from patchpnp.prior import (
    EDM2Loss,
    ImageSpaceDenoiser,
    MPConv,
    PowerEMA,
    Precond,
    UNet,
    coordinate_channels,
    gamma_to_sigma_rel,
    learning_rate,
    mp_cat,
    mp_silu,
    mp_sum,
    normalize,
    sigma_rel_to_gamma,
)
from patchpnp.prior.network import Block


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # These models are tiny; with 2 OpenMP threads on a 2-core machine shared with
    # another busy process, every small op waits for a descheduled thread and a step
    # can take 100x longer. One thread is as fast here and immune to that.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_unet(img_channels=1, coord_channels=0, num_blocks=1, seed=0, **kw):
    g = torch.Generator().manual_seed(seed)
    kw = dict(model_channels=16, channel_mult=(1, 2, 2, 4), attn_resolutions=(2, 3)) | kw
    return UNet(img_channels, coord_channels, num_blocks=num_blocks, generator=g, **kw)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --- (1) magnitude preservation ---------------------------------------------------------------


def test_mp_primitives_preserve_unit_variance():
    a, b = randn(64, 48, 16, 16, seed=1), randn(64, 16, 16, 16, seed=2)
    for conv in (MPConv(48, 32, (3, 3)), MPConv(48, 32, (1, 1))):
        assert conv(a).std().item() == pytest.approx(1.0, rel=0.1)
    assert MPConv(48, 32)(a.flatten(2).transpose(1, 2)).std().item() == pytest.approx(1, rel=0.1)
    assert mp_silu(a).square().mean().sqrt().item() == pytest.approx(1.0, rel=0.05)
    assert mp_sum(a[:, :16], b, t=0.3).std().item() == pytest.approx(1.0, rel=0.05)
    for t in (0.3, 0.5, 0.8):
        cat = mp_cat(a, b, t=t)
        assert cat.shape[1] == 64 and cat.std().item() == pytest.approx(1.0, rel=0.05)
        # The balance t sets each part's share of the energy, not its width.
        share_b = cat[:, 48:].square().sum() / cat.square().sum()
        assert share_b.item() == pytest.approx(t**2 / ((1 - t) ** 2 + t**2), rel=0.05)


def test_unet_blocks_preserve_magnitude_at_init():
    net = small_unet(model_channels=32, num_blocks=2)
    stds = {}
    for name, module in net.named_modules():
        if isinstance(module, Block):
            module.register_forward_hook(lambda m, i, o, n=name: stds.__setitem__(n, o.std()))
    with torch.no_grad():
        out = net(randn(4, 1, 32, 32), torch.full([4], math.log(0.5) / 4))
    assert len(stds) == sum(isinstance(m, Block) for m in net.modules()) > 10
    for name, std in stds.items():
        assert 0.5 < std.item() < 2.0, (name, std.item())
    assert torch.equal(out, torch.zeros_like(out))  # output gain starts at 0


# --- (2) preconditioning ----------------------------------------------------------------------


def test_scalings_match_equations():
    pre = Precond(small_unet())
    sigma = torch.tensor([0.002, 0.1, 0.5, 3.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = pre.scalings(sigma)
    for i, s in enumerate(sigma.tolist()):
        assert c_skip[i].item() == pytest.approx(0.25 / (s * s + 0.25), rel=1e-12)
        assert c_out[i].item() == pytest.approx(s * 0.5 / math.sqrt(s * s + 0.25), rel=1e-12)
        assert c_in[i].item() == pytest.approx(1 / math.sqrt(s * s + 0.25), rel=1e-12)
        assert c_noise[i].item() == pytest.approx(math.log(s) / 4, rel=1e-12)


def test_precond_at_init_is_c_skip_times_x():
    pre = Precond(small_unet()).eval()
    x = randn(3, 1, 32, 32)
    sigma = torch.tensor([0.01, 0.5, 20.0])
    d = pre(x, sigma)
    assert torch.equal(d, pre.scalings(sigma)[0].reshape(-1, 1, 1, 1) * x)
    # float and 0-d sigma broadcast over the batch
    assert torch.equal(pre(x, 0.5), pre(x, torch.tensor(0.5)))
    assert torch.equal(pre(x, 0.5), pre(x, torch.full([3], 0.5)))


def test_precond_composes_the_unet_and_d01_convention():
    pre = Precond(small_unet(coord_channels=2)).eval()
    with torch.no_grad():
        pre.unet.out_gain.fill_(1.0)  # make F non-zero
    x01 = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    coords = coordinate_channels(torch.arange(32), torch.arange(16, 48), 64, 64)
    s = torch.tensor([0.05, 0.3])
    with torch.no_grad():
        x = 2 * x01 - 1
        c_skip, c_out, c_in, c_noise = (c.reshape(-1, 1, 1, 1) for c in pre.scalings(2 * s))
        expected_d = c_skip * x + c_out * pre.unet(c_in * x, c_noise.flatten(), coords)
        torch.testing.assert_close(pre(x, 2 * s, coords), expected_d, rtol=0, atol=1e-6)
        den = ImageSpaceDenoiser(pre)
        assert (den.img_channels, den.coord_channels) == (1, 2)
        torch.testing.assert_close(den(x01, s, coords), (expected_d + 1) / 2, rtol=0, atol=1e-6)
        assert not torch.allclose(den(x01, s, coords), (c_skip * x + 1) / 2)


def test_coordinate_channels():
    c = coordinate_channels(torch.arange(-2, 3), torch.tensor([[0, 9], [5, 12]]), 5, 10)
    assert c.shape == (2, 2, 5, 2)
    torch.testing.assert_close(c[0, 0, :, 0], torch.tensor([-2.0, -1.5, -1.0, -0.5, 0.0]))
    torch.testing.assert_close(c[1, 1, 0], torch.tensor([5 / 9 * 2 - 1, 12 / 9 * 2 - 1]))
    assert c[0, 1, 0, 1].item() == 1.0 and c[1, 1, 0, 1].item() > 1  # outside the canvas


# --- (3) forced weight normalisation ----------------------------------------------------------


def test_forced_weight_normalisation():
    net = small_unet().train()
    with torch.no_grad():
        net.out_gain.fill_(1.0)
    x, c = randn(2, 1, 16, 16), torch.zeros(2)
    opt = torch.optim.SGD(net.parameters(), lr=50.0)
    net(x, c).square().mean().backward()
    opt.step()
    convs = [m for m in net.modules() if isinstance(m, MPConv)]
    before = [m.weight.detach().clone() for m in convs]
    rms = [w.flatten(1).square().mean(1).sqrt() for w in before]
    assert max((r - 1).abs().max().item() for r in rms) > 1e-2  # the step denormalised them
    net.eval()
    net(x, c)  # eval mode leaves the stored weights alone
    assert all(torch.equal(m.weight, w) for m, w in zip(convs, before, strict=True))
    net.train()
    net(x, c)
    for m, w, r in zip(convs, before, rms, strict=True):
        expected = w / (r + 1e-4).reshape(-1, *[1] * (w.ndim - 1))
        torch.testing.assert_close(m.weight.detach(), expected, rtol=1e-6, atol=1e-7)
        # unit RMS per stored filter, hence unit norm per effective filter
        new_rms = m.weight.flatten(1).square().mean(1).sqrt()
        torch.testing.assert_close(new_rms, torch.ones_like(new_rms), rtol=0, atol=1e-3)
        norms = m.effective_weight().flatten(1).norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=1e-3)
    torch.testing.assert_close(normalize(torch.zeros(2, 3)), torch.zeros(2, 3))


def test_two_training_forwards_then_one_backward():
    # The in-place normalisation of forward 2 must not invalidate forward 1's graph.
    net = small_unet(model_channels=8, channels_per_head=8).train()
    with torch.no_grad():
        net.out_gain.fill_(1.0)
    x, c = randn(2, 1, 16, 16), torch.zeros(2)
    (net(x, c).square().mean() + net(x, c).abs().mean()).backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


# --- (4) shapes -------------------------------------------------------------------------------


@pytest.mark.parametrize("img_channels", [1, 2])
@pytest.mark.parametrize("coord_channels", [0, 2])
@pytest.mark.parametrize("size", [64, 32])
def test_shapes(img_channels, coord_channels, size):
    pre = Precond(small_unet(img_channels, coord_channels, model_channels=8, channels_per_head=8))
    x = randn(2, img_channels, size, size)
    coords = None
    if coord_channels:
        coords = coordinate_channels(torch.arange(size), torch.arange(size), 64, 64)
    d, logvar = pre(x, torch.tensor([0.1, 1.0]), coords, return_logvar=True)
    assert d.shape == x.shape and logvar.shape == (2, 1, 1, 1)
    assert ImageSpaceDenoiser(pre)(x, 0.1, coords).shape == x.shape


def test_bad_inputs_raise():
    net = small_unet(model_channels=8, channels_per_head=8)
    with pytest.raises(ValueError, match=r"36x36.*divisible by 8"):
        net(randn(1, 1, 36, 36), torch.zeros(1))
    with pytest.raises(ValueError, match="coord"):
        net(randn(1, 1, 32, 32), torch.zeros(1), torch.zeros(1, 2, 32, 32))
    with pytest.raises(ValueError, match="coordinate"):
        small_unet(coord_channels=2, model_channels=8, channels_per_head=8)(
            randn(1, 1, 32, 32), torch.zeros(1)
        )
    with pytest.raises(ValueError, match="levels"):
        small_unet(attn_resolutions=(16,))


# --- (5) EMA ----------------------------------------------------------------------------------


def test_sigma_rel_gamma_round_trip():
    for sigma_rel in (0.05, 0.1, 0.2):
        assert gamma_to_sigma_rel(sigma_rel_to_gamma(sigma_rel)) == pytest.approx(sigma_rel)
    assert sigma_rel_to_gamma(0.05) == pytest.approx(16.97, abs=0.01)  # EDM2 paper values
    assert sigma_rel_to_gamma(0.10) == pytest.approx(6.94, abs=0.01)


def test_power_ema_beta_and_weights():
    net = torch.nn.Linear(1, 1, bias=False)
    ema = PowerEMA(net, sigma_rel=0.1)
    g = ema.gamma
    assert ema.beta(1) == 0.0
    for n in (2, 10, 1000):
        assert ema.beta(n) == pytest.approx((1 - 1 / n) ** (g + 1), rel=1e-12)
    # The recursion averages iterate k with weight (k^(g+1) - (k-1)^(g+1)) / n^(g+1).
    values = torch.randn(20, dtype=torch.float64).tolist()
    for n, v in enumerate(values, start=1):
        with torch.no_grad():
            net.weight.fill_(v)
        ema.update(net, n)
    n = len(values)
    expected = sum(v * (k ** (g + 1) - (k - 1) ** (g + 1)) for k, v in enumerate(values, 1))
    assert ema.model.weight.item() == pytest.approx(expected / n ** (g + 1), rel=1e-5, abs=1e-6)
    with pytest.raises(ValueError):
        ema.beta(0)


def test_power_ema_of_constant_is_constant_and_resumes_exactly():
    net = Precond(small_unet(model_channels=8, channels_per_head=8))
    ema = PowerEMA(net, sigma_rel=0.05)
    with torch.no_grad():
        for p in ema.model.parameters():
            p.normal_()  # whatever the copy started as, update 1 overwrites it
    for step in range(1, 6):
        ema.update(net, step)
    for p_ema, p in zip(ema.model.parameters(), net.parameters(), strict=True):
        torch.testing.assert_close(p_ema, p, rtol=1e-6, atol=1e-6)
    # state_dict round trip, then identical continuation
    resumed = PowerEMA(Precond(small_unet(model_channels=8, channels_per_head=8, seed=9)))
    resumed.load_state_dict(ema.state_dict())
    assert (resumed.sigma_rel, resumed.gamma, resumed.step) == (ema.sigma_rel, ema.gamma, 5)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    for step in (6, 7):
        ema.update(net, step)
        resumed.update(net, step)
    for a, b in zip(
        ema.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())


# --- (6) loss ---------------------------------------------------------------------------------


def test_loss_finite_per_sample_reproducible():
    pre = Precond(small_unet(coord_channels=2, model_channels=8, channels_per_head=8))
    x = randn(3, 1, 32, 32).clamp(-1, 1)
    coords = coordinate_channels(torch.arange(32), torch.arange(32), 64, 64)
    loss_fn = EDM2Loss()
    # eval mode: a training-mode forward re-normalises the weights in place (changing
    # them by ~1e-4 relative), so only eval-mode repeats are bit-identical.
    pre.eval()
    losses = [loss_fn(pre, x, torch.Generator().manual_seed(s), coords) for s in (7, 7, 8)]
    assert losses[0].shape == (3,) and torch.isfinite(losses[0]).all()
    assert torch.equal(losses[0], losses[1]) and not torch.equal(losses[0], losses[2])
    pre.train()
    loss = loss_fn(pre, x, torch.Generator().manual_seed(7), coords)
    torch.testing.assert_close(loss, losses[0], rtol=1e-4, atol=1e-5)
    loss.mean().backward()
    assert torch.isfinite(pre.logvar_linear.weight.grad).all()


def test_loss_at_init_matches_formula():
    # At init D = c_skip x, so the error is known in closed form given sigma and noise.
    pre = Precond(small_unet(model_channels=8, channels_per_head=8)).eval()
    x = randn(4, 1, 16, 16).clamp(-1, 1)
    g = torch.Generator().manual_seed(5)
    loss = EDM2Loss()(pre, x, g)
    g.manual_seed(5)
    sigma = (torch.randn(4, generator=g) * 1.6 - 0.8).exp()
    n = torch.randn(x.shape, generator=g)
    y = x + sigma[:, None, None, None] * n
    d, logvar = pre(y, sigma, return_logvar=True)
    w = (sigma**2 + 0.25) / (sigma**2 * 0.25)
    expected = w / logvar.flatten().exp() * (d - x).square().mean((1, 2, 3)) + logvar.flatten()
    torch.testing.assert_close(loss, expected)


# --- (7) learning-rate schedule ---------------------------------------------------------------


def test_learning_rate_schedule():
    lr = lambda step: learning_rate(step, lr_ref=1e-2, ref_steps=100, warmup_steps=10)  # noqa: E731
    assert lr(0) == pytest.approx(1e-3)
    assert lr(4) == pytest.approx(5e-3)
    assert lr(9) == lr(10) == lr(50) == lr(100) == pytest.approx(1e-2)
    assert lr(400) == pytest.approx(5e-3)
    assert lr(10_000) == pytest.approx(1e-3)
    assert learning_rate(0, 1e-2, 100, warmup_steps=0) == 1e-2
    with pytest.raises(ValueError):
        learning_rate(-1, 1e-2, 100)


# --- tiny overfit sanity check ----------------------------------------------------------------


@pytest.mark.slow
def test_tiny_overfit_reduces_denoising_error():
    torch.manual_seed(0)
    pre = Precond(small_unet(model_channels=8, channels_per_head=8, seed=1)).train()
    x = (torch.linspace(-1, 1, 16)[None, None, :, None] * torch.ones(1, 1, 16, 16)).expand(
        4, -1, -1, -1
    )
    noise = randn(4, 1, 16, 16, seed=2)

    def error():
        with torch.no_grad():
            return (pre.eval()(x + 0.5 * noise, 0.5) - x).square().mean().item()

    before = error()
    opt = torch.optim.Adam(pre.parameters(), lr=1e-2, betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(3)
    pre.train()
    for _ in range(40):
        opt.zero_grad()
        EDM2Loss()(pre, x, g).mean().backward()
        opt.step()
    after = error()
    assert after < 0.5 * before, (before, after)


def test_channels_last_network_gives_the_same_denoiser():
    """A network moved to channels-last weights, told to take channels-last input,
    computes the same function (the option tools/bench_inference.py measures)."""
    import copy

    from patchpnp.prior.loading import build_network
    from workflow_runner import TINY_NETWORK

    net = build_network(TINY_NETWORK, seed=3).eval().requires_grad_(False)
    last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    last.memory_format = torch.channels_last
    x = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(net(x, 0.3), last(x, 0.3), atol=1e-5)


def test_inference_bench_measures_each_option_against_the_baseline():
    from patchpnp.tools.bench_inference import VARIANTS, bench
    from workflow_runner import TINY_NETWORK

    table = bench(None, TINY_NETWORK, side=16, batch=2, patch=8, patch_batch=2, rounds=1)
    forward = table[table["call"] == "diffpir forward"]
    assert forward["variant"].tolist() == list(VARIANTS)
    assert forward.loc[forward["variant"] == "baseline", "ratio"].item() == 1.0
    gradient = table[table["call"] == "dps gradient"]
    assert "inference_mode" not in gradient["variant"].tolist()
    assert (table["seconds_per_call"] > 0).all()
