"""Tests of the per-image metrics: PSNR, the boundary band, SSIM, data consistency, LPIPS."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from patchpnp.metrics.quality import (
    LPIPSMetric,
    LPIPSUnavailableWarning,
    alexnet_checkpoint_path,
    band_rmse,
    data_consistency,
    psnr,
    ssim,
)
from patchpnp.physics import make_operator

torch.set_num_threads(1)


def images(batch: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, size, size, generator=g) * 0.8


def test_psnr_known_values_per_image_torch_and_numpy():
    x = images()
    offsets = torch.tensor([0.1, 0.01, 0.0]).reshape(3, 1, 1, 1)
    values = psnr(x + offsets, x)
    assert isinstance(values, torch.Tensor) and values.shape == (3,)
    torch.testing.assert_close(
        values[:2], torch.tensor([20.0, 40.0], dtype=torch.float64), rtol=1e-5, atol=0
    )
    assert values[2].item() == float("inf")
    as_numpy = psnr((x + offsets).numpy(), x.numpy())
    assert isinstance(as_numpy, np.ndarray)
    np.testing.assert_allclose(as_numpy[:2], [20.0, 40.0], rtol=1e-6)
    # data_range scales the peak: range 2 adds 20 log10(2) dB.
    assert psnr(x + 0.1, x, data_range=2.0)[0].item() == pytest.approx(20 + 20 * np.log10(2))


def test_psnr_of_identical_images_is_inf_without_a_warning():
    """One convention for MSE 0, scikit-image's and fastMRI's: +inf, never a clamped MSE."""
    x = images(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_torch = psnr(x, x.clone())
        as_numpy = psnr(x.numpy(), x.numpy(), data_range=np.array([1.5, 10.0]))
    assert as_torch.tolist() == [float("inf")] * 2
    assert as_numpy.tolist() == [float("inf")] * 2
    # One image identical, the other not: only the first is inf (no shared floor).
    ref = x.numpy()
    mixed = psnr(np.stack([ref[0], ref[1] + 1e-7]), ref)
    assert mixed[0] == float("inf") and 130 < mixed[1] < 150
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(ref, ref[:, :, :8])


def test_every_psnr_of_the_package_is_this_one():
    """No module but metrics/quality.py computes a PSNR: no other ``psnr`` function and no
    other logarithm of an MSE, so the package has one convention for identical images."""
    import ast
    from pathlib import Path

    import patchpnp

    root = Path(patchpnp.__file__).parent
    home = root / "metrics" / "quality.py"
    found = []
    for path in sorted(root.rglob("*.py")):
        if path == home:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef) and node.name.lower().strip("_") == "psnr":
                found.append(f"{path.relative_to(root)}:{node.lineno} def {node.name}")
            if isinstance(node, ast.Attribute) and node.attr == "log10":
                found.append(f"{path.relative_to(root)}:{node.lineno} log10")
    assert not found, found


def test_the_grid_psnr_numbers_are_the_textbook_formula_bit_for_bit():
    """The grid's, the MRI cells' and the posterior cells' PSNR columns are the same
    numbers the package computed before it had one PSNR: ``10 log10(range^2 / MSE)``
    with the MSE averaged in float64 per image, no clamp in the way."""
    from patchpnp.inference.posterior import posterior_stats
    from patchpnp.metrics.mri import magnitude, mri_scores

    rng = np.random.default_rng(3)
    for shape in [(3, 1, 32, 32), (2, 1, 64, 48), (4, 1, 17, 33)]:
        gt = rng.random(shape) * 0.9
        recon = gt + rng.normal(0.0, 0.05, shape)
        mse = ((recon - gt) ** 2).reshape(shape[0], -1).mean(axis=1)
        expect = 10 * np.log10(1.0 / mse)
        assert psnr(recon, gt).tolist() == expect.tolist()
        assert psnr(torch.from_numpy(recon), torch.from_numpy(gt)).tolist() == expect.tolist()
        # posterior cells: the mean of K samples, and each sample's PSNR averaged
        samples = gt + rng.normal(0.0, 0.05, (3, *shape))
        cols, mean, _ = posterior_stats(samples, gt)
        mean_mse = ((mean - gt) ** 2).reshape(shape[0], -1).mean(axis=1)
        assert cols["psnr_of_mean"].tolist() == (10 * np.log10(1.0 / mean_mse)).tolist()
        each = [
            10 * np.log10(1.0 / ((s - gt) ** 2).reshape(shape[0], -1).mean(axis=1)) for s in samples
        ]
        assert cols["psnr_mean_of_samples"].tolist() == np.mean(each, axis=0).tolist()
    # MRI cells: magnitudes, each slice with its own data range (fastMRI's volume maximum)
    target = rng.normal(size=(3, 2, 24, 20)) * 40
    recon = target + rng.normal(size=target.shape)
    dr = rng.uniform(50, 200, 3)
    t, r = magnitude(target), magnitude(recon)
    expect = [10 * np.log10(dr[i] ** 2 / float(np.mean((t[i] - r[i]) ** 2))) for i in range(3)]
    assert mri_scores(recon, target, dr)["psnr"].tolist() == expect


def test_psnr_and_ssim_import_no_torch():
    """The figures and fastMRI's scores compute PSNR on numpy arrays without torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import numpy as np\n"
        "from patchpnp.metrics.mri import mri_scores\n"
        "from patchpnp.metrics.quality import psnr, ssim\n"
        "a = np.zeros((1, 8, 8))\n"
        "assert psnr(a, a)[0] == float('inf') and ssim(a + 0.5, a + 0.5)[0] == 1.0\n"
        "print('torch' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.stdout.strip() == "False", res.stdout + res.stderr


def test_band_rmse_separates_the_outer_band_from_the_interior():
    ref = torch.zeros(2, 1, 16, 16)
    x = ref.clone()
    x[0, :, :2, :] = 0.5  # image 0: error only in the top two rows of the band
    x[1, :, 2:14, 2:14] = 0.1  # image 1: error only inside
    band, interior = band_rmse(x, ref, 2)
    n_band = 16 * 16 - 12 * 12
    np.testing.assert_allclose(band.numpy(), [0.5 * np.sqrt(32 / n_band), 0.0], rtol=1e-6)
    np.testing.assert_allclose(interior.numpy(), [0.0, 0.1], rtol=1e-6)
    with pytest.raises(ValueError, match="band width"):
        band_rmse(x, ref, 8)


def test_ssim_is_one_for_identical_images_and_lower_otherwise():
    x = images()
    np.testing.assert_allclose(ssim(x, x).numpy(), 1.0)
    noisy = x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    assert bool((ssim(noisy, x) < 0.95).all())


@pytest.mark.parametrize("task, params", [("denoise", {}), ("sr", {"factor": 2})])
def test_data_consistency_of_the_truth_is_about_one(task, params):
    op = make_operator(task, **params)
    x = images(4, size=64)
    sigma_n = 0.05
    y = op.measure(x, sigma_n, [torch.Generator().manual_seed(i) for i in range(4)])
    dc = data_consistency(op, x, y, sigma_n)
    assert dc.shape == (4,)
    # m >= 1024 real measurements: the score is 1 +- ~1/sqrt(2m) per image.
    assert dc.mean().item() == pytest.approx(1.0, abs=0.05)
    assert data_consistency(op, x + 0.2, y, sigma_n).mean().item() > 2.0
    with pytest.raises(ValueError):
        data_consistency(op, x, y, 0.0)


def test_lpips_checkpoint_path_follows_torchvision_and_the_hub_dir(monkeypatch, tmp_path):
    from torchvision.models import AlexNet_Weights

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = alexnet_checkpoint_path()
    assert path.parent == tmp_path / "checkpoints"
    assert AlexNet_Weights.IMAGENET1K_V1.url.endswith("/" + path.name)


def test_lpips_missing_weights_give_nan_and_one_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    metric = LPIPSMetric()
    assert metric.available is False and "not cached" in metric.reason
    x = images(2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = metric(x, x)
        second = metric(x.numpy(), x.numpy())
    assert torch.isnan(first).all() and np.isnan(second).all()
    lpips_warnings = [w for w in caught if issubclass(w.category, LPIPSUnavailableWarning)]
    assert len(lpips_warnings) == 1
    assert "missing" in str(lpips_warnings[0].message)


def test_lpips_rejects_a_checkpoint_that_is_not_the_genuine_file(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path = alexnet_checkpoint_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not the torchvision AlexNet weights")
    metric = LPIPSMetric()
    assert metric.available is False and "hash" in metric.reason
    # Without the hash check the file must still fail to load, and never give a number.
    unchecked = LPIPSMetric(verify_hash=False)
    assert unchecked.available is False and unchecked.reason
    with pytest.warns(LPIPSUnavailableWarning):
        assert np.isnan(unchecked(images(1).numpy(), images(1).numpy())).all()


def test_lpips_build_copies_every_backbone_layer_from_the_checkpoint(monkeypatch, tmp_path):
    """The loading logic only (the real weights are not available offline).

    A random torchvision AlexNet state stands in for the checkpoint, so the result is
    NOT LPIPS: the test inspects the copied weights and never computes a distance.
    """
    torchvision = pytest.importorskip("torchvision")
    state = torchvision.models.alexnet(weights=None).state_dict()
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: state)
    stand_in = tmp_path / "alexnet-owt-00000000.pth"
    stand_in.write_bytes(b"")
    model = LPIPSMetric(checkpoint=stand_in, verify_hash=False).model
    assert model is not None
    copied = 0
    for i in range(model.net.N_slices):
        for name, module in getattr(model.net, f"slice{i + 1}").named_children():
            if isinstance(module, torch.nn.Conv2d):
                torch.testing.assert_close(module.weight, state[f"features.{name}.weight"])
                torch.testing.assert_close(module.bias, state[f"features.{name}.bias"])
                copied += 1
    assert copied == 5
    assert not any(p.requires_grad for p in model.parameters())


def test_lpips_with_the_real_cached_weights():
    path = alexnet_checkpoint_path()
    if not path.is_file():
        pytest.skip(f"torchvision's AlexNet weights are not cached at {path} (offline machine)")
    metric = LPIPSMetric()
    assert metric.available, metric.reason
    x = images(2, size=64)
    same = metric(x, x)
    noisy = metric((x + 0.2 * torch.randn(x.shape)).clamp(0, 1), x)
    assert same.shape == (2,) and bool((same.abs() < 1e-6).all())
    assert bool((noisy > same).all())
