"""Tests of the resolution check (patchpnp.evaluation.resolution): which intervals it
checks against which bar, that a missing interval never counts as resolved, and the
files ``patchpnp tables --bars`` writes; and of snakemake resolution's evaluation set
(the grid's slices, then the volumes after the tuning ones)."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml
from patchpnp.data.demo import DemoSimulation, build_demo_folder
from patchpnp.data.fastmri import DataError, resolution_volumes, split_eval_volumes
from patchpnp.evaluation.aggregate import AggregateError
from patchpnp.evaluation.claims import CLAIMS_COLUMNS, claims_table
from patchpnp.evaluation.resolution import (
    RESOLUTION_COLUMNS,
    resolution_summary,
    resolution_table,
    write_resolution,
)
from patchpnp.pipeline.plan import DemoFolder, Plan, ResolutionPlan
from test_claims import cell


@pytest.fixture
def demo_config(repo_root):
    return yaml.safe_load((repo_root / "config" / "config.yaml").read_text())


def extended_rows(rows) -> pd.DataFrame:
    """Extended-table rows: (prior, size, padding, lo, hi) each; the estimate is the mid."""
    out = []
    for prior, size, padding, lo, hi in rows:
        out.append(
            dict(dataset="knee", task="sr", prior=prior, solver="dps", size=size,
                 padding=padding, n_images=20, dpsnr_vs_whole=(lo + hi) / 2,
                 dpsnr_lo=lo, dpsnr_hi=hi)
        )  # fmt: skip
    return pd.DataFrame(out)


def claims_rows(rows) -> pd.DataFrame:
    """Claims-table rows: (claim, dataset, size, lo, hi) each, solver/task all or a name."""
    out = []
    for claim, scope, lo, hi in rows:
        keys = dict(dataset=scope, solver=scope, task=scope, size=scope)
        out.append(
            dict(claim=claim, **keys, estimate_db=(lo + hi) / 2, ci_lo_db=lo, ci_hi_db=hi,
                 verdict="inconclusive", prior="all", n_images=40, detail="")
        )  # fmt: skip
    return pd.DataFrame(out, columns=CLAIMS_COLUMNS)


def test_cells_and_pooled_rows_against_their_bars():
    ext = extended_rows(
        [
            ("patch", "whole", "none", math.nan, math.nan),  # whole rows: not checked
            ("patch", "p32", "reflect", -0.40, -0.12),  # half-width 0.14
            ("patch", "p16", "reflect", -0.80, -0.40),  # 0.20: misses
            ("patch", "p32", "zeros", -0.90, -0.10),  # zeros: the padding claim's, not a cell bar
            ("baseline", "measurement", "none", math.nan, math.nan),
        ]
    )
    claims = claims_rows(
        [
            ("a_training", "knee", -0.5, 0.5),  # a per-cell row: not checked
            ("a_training", "all", -0.10, -0.02),  # 0.04
            ("b_inference", "all", -0.50, -0.38),  # 0.06: misses
            ("padding", "all", math.nan, math.nan),  # not tested: does not hold
            ("d_memory_falls", "all", math.nan, math.nan),  # memory: no interval, not checked
            ("d_memory_plateaus", "all", math.nan, math.nan),
        ]
    )
    t = resolution_table(ext, claims, cell_db=0.15, pooled_db=0.05)
    assert list(t.columns) == RESOLUTION_COLUMNS
    assert list(t["check"]) == ["cell", "cell", "pooled", "pooled", "pooled"]
    assert list(t["size"][:2]) == ["p32", "p16"]
    assert t["half_width_db"].iloc[:4].tolist() == pytest.approx([0.14, 0.20, 0.04, 0.06])
    assert list(t["holds"]) == [True, False, True, False, False]
    assert list(t["claim"][2:]) == ["a_training", "b_inference", "padding"]
    assert list(t["bar_db"]) == [0.15, 0.15, 0.05, 0.05, 0.05]
    text = resolution_summary(t)
    assert text.startswith("Not every bar holds.")
    assert "1 of 2 within 0.15 dB; widest 0.200 dB (knee/patch/dps/sr/p16, 20 images)" in text
    assert "1 of 3 within 0.05 dB; widest nan dB (padding" in text
    assert resolution_summary(t[t["holds"]]).startswith("All bars hold.")


def test_the_check_wants_the_interval_columns_and_positive_bars():
    ext = extended_rows([("patch", "p32", "reflect", -0.4, -0.1)])
    claims = claims_rows([("a_training", "all", -0.1, 0.0)])
    with pytest.raises(AggregateError, match=r"extended table lacks columns \['dpsnr_lo'\]"):
        resolution_table(ext.drop(columns="dpsnr_lo"), claims, cell_db=0.15, pooled_db=0.05)
    with pytest.raises(AggregateError, match="bars must be positive"):
        resolution_table(ext, claims, cell_db=0.0, pooled_db=0.05)


def test_the_check_of_real_claims_takes_each_blocks_last_pooled_row(tmp_path):
    """b_inference has pooled rows per solver before its own: only the last is checked."""
    rng = np.random.default_rng(0)
    base = rng.normal(28, 1, 30)
    m = pd.concat(
        [
            cell(base + s, prior=p, solver=v, size=z)
            for p in ("whole", "patch")
            for v in ("dps", "diffpir")
            for z, s in (("whole", 0.0), ("p32", -0.1))
        ]
    )
    claims = claims_table(m, None, seed=1)
    ext = extended_rows([("patch", "p32", "reflect", -0.2, 0.0)])
    t = resolution_table(ext, claims, cell_db=0.15, pooled_db=0.05)
    pooled = t[t["check"] == "pooled"]
    assert list(pooled["claim"]) == ["a_training", "b_inference", "c_patch_trained_resilient",
                                     "padding"]  # fmt: skip
    # constant differences: zero-width intervals hold; padding was not run: it does not
    assert list(pooled["holds"]) == [True, True, True, False]
    written = write_resolution(t, tmp_path)
    md = written["resolution.md"].read_text()
    assert "Not every bar holds." in md and "| NO" in md
    assert pd.read_csv(written["resolution.csv"])["holds"].tolist() == t["holds"].tolist()


# -- snakemake resolution's evaluation set ---------------------------------------------------
def test_resolution_volumes_extend_the_grid_and_skip_the_tuning_ones(tmp_path):
    files = [tmp_path / f"v{i:02d}.h5" for i in range(10)]
    split = split_eval_volumes(files, 3, 2, "val")
    more = resolution_volumes(files, 3, 2, 4, "val")
    assert more[:3] == split["eval"] and more[3:] == files[5:9]
    assert not set(more) & set(split["tune"])
    with pytest.raises(DataError, match=r"config key 'resolution.n_eval' \(9\)"):
        resolution_volumes(files, 3, 2, 6, "val")


def test_the_demo_plan_builds_the_extra_volumes_in_a_part_of_their_own(demo_config):
    plan = Plan(demo_config)
    folder = plan.demo_folders()["mni_t1_singlecoil_val"]
    n_eval = demo_config["data"]["datasets"]["mni_t1_singlecoil"]["n_eval"]
    assert folder.more == demo_config["resolution"]["n_eval"] - n_eval
    (_, own, counts), (suffix, more, more_counts) = folder.parts()
    assert own == folder.files() and more == folder.more_files() and suffix == "_more"
    assert counts == f"--train 0 --eval {n_eval} --tune 4"  # unchanged by resolution
    assert more_counts.endswith(f"--more-eval {folder.more} --first-file {n_eval + 4}")
    vols = plan.volumes("mni_t1_singlecoil", "resolution")
    assert vols[:n_eval] == plan.volumes("mni_t1_singlecoil", "eval")
    assert vols[n_eval:] == more
    res = ResolutionPlan(plan)
    assert res.split_files()[0] == "results/data/mni_t1_singlecoil/resolution.h5"
    files = res.metrics_files()
    assert len(files) == len(plan.cells()) + 2 * 2
    assert all(f.startswith("results/resolution/metrics/") for f in files)
    assert DemoFolder("x", "singlecoil", eval=2, tune=1).parts()[1:] == []
    # n_eval is a floor: a dataset whose grid evaluates more keeps its own set
    demo_config["data"]["datasets"]["mni_t1_multicoil"]["n_eval"] = 200
    plan = Plan(demo_config)
    assert plan.demo_folders()["mni_t1_multicoil_val"].more == 0
    assert plan.volumes("mni_t1_multicoil", "resolution") == plan.volumes(
        "mni_t1_multicoil", "eval"
    )


def test_the_extra_demo_volumes_continue_the_evaluation_volumes(tmp_path):
    """Built by their own job, volume k of the extra part equals evaluation volume
    n_eval + k of a folder built with more evaluation volumes in one go."""
    simulation = DemoSimulation("singlecoil", seed=3, recon_size=48, eval_slices=3)
    kw = dict(simulation=simulation, progress=False)
    more = build_demo_folder(tmp_path / "a" / "f", n_eval=2, n_tune=1, n_more=1, first=3, **kw)
    assert [p.name for p in more] == ["file_mni_0003.h5"]  # the first three are not written
    assert [p.name for p in (tmp_path / "a" / "f").iterdir()] == ["file_mni_0003.h5"]
    ref = build_demo_folder(tmp_path / "b" / "f", n_eval=3, **kw)  # same folder name
    tune = build_demo_folder(tmp_path / "c" / "f", n_tune=1, **kw)
    key = "reconstruction_esc"
    with h5py.File(more[0]) as a, h5py.File(ref[2]) as b, h5py.File(tune[0]) as t:
        np.testing.assert_array_equal(a[key][()], b[key][()])
        assert not np.array_equal(a[key][()], t[key][()])
    with pytest.raises(ValueError, match="nothing to build"):
        build_demo_folder(tmp_path / "d" / "f", n_eval=1, first=1, **kw)
