"""Micro-batches sized to a memory budget (patchpnp.patching.micro_batch)."""

import pytest
import torch
from patchpnp.inference.calibration import calibrate_denoiser, measure_call
from patchpnp.patching.micro_batch import (
    Calibration,
    MemoryModel,
    MicroBatchError,
    budget_mib,
    choose_patch_batch,
    fit,
    parse_budget,
    read_calibration,
)
from patchpnp.prior import ImageSpaceDenoiser
from patchpnp.prior.loading import build_network
from workflow_runner import TINY_NETWORK

torch.set_num_threads(1)


def test_fit_recovers_the_floor_the_line_and_the_attention_term():
    truth = MemoryModel(floor_mib=2.0, fixed_mib=0.5, rate_mib=1000.0, attention_mib=5e5)
    sizes = [(s, b) for s in (16, 32, 64) for b in (1, 2, 4)]
    model = fit([(s, b, truth.predict(b * s * s, s * s)) for s, b in sizes])
    assert model.floor_mib == pytest.approx(2.0)
    assert model.rate_mib == pytest.approx(1000.0, rel=1e-6)
    assert model.attention_mib == pytest.approx(5e5, rel=1e-6)
    assert model.fixed_mib == pytest.approx(0.5, abs=1e-6)
    # No attention in the data: no attention term.
    flat = MemoryModel(1.0, 0.0, 800.0)
    assert fit([(s, b, flat.predict(b * s * s, s * s)) for s, b in sizes]).attention_mib < 1e-6
    with pytest.raises(MicroBatchError, match="several sizes"):
        fit([(16, 1, 1.0), (16, 1, 1.1), (16, 1, 1.2)])


@pytest.mark.parametrize(
    "budget, expected",
    [(300, ("mib", 300.0)), ("25%", ("fraction", 0.25)), (" 5.5 % ", ("fraction", 0.055))],
)
def test_budgets_parse(budget, expected):
    assert parse_budget(budget) == expected


@pytest.mark.parametrize("budget", [0, -3, "0%", "120%", "quarter", True])
def test_bad_budgets_name_the_key(budget):
    with pytest.raises(MicroBatchError, match="inference.memory_budget"):
        parse_budget(budget)


def test_choice_is_the_largest_micro_batch_within_the_budget():
    model = MemoryModel(floor_mib=1.0, fixed_mib=0.0, rate_mib=1e6 / 1024)  # 1 MiB per 1024 px
    # A 32-px tile costs 1 MiB: 8 MiB holds 8 tiles; never more than there are, never < 1.
    assert choose_patch_batch(model, 32, 25, 8.0) == 8
    assert choose_patch_batch(model, 32, 5, 8.0) == 5
    assert choose_patch_batch(model, 32, 25, 0.5) == 1
    # 25% of a whole 64 x 64 batch of 4 images (16 MiB) is 4 MiB: 4 tiles of 32 px.
    budget = budget_mib("25%", model, images=4, image_pixels=64 * 64)
    assert budget == pytest.approx(4.0)
    assert choose_patch_batch(model, 32, 36, budget) == 4
    assert budget_mib(300, model, 4, 64 * 64) == 300


@pytest.mark.slow
def test_calibration_predicts_measured_calls_of_a_real_network(tmp_path):
    net = build_network(TINY_NETWORK, seed=0).eval().requires_grad_(False)
    den = ImageSpaceDenoiser(net)
    cal = calibrate_denoiser(den, multiple=2, device="cpu")
    assert cal.device == "cpu" and cal.dtype == "float32"
    # Its attention sits at 16 x 16 of a 32-px input: memory is far from linear in pixels,
    # and the sizes below are not among the calibration's (16, 32, 64 px; 1, 2, 4 images).
    for mode in ("forward", "gradient"):
        for side, batch in ((32, 3), (48, 2), (64, 3)):
            measured = measure_call(den, side, batch, mode, "cpu")
            predicted = cal.models[mode].predict(side * side * batch, side * side)
            assert predicted == pytest.approx(measured, rel=0.05), (mode, side, batch)
    path = tmp_path / "calibration.json"
    path.write_text(cal.to_json())
    assert read_calibration(path) == cal
    path.write_text('{"models": {}}')
    with pytest.raises(MicroBatchError, match="calibration.json"):
        read_calibration(path)
    with pytest.raises(MicroBatchError, match="not found"):
        read_calibration(tmp_path / "none.json")
    assert Calibration.from_json(cal.to_json()).models == cal.models
