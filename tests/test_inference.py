"""Grid cells: early refusal of bad settings, paired measurements, outputs, cost counts."""

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from patchpnp.inference.cell import (
    CellSpec,
    InferenceError,
    check_cell,
    measurement_generators,
    run_cell,
)
from patchpnp.metrics.quality import Scoring
from patchpnp.runtime import Runtime
from patchpnp.training.loop import train_prior
from test_training import blobs, tiny_settings, write_split


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval")
    path = folder / "eval.h5"
    with h5py.File(path, "w") as f:
        f["images"] = blobs(5, 16, seed=3)
        f["source"] = np.array([f"vol{i}.h5" for i in range(5)], dtype=object)
        f["slice"] = np.arange(5, dtype=np.int32)
    return path


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    folder = tmp_path_factory.mktemp("prior")
    data = [write_split(folder / "train.h5", blobs(32, 16))]
    return train_prior(tiny_settings(steps=3), data, folder / "p", progress=False)


@pytest.mark.parametrize(
    "task, params, solver, size, padding, message",
    [
        ("inpaint", {"sigma_n": 0.1}, "dps", "whole", "reflect", "unknown task 'inpaint'"),
        ("denoise", {"sigma_n": 0.1}, "ddrm", "whole", "reflect", "unknown solver 'ddrm'"),
        ("denoise", {"sigma_n": 0.0}, "diffpir", "whole", "reflect", "sigma_n must be > 0"),
        ("denoise", {"sigma_n": 0.1}, "diffpir", 8, "circular", "unknown padding 'circular'"),
    ],
)
def test_bad_cells_are_refused_before_work(task, params, solver, size, padding, message):
    with pytest.raises(InferenceError, match=message):
        check_cell(task, params, solver, size, padding)


def test_measurements_are_paired_across_cells():
    a = measurement_generators(1, "sr", [0, 1])
    b = measurement_generators(1, "sr", [0, 1])
    c = measurement_generators(1, "denoise", [0, 1])
    assert torch.equal(torch.randn(3, generator=a[1]), torch.randn(3, generator=b[1]))
    assert not torch.equal(torch.randn(3, generator=a[0]), torch.randn(3, generator=c[0]))


def test_baseline_scores_the_measurement(tmp_path, eval_file):
    table = run_cell(
        eval_file,
        tmp_path / "r.h5",
        tmp_path / "m.csv",
        cell=CellSpec(task="denoise", task_params={"sigma_n": 0.1}, solver="baseline"),
        progress=False,
    )
    assert list(table["image"]) == [0, 1, 2, 3, 4]
    # The noisy image as measured, not clamped: 20 dB at sigma_n 0.1, up to the
    # spread of 256-pixel noise samples (about 0.1 dB per image).
    assert 19.5 <= table["psnr"].mean() < 20.5
    assert table["lpips"].isna().all() or table["lpips"].between(0, 1).all()
    with h5py.File(tmp_path / "r.h5") as f:
        assert f["recon"].shape == (5, 1, 16, 16) and f.attrs["solver"] == "baseline"
    saved = pd.read_csv(tmp_path / "m.csv")
    assert {
        "psnr",
        "ssim",
        "rmse_band",
        "rmse_interior",
        "lpips",
        "data_consistency",
        "nfe",
        "seconds",
        "task",
        "solver",
        "size",
        "padding",
    } <= set(saved.columns)


def test_cells_follow_the_lpips_mode(tmp_path, eval_file):
    """off: NaN without a warning; required without the weights: refused before any
    output is written; auto with a given path: that file or nothing (no hub fallback)."""
    import warnings

    from patchpnp.metrics.lpips_weights import LPIPSWeightsError
    from patchpnp.metrics.quality import LPIPSUnavailableWarning

    missing = tmp_path / "resources" / "alexnet-owt-7be5be79.pth"
    cell = dict(
        cell=CellSpec(task="denoise", task_params={"sigma_n": 0.1}, solver="baseline"),
        progress=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", LPIPSUnavailableWarning)
        off = run_cell(
            eval_file, tmp_path / "o.h5", tmp_path / "o.csv", scoring=Scoring(lpips_mode="off"),
            **cell,
        )  # fmt: skip
    assert off["lpips"].isna().all()
    with pytest.raises(LPIPSWeightsError, match="LPIPS is required"):
        run_cell(
            eval_file, tmp_path / "r.h5", tmp_path / "r.csv",
            scoring=Scoring(lpips_weights=missing, lpips_mode="required"), **cell,
        )  # fmt: skip
    assert not (tmp_path / "r.h5").exists() and not (tmp_path / "r.csv").exists()
    with pytest.warns(LPIPSUnavailableWarning, match=str(missing)):
        auto = run_cell(
            eval_file, tmp_path / "a.h5", tmp_path / "a.csv",
            scoring=Scoring(lpips_weights=missing), **cell,
        )  # fmt: skip
    assert auto["lpips"].isna().all()


@pytest.mark.parametrize(
    "solver, params",
    [
        ("diffpir", {"steps": 4, "lam": 1.0, "zeta": 0.3, "sigma_start": 0.3}),
        ("dps", {"steps": 4, "zeta": 0.3, "sigma_start": 0.3}),
    ],
)
@pytest.mark.parametrize("size", ["whole", 8])
def test_cells_write_reconstructions_and_costs(
    tmp_path, eval_file, tiny_prior, solver, params, size
):
    table = run_cell(
        eval_file,
        tmp_path / "r.h5",
        tmp_path / "m.csv",
        cell=CellSpec("sr", {"sigma_n": 0.025, "factor": 2}, solver, params, tiny_prior, size,
                      "reflect", seed=4),
        runtime=Runtime(batch_images=2),
        progress=False,
    )  # fmt: skip
    assert np.isfinite(table["psnr"]).all() and (table["nfe"] == 4).all()
    assert (table["backward_passes"] == (4 if solver == "dps" else 0)).all()
    if size == 8:
        assert (table["tiles_evaluated"] == 4 * 9).all()  # (16 // 8 + 1)^2 tiles per call
    with h5py.File(tmp_path / "r.h5") as f:
        assert f["measurement"].shape == (5, 1, 8, 8)
        recon = f["recon"][:]
    # the same cell with another batch size gives the same images (per-image generators)
    run_cell(
        eval_file,
        tmp_path / "r2.h5",
        tmp_path / "m2.csv",
        cell=CellSpec("sr", {"sigma_n": 0.025, "factor": 2}, solver, params, tiny_prior, size,
                      "reflect", seed=4),
        runtime=Runtime(batch_images=5),
        progress=False,
    )  # fmt: skip
    with h5py.File(tmp_path / "r2.h5") as f:
        np.testing.assert_allclose(f["recon"][:], recon, atol=1e-5)


def test_tune_picks_an_interior_value_or_widens(tmp_path, eval_file, tiny_prior, monkeypatch):
    """The sweep widens while the best value is on the grid's edge."""
    import patchpnp.inference.tune as tuning

    # A fake PSNR peaked at lam = 0.01, two decades below the starting centre.
    def fake_cell(path, recon, metrics, *, cell, **kw):
        lam = cell.solver_params["lam"]
        return pd.DataFrame({"psnr": [30 - (np.log10(lam) + 2) ** 2]})

    monkeypatch.setattr(tuning, "run_cell", fake_cell)
    table, best = tuning.tune(
        [eval_file],
        cell=CellSpec(
            task="denoise",
            task_params={"sigma_n": 0.1},
            solver="diffpir",
            solver_params={"steps": 2, "lam": 1.0, "zeta": 0.3},
            prior=tiny_prior,
        ),
    )
    assert best == pytest.approx(0.01) and table["interior"].all()
    assert table["value"].min() < 0.01 < table["value"].max()
    tuning.write_tuning(table, tmp_path / "results/tune/prior/diffpir/denoise.csv")
    chosen = tuning.summarise(
        [tmp_path / "results/tune/prior/diffpir/denoise.csv"], tmp_path / "c.yaml"
    )
    assert chosen == {"diffpir": {"priors": {"prior": {"denoise": {"lam": 0.01}}}}}


def test_tune_runs_for_real(tmp_path, eval_file, tiny_prior):
    from patchpnp.inference.tune import tune

    table, best = tune(
        [eval_file],
        cell=CellSpec(
            task="denoise",
            task_params={"sigma_n": 0.1},
            solver="dps",
            solver_params={"steps": 2, "zeta": 0.3, "sigma_start": 0.2},
            prior=tiny_prior,
        ),
        per_decade=1,
        max_widen=1,
    )
    assert table["chosen"].sum() == 1 and np.isfinite(table["psnr"]).all()
    assert best in set(table["value"])


@pytest.mark.filterwarnings("ignore:LPIPS is recorded as missing")
@pytest.mark.parametrize("solver, params", [
    ("diffpir", {"steps": 3, "lam": 1.0, "zeta": 0.3, "sigma_start": 0.3}),
    ("dps", {"steps": 3, "zeta": 0.3, "sigma_start": 0.3}),
])  # fmt: skip
def test_auto_micro_batches_fit_the_budget_and_change_no_result(
    tmp_path, eval_file, tiny_prior, solver, params, caplog
):
    """patch_batch auto takes the largest micro-batch the calibration allows within the
    budget; micro-batching changes memory, not reconstructions."""
    import logging

    from patchpnp.inference.calibration import calibrate_command
    from patchpnp.patching.micro_batch import read_calibration

    cal = tmp_path / "calibration.json"
    calibrate_command(str(tiny_prior), str(cal), device="cpu", threads=1)
    model = read_calibration(cal).models["gradient" if solver == "dps" else "forward"]
    spec = CellSpec("denoise", {"sigma_n": 0.1}, solver, params, tiny_prior, size=8)
    cell = dict(cell=spec, scoring=Scoring(lpips_mode="off"), progress=False)
    batch = Runtime(batch_images=5)
    every = run_cell(eval_file, tmp_path / "a.h5", tmp_path / "a.csv", runtime=batch, **cell)
    budget = max(model.floor_mib, model.fixed_mib + 3.5 * model.per_image(64))
    tiles = 5 * 3 * 3  # 16-px images, 8-px tiles: 3 x 3 tiles each
    fits = [b for b in range(1, tiles + 1) if model.predict(b * 64, 64) <= budget]
    expected = max(fits, default=1)
    with caplog.at_level(logging.INFO, logger="patchpnp.inference.cell"):
        auto = run_cell(
            eval_file, tmp_path / "b.h5", tmp_path / "b.csv", **cell,
            runtime=Runtime(batch_images=5, patch_batch="auto", memory_budget=budget,
                            calibration=cal),
        )  # fmt: skip
    assert f"patch_batch auto: {expected} tiles per call" in caplog.text
    np.testing.assert_allclose(auto["psnr"], every["psnr"], atol=1e-4)
    with pytest.raises(InferenceError, match="needs a memory calibration"):
        run_cell(
            eval_file, tmp_path / "c.h5", tmp_path / "c.csv", **cell,
            runtime=Runtime(batch_images=5, patch_batch="auto"),
        )  # fmt: skip
    assert not (tmp_path / "c.h5").exists()
