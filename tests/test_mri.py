"""Multicoil MRI reconstruction: the cell, its table, the plan and the config checks."""

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from patchpnp.data.demo import DemoSimulation, build_demo_folder
from patchpnp.data.fastmri import DataError
from patchpnp.data.mri_extract import extract_mri_volumes
from patchpnp.evaluation.mri_table import MRI_COLUMNS, mri_checks, mri_table, write_mri_table
from patchpnp.formats import FormatError, read_mri_split
from patchpnp.inference.mri_cell import (
    Acquisition,
    MRIError,
    Reconstruction,
    check_method,
    read_tuned,
    run_mri_cell,
    tune_mri,
)
from patchpnp.physics import MulticoilMRI
from patchpnp.pipeline.config import ConfigError, validate_config
from patchpnp.pipeline.plan import MRIPlan, Plan
from patchpnp.prior.spec import resolve_mri_prior
from patchpnp.solvers import SolveStreams, make_solver
from patchpnp.training.loop import train_prior
from workflow_runner import tiny_mri_config

SIZE = 24


@pytest.fixture(scope="module")
def mri_data(tmp_path_factory):
    """Tiny demo multicoil volumes, extracted as MRI train and eval splits."""
    root = tmp_path_factory.mktemp("mri")
    vols = build_demo_folder(
        root / "vols",
        simulation=DemoSimulation(
            "multicoil", recon_size=32, train_slices=3, eval_slices=3, edge_slices=1, coils=4
        ),
        n_train=2,
        n_eval=3,
        progress=False,
    )
    common = {"image_size": SIZE, "calib_width": 12, "progress": False}
    train = root / "train.h5"
    extract_mri_volumes(vols[:2], "train", train, edge_slices=1, **common)
    evaluation = root / "eval.h5"
    extract_mri_volumes(vols[2:], "eval", evaluation, **common)
    return {"train": train, "eval": evaluation, "root": root}


@pytest.fixture(scope="module")
def complex_prior(mri_data):
    config = tiny_mri_config()
    config["mri"]["image_size"] = SIZE
    settings = resolve_mri_prior(config, "whole")
    return train_prior(settings, [mri_data["train"]], mri_data["root"] / "prior", progress=False)


def test_mri_prior_settings_are_the_prior_on_complex_images():
    config = tiny_mri_config()
    settings = resolve_mri_prior(config, "patch")
    assert settings["network"]["img_channels"] == 2
    assert settings["scheme"]["image_size"] == config["mri"]["image_size"]
    assert settings["scheme"]["train_patch"] == 8
    assert settings["training"]["steps"] == config["mri"]["training"]["steps"]


def test_extraction_refuses_a_calibration_too_small_for_espirit(tmp_path, mri_data):
    vols = sorted((mri_data["root"] / "vols").glob("*.h5"))[2:3]
    with pytest.raises(DataError, match="ESPIRiT found no coil sensitivity"):
        extract_mri_volumes(vols, "eval", tmp_path / "e.h5", image_size=16, calib_width=8)
    assert not (tmp_path / "e.h5").exists()


def test_read_mri_split_refuses_a_magnitude_split(mri_data):
    with pytest.raises(FormatError, match="not an MRI evaluation split"):
        read_mri_split(mri_data["train"])


@pytest.mark.parametrize(
    "method, solver, prior, lam, message",
    [
        ("tv", None, None, None, "unknown MRI method"),
        ("diffusion", "ddrm", "p.pt", None, "needs a solver"),
        ("diffusion", "dps", None, None, "needs a prior"),
        ("cs_wavelet", None, None, None, "needs a regularisation weight"),
    ],
)
def test_bad_mri_cells_are_refused_before_work(method, solver, prior, lam, message):
    with pytest.raises(MRIError, match=message):
        check_method(method, solver, prior, lam)


def test_solvers_keep_complex_images_unclamped():
    """Real and imaginary parts are negative half the time: clamping them to [0, 1],
    as the solvers do for magnitude images, would destroy the phase."""
    torch.manual_seed(0)
    maps = torch.randn(2, 3, SIZE, SIZE, dtype=torch.complex64)
    maps = maps / maps.abs().pow(2).sum(1, keepdim=True).sqrt()
    op = MulticoilMRI(maps, 1, 0.0, cg_iters=30)
    x = torch.randn(2, 2, SIZE, SIZE) * 0.5
    y = op.A(x)
    for name, params in {"diffpir": {"lam": 1.0, "zeta": 0.0}, "dps": {"zeta": 0.3}}.items():
        solver = make_solver(name, lambda v, s: v, op, steps=3, sigma_start=0.05, **params)
        x_hat, _ = solver.solve(y, 0.01, SolveStreams.for_names(0, ["a", "b"]))
        assert (x_hat < 0).float().mean() > 0.2, name


def test_classical_cells_tune_and_score(tmp_path, mri_data):
    acq = Acquisition(acceleration=2, center_fraction=0.25, sigma_n=0.01)
    lam = tune_mri(
        mri_data["eval"],
        tmp_path / "tune.csv",
        acquisition=acq,
        reconstruction=Reconstruction("sense", iters=5),
        values=[1e-3, 1e-2, 1e-1],
        progress=False,
    )
    assert read_tuned(tmp_path / "tune.csv") == lam
    tables = {}
    for method, kw in {"zero_filled": {}, "sense": {"lam": lam, "iters": 5}}.items():
        tables[method] = run_mri_cell(
            mri_data["eval"],
            tmp_path / f"{method}.h5",
            tmp_path / f"{method}.csv",
            dataset="d",
            acquisition=acq,
            reconstruction=Reconstruction(method, **kw),
            progress=False,
        )
    zf = tables["zero_filled"]
    assert list(zf.columns[:7]) == [
        "dataset",
        "acceleration",
        "mask",
        "method",
        "prior",
        "solver",
        "size",
    ]
    assert len(zf) == 3 and zf["psnr"].notna().all() and (zf["nmse"] > 0).all()
    assert (zf["nfe"] == 0).all()
    # SENSE's CG residual is recorded; zero filling runs no CG.
    assert (tables["sense"]["cg_residual_max"] > 0).all() and (zf["cg_residual_max"] == 0).all()


def test_diffusion_cells_pair_whole_and_patch(tmp_path, mri_data, complex_prior):
    acq = Acquisition(acceleration=2, center_fraction=0.25, sigma_n=0.01, cg_iters=3)
    params = {"steps": 2, "lam": 1.0, "zeta": 0.3, "sigma_start": 0.3}
    tables = {}
    for size in ("whole", 8):
        tables[size] = run_mri_cell(
            mri_data["eval"],
            tmp_path / f"{size}.h5",
            tmp_path / f"{size}.csv",
            dataset="d",
            acquisition=acq,
            reconstruction=Reconstruction(
                "diffusion", solver="diffpir", solver_params=params, prior=complex_prior, size=size
            ),
            progress=False,
        )
    assert (tables[8]["size"] == "8").all() and (tables["whole"]["nfe"] == 2).all()
    assert (tables["whole"]["cg_residual_max"] > 0).all()
    table = mri_table(pd.concat(tables.values()), seed=0)
    patch = table[table["size"] == "8"].iloc[0]
    d = tables[8]["psnr"] - tables["whole"]["psnr"]
    assert patch["dpsnr_vs_whole"] == pytest.approx(d.mean())
    assert patch["dpsnr_lo"] <= patch["dpsnr_vs_whole"] <= patch["dpsnr_hi"]


def _cell_rows(method, psnrs, size="whole", prior="none", solver="none", acc=4):
    return pd.DataFrame(
        {
            "dataset": "d",
            "acceleration": acc,
            "mask": "equispaced",
            "method": method,
            "prior": prior,
            "solver": solver,
            "size": size,
            "image": range(len(psnrs)),
            "psnr": psnrs,
            "ssim": 0.5,
            "nmse": 0.1,
            "data_consistency": 1.0,
            "cg_residual_max": 0.0,
            "nfe": 0,
            "seconds": 1.0,
            "lam": np.nan,
        }
    )


def test_mri_table_columns_and_checks(tmp_path):
    cells = [
        _cell_rows("zero_filled", [20.0, 21.0, 22.0]),
        _cell_rows("cs_wavelet", [23.0, 24.0, 25.0]),
        _cell_rows("diffusion", [25.0, 26.0, 27.0], prior="whole", solver="dps"),
        _cell_rows("diffusion", [24.5, 25.5, 26.5], "16", prior="whole", solver="dps"),
        _cell_rows("diffusion", [19.0, 26.0, 27.0], "8", prior="whole", solver="dps"),
    ]
    paths = []
    for i, cell in enumerate(cells):
        paths.append(tmp_path / f"c{i}.csv")
        cell.to_csv(paths[-1], index=False)
    table = write_mri_table(paths, tmp_path / "mri", seed=0)
    assert list(pd.read_csv(tmp_path / "mri.csv").columns[: len(MRI_COLUMNS)]) == MRI_COLUMNS
    # Classical first, then diffusion from whole to the smallest patch.
    assert list(table["method"]) == ["zero_filled", "cs_wavelet", *["diffusion"] * 3]
    assert list(table["size"]) == ["whole", "whole", "whole", "16", "8"]
    p16 = table.iloc[3]
    assert p16["dpsnr_vs_whole"] == pytest.approx(-0.5)
    assert p16["dpsnr_lo"] == p16["dpsnr_hi"] == pytest.approx(-0.5)  # identical differences
    checks = mri_checks(table)
    assert any("every diffusion cell beats zero filling: yes" in c for c in checks)
    assert any("beats the best classical (cs_wavelet, 24.00 dB) by +2.00 dB" in c for c in checks)
    assert "## Checks" in (tmp_path / "mri.md").read_text()


def test_mri_plan_cells_and_overrides():
    config = tiny_mri_config()
    config["mri"]["accelerations"] = {"4": 0.08, "8": 0.04}  # as --config would give them
    config["mri"]["solvers"]["dps"]["accelerations"] = {8: {"zeta": 0.1}}
    mri = MRIPlan(Plan(config))
    assert len(mri.cells()) == 2 * 2 * 2 * 2  # accelerations x priors x solvers x sizes
    assert len(mri.classical()) == 2 * 3
    assert mri.center_fraction(8) == 0.04
    assert mri.solver_params("dps", "8")["zeta"] == 0.1
    assert mri.solver_params("dps", "4")["zeta"] == 0.3
    rows = mri.figure_rows()
    assert [r["label"] for r in rows] == ["4x equispaced", "8x equispaced"]
    assert [p[1].rsplit("/", 3)[-3:] for p in rows[0]["panels"][2:]] == [
        ["whole", "diffpir", "whole.h5"],
        ["patch", "diffpir", "p8.h5"],
        ["whole", "dps", "whole.h5"],
        ["patch", "dps", "p8.h5"],
    ]
    off = tiny_mri_config()
    off["mri"]["datasets"] = []
    assert MRIPlan(Plan(off)).targets() == []


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m.update(datasets=["mni_t1_singlecoil"]), "needs a multicoil dataset"),
        (lambda m: m.update(datasets=["nope"]), "no dataset 'nope'"),
        (lambda m: m.update(priors=["whole", "padis"]), "no prior 'padis'"),
        (lambda m: m.update(sizes=["whole", 24]), "not smaller than 24"),
        (lambda m: m.update(sizes=["whole", 9]), "not a multiple of 2"),
        (lambda m: m.update(accelerations={4: 0.5}), "centre fraction at most 1 / R"),
        (lambda m: m["solvers"]["dps"].update(lam=1.0), r"\['lam'\] do not apply to dps"),
    ],
)
def test_mri_config_cross_checks(change, message):
    config = copy.deepcopy(tiny_mri_config())
    change(config["mri"])
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_mri_checks_are_off_with_the_task():
    """No MRI dataset: the task is off, and the priors it names need not exist."""
    config = tiny_mri_config()
    config["mri"]["datasets"] = []
    config["priors"] = {"patch": config["priors"]["patch"]}
    config["padis"]["priors"] = ["patch", "position"]
    del config["generalization"]  # optional: it compares two priors
    validate_config(config)


# -- scoring as fastMRI does: data range, masks per volume, data consistency ----------------
def test_data_range_is_the_scored_targets_volume_maximum(tmp_path, mri_data):
    """fastMRI's data range is the maximum of the scored target volume (|x|), not the
    RSS, which exceeds |x| (by the coil maps' projection) and biased every PSNR upward."""
    from patchpnp.metrics.mri import magnitude, volume_data_range

    split = read_mri_split(mri_data["eval"])
    expect = magnitude(split.images).reshape(len(split.images), -1).max(axis=1)
    got = volume_data_range(split.images, split.source)
    assert np.allclose(got, expect)  # one slice per volume in eval
    assert (split.data_range >= got - 1e-6).all()  # the stored RSS maximum is above it
    # slices of one volume share their volume's maximum
    two = volume_data_range(split.images[:2], ["v", "v"])
    assert two[0] == two[1] == pytest.approx(expect[:2].max())
    table = run_mri_cell(
        mri_data["eval"], tmp_path / "zf.h5", tmp_path / "zf.csv", dataset="d",
        acquisition=Acquisition(acceleration=2, center_fraction=0.25),
        reconstruction=Reconstruction("zero_filled"), progress=False,
    )  # fmt: skip
    assert np.allclose(table["data_range"], expect)
    mse = table["nmse"] * (magnitude(split.images) ** 2).reshape(3, -1).mean(axis=1)
    assert np.allclose(table["psnr"], 10 * np.log10(expect**2 / mse), atol=1e-6)


def test_random_masks_are_drawn_per_volume():
    """A random mask depends on (seed, volume) only: the slices of one volume share it,
    other volumes get their own; an equispaced mask is one mask for all."""
    from patchpnp.inference.mri_cell import volume_mask_seed

    maps = torch.ones(3, 2, 16, 32, dtype=torch.complex64) / 2**0.5
    acq = Acquisition(acceleration=4, center_fraction=0.08, mask="random", mask_seed=5)
    op = acq.operator(maps, ["file_a.h5", "file_b.h5", "file_a.h5"])
    assert op.lines.shape == (3, 32)
    assert torch.equal(op.lines[0], op.lines[2]) and not torch.equal(op.lines[0], op.lines[1])
    alone = acq.operator(maps[:1], ["file_b.h5"])
    assert torch.equal(alone.lines[0], op.lines[1])  # independent of the batch
    assert volume_mask_seed(5, "file_a.h5") != volume_mask_seed(6, "file_a.h5")
    x = torch.randn(3, 2, 16, 32)
    y = op.A(x)
    sampled = (y.abs().sum(dim=(1, 2)) > 0).float()
    assert torch.equal(sampled, op.lines.float())
    # the adjoint is exact with per-image masks: <A x, y> = <x, A^H y>
    v = torch.randn_like(y)
    lhs = torch.vdot(op.A(x).flatten(), v.flatten()).real
    rhs = (x * op.A_adjoint(v)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-4)
    counts = op.num_measurements(x.shape)
    assert counts.shape == (3,) and counts[0] == counts[2]
    equi = Acquisition(acceleration=4, center_fraction=0.08).operator(maps, ["a", "b", "c"])
    assert equi.lines.ndim == 1


def test_data_consistency_uses_the_noise_estimated_from_kspace():
    """Noise-only k-space corners give back the noise level; a reconstruction that fits
    the data up to that noise scores about 1 whatever sigma_n the config assumed."""
    from patchpnp.metrics.mri import kspace_noise_sigma
    from patchpnp.metrics.quality import data_consistency

    g = torch.Generator().manual_seed(0)
    n, c, h, w = 2, 4, 32, 32
    noise = 0.03 * torch.complex(
        torch.randn(n, c, h, w, generator=g), torch.randn(n, c, h, w, generator=g)
    )
    yy, xx = torch.meshgrid(torch.arange(h) - h // 2, torch.arange(w) - w // 2, indexing="ij")
    signal = 5.0 * torch.exp(-(xx**2 + yy**2) / 8.0)  # concentrated at the centre
    kspace = (signal + noise).numpy()
    sigma = kspace_noise_sigma(kspace)
    assert sigma == pytest.approx([0.03, 0.03], rel=0.15)
    with pytest.raises(ValueError, match="complex k-space"):
        kspace_noise_sigma(kspace.real)
    # The truth under a fully sampled operator with unit-norm maps: its residual is the
    # noise on every coil, so it scores 1 over the estimated level.
    maps = torch.full((n, c, h, w), 0.5, dtype=torch.complex64)
    op = MulticoilMRI(maps, acceleration=1, center_fraction=1.0)
    x = torch.randn(n, 2, h, w, generator=g)
    y = op.A(x) + noise.to(torch.complex64)
    dc = data_consistency(op, x, y, 1.0).numpy() / sigma
    assert dc == pytest.approx([1.0, 1.0], rel=0.15)


def test_mri_cells_take_a_number_of_tiles_per_call():
    """``patch_batch: auto`` needs a memory calibration, which only the grid's cells take:
    an MRI cell refuses it before reading anything."""
    from patchpnp.runtime import Runtime

    with pytest.raises(MRIError, match="patch_batch 'auto'"):
        run_mri_cell(
            "no-such-split.h5", "r.h5", "m.csv", dataset="d",
            acquisition=Acquisition(acceleration=2, center_fraction=0.25),
            reconstruction=Reconstruction("zero_filled"), runtime=Runtime(patch_batch="auto"),
        )  # fmt: skip
