"""Tests of the claim verdicts (patchpnp.evaluation.claims) on synthetic metrics of known answer:
constant differences, intervals against the margin and zero, the pooled cluster bootstrap
on correlated and independent cells, memory profiles that plateau or not, strict pairing."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from patchpnp.cli import main
from patchpnp.evaluation.aggregate import REQUIRED, AggregateError, bootstrap_mean_ci
from patchpnp.evaluation.claims import (
    CLAIMS_COLUMNS,
    claims_table,
    cluster_bootstrap_mean,
    comparable_verdict,
    directional_verdict,
    family_verdict,
    memory_falls_verdict,
    memory_plateau_verdict,
    read_profiles,
    write_claims,
)

SEED = 7
N = 30


def md_rows(md: str) -> list[list[str]]:
    """A Markdown pipe table's rows as lists of cell strings (the cell padding stripped)."""
    rows = [line for line in md.splitlines() if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row[1:-1])] for row in rows]


def cell(
    psnr,
    *,
    dataset="knee",
    prior="whole",
    solver="dps",
    task="denoise",
    size="whole",
    padding=None,
    images=None,
) -> pd.DataFrame:
    """One cell's rows of the metrics table (whole cells pad nothing)."""
    padding = "none" if size == "whole" else (padding or "reflect")
    psnr = np.asarray(psnr, dtype=float)
    images = range(len(psnr)) if images is None else images
    keys = dict(dataset=dataset, task=task, prior=prior, solver=solver, size=size)
    return pd.DataFrame({**keys, "padding": padding, "image": list(images), "psnr": psnr})


def base(n=N, seed=0):
    """Per-image PSNR spread like the paper's (about 1 dB between images)."""
    return np.random.default_rng(seed).normal(28.0, 1.0, n)


def noise(n=N, scale=0.2, seed=1):
    return np.random.default_rng(seed).normal(0.0, scale, n)


def rows_of(table, claim):
    return table[table["claim"] == claim].reset_index(drop=True)


def pooled(table, claim):
    rows = rows_of(table, claim)
    last = rows.iloc[-1]
    assert (last[["dataset", "solver", "task", "size"]] == "all").all()
    return last


# -- verdict rules -------------------------------------------------------------------------
def test_comparable_verdict_against_the_margin():
    assert comparable_verdict(-0.5, 0.5, 0.5) == "reproduced"  # the ends belong to [-m, m]
    assert comparable_verdict(0.1, 0.4, 0.5) == "reproduced"
    assert comparable_verdict(0.4, 0.6, 0.5) == "inconclusive"  # straddles m
    assert comparable_verdict(-0.7, 0.7, 0.5) == "inconclusive"  # too wide to tell
    assert comparable_verdict(0.6, 0.9, 0.5) == "contradicted"  # entirely above m
    assert comparable_verdict(-0.9, -0.51, 0.5) == "contradicted"  # entirely below -m
    with pytest.raises(AggregateError, match="margin"):
        comparable_verdict(0.0, 0.1, 0.0)


def test_directional_verdict_against_zero():
    assert directional_verdict(0.01, 0.3) == "reproduced"
    assert directional_verdict(-0.3, -0.01) == "contradicted"
    assert directional_verdict(-0.1, 0.2) == "inconclusive"
    assert directional_verdict(0.0, 0.2) == "inconclusive"  # 0 not excluded


def test_memory_falls_beyond_the_noise():
    assert memory_falls_verdict([800, 640, 610]) == "reproduced"
    assert memory_falls_verdict([644.0, 638.5, 636.0]) == "reproduced"  # DPS, 64 px demo
    assert memory_falls_verdict([800, 820, 800]) == "contradicted"  # smallest patch >= whole
    assert memory_falls_verdict([800, 900]) == "contradicted"
    assert memory_falls_verdict([587.0, 586.5]) == "inconclusive"  # within the 1 MiB noise
    # When tiles cannot save more than the noise of the total, the total cannot tell
    # (DiffPIR at 64 px: 1.6 MiB working whole, 0.9 with 16 px tiles).
    assert memory_falls_verdict([593.7, 593.0, 594.1], max_saving=0.7) == "inconclusive"
    assert memory_falls_verdict([593.7, 593.0, 594.1], max_saving=7.6) == "contradicted"
    assert memory_falls_verdict([800]) == "inconclusive"


def test_memory_plateau_is_a_shrinking_relative_saving():
    # Pure P^2 scaling with no floor: every halving saves 75%. No plateau, though each
    # step saves fewer MiB than the one before (the old absolute test passed it).
    assert memory_plateau_verdict([65.5, 16.4, 4.1, 1.0]) == "contradicted"
    # A fixed floor (the interpreter, the weights) plus the same P^2 term is one.
    assert memory_plateau_verdict([600 + 65.5, 600 + 16.4, 600 + 4.1, 600 + 1.0]) == "reproduced"
    assert memory_plateau_verdict([800, 640, 610, 600]) == "reproduced"  # 20%, 4.7%, 1.6%
    assert memory_plateau_verdict([800, 700, 600, 500]) == "contradicted"  # 12.5 .. 16.7%
    assert memory_plateau_verdict([800, 790, 770]) == "inconclusive"  # 1.3%, then 2.5%
    assert memory_plateau_verdict([800, 790, 770], fraction=0.02) == "contradicted"
    # A last step within the noise has shrunk to nothing: a plateau.
    assert memory_plateau_verdict([644.0, 643.8, 643.5]) == "reproduced"
    assert memory_plateau_verdict([800, 700]) == "inconclusive"  # one step: nothing to see
    with pytest.raises(AggregateError, match="plateau_fraction"):
        memory_plateau_verdict([800, 700, 650], fraction=1.5)


def test_family_verdict_is_an_intersection_union_test():
    assert family_verdict(["reproduced"] * 3) == "reproduced"
    assert family_verdict(["reproduced", "inconclusive"]) == "inconclusive"
    assert family_verdict(["reproduced", "contradicted", "inconclusive"]) == "contradicted"
    with pytest.raises(AggregateError, match="no cells"):
        family_verdict([])


def test_opposite_sign_cells_do_not_cancel_in_the_pooled_row():
    """Two cells at +0.69 and -0.71 dB, each contradicted at margin 0.5, average to about
    0: a pooled mean test called that reproduced. The family is contradicted."""
    b, e = base(), noise(scale=0.05, seed=11)
    m = pd.concat(
        [
            cell(b, solver="dps"),
            cell(b + 0.69 + e, solver="dps", size="p32"),
            cell(b, solver="diffpir"),
            cell(b - 0.71 + e, solver="diffpir", size="p32"),
        ]
    )
    t = claims_table(m, None, seed=SEED)
    b_rows = rows_of(t, "b_inference")
    assert b_rows.loc[:1, "verdict"].tolist() == ["contradicted", "contradicted"]
    row = pooled(t, "b_inference")
    assert abs(row["estimate_db"]) < 0.05 and row["ci_lo_db"] > -0.5 and row["ci_hi_db"] < 0.5
    assert row["verdict"] == "contradicted"
    assert "cells reproduced / inconclusive / contradicted: 0 / 0 / 2" in row["detail"]


def test_pooled_rows_per_inference_size():
    """N/2 within the margin, N/4 beyond it: the all-sizes mean (-0.47) lands inside the
    margin, but neither the family nor its N/4 row is reproduced; the N/2 row is."""
    b = base()
    cells = [cell(b, solver=s) for s in ("dps", "diffpir")]
    for solver, seed in (("dps", 12), ("diffpir", 13)):
        e = noise(scale=0.05, seed=seed)
        cells += [cell(b - 0.27 + e, solver=solver, size="p32")]
        cells += [cell(b - 0.67 + e, solver=solver, size="p16")]
    t = claims_table(pd.concat(cells), None, seed=SEED)
    rows = rows_of(t, "b_inference")
    keyed = {(r.solver, r.size): r for r in rows.itertuples() if r.dataset == "all"}
    assert keyed[("all", "p32")].verdict == "reproduced"
    assert keyed[("all", "p16")].verdict == "contradicted"
    assert keyed[("dps", "p32")].verdict == "reproduced"
    assert keyed[("dps", "p16")].verdict == "contradicted"
    whole_family = pooled(t, "b_inference")
    assert whole_family["estimate_db"] == pytest.approx(-0.47, abs=0.02)
    assert whole_family["ci_lo_db"] > -0.5  # the mean alone would have passed
    assert whole_family["verdict"] == "contradicted"
    # pooled rows: per solver and size, per solver, per size, then every size (last)
    order = [(r.solver, r.size) for r in rows.itertuples() if r.dataset == "all"]
    assert order == [
        ("dps", "p32"), ("dps", "p16"), ("dps", "all"),
        ("diffpir", "p32"), ("diffpir", "p16"), ("diffpir", "all"),
        ("all", "p32"), ("all", "p16"), ("all", "all"),
    ]  # fmt: skip


def test_a_family_with_an_inconclusive_cell_is_not_reproduced():
    b = base()
    wide = noise(scale=1.2, seed=14)
    m = pd.concat(
        [
            cell(b, solver="dps"),
            cell(b - 0.1, solver="dps", size="p32"),
            cell(b, solver="diffpir"),
            cell(b - 0.1 + wide - wide.mean(), solver="diffpir", size="p32"),
        ]
    )
    t = claims_table(m, None, seed=SEED)
    assert rows_of(t, "b_inference").loc[:1, "verdict"].tolist() == ["reproduced", "inconclusive"]
    assert pooled(t, "b_inference")["verdict"] == "inconclusive"


def test_directional_pooled_rows_test_the_mean_with_counts():
    """Padding: one cell clearly positive, one slightly negative and inconclusive; the
    directional pooled row tests the mean (reproduced) and counts the cells."""
    b = base()
    e1, e2 = noise(scale=0.1, seed=15), noise(scale=0.3, seed=16)
    m = pd.concat(
        [
            cell(b, solver="dps"),
            cell(b - 0.2 + e1, solver="dps", size="p32"),
            cell(b - 0.5 + e1, solver="dps", size="p32", padding="zeros"),
            cell(b, solver="diffpir"),
            cell(b - 0.2 + e2, solver="diffpir", size="p32"),
            cell(b - 0.18 + e2 + noise(scale=0.3, seed=17), solver="diffpir", size="p32",
                 padding="zeros"),
        ]
    )  # fmt: skip
    t = claims_table(m, None, seed=SEED)
    pad = rows_of(t, "padding")
    assert pad.loc[0, "verdict"] == "reproduced" and pad.loc[1, "verdict"] == "inconclusive"
    row = pooled(t, "padding")
    assert row["verdict"] == "reproduced" and "verdict on the mean" in row["detail"]
    assert "1 / 1 / 0" in row["detail"]


# -- the dB claims -------------------------------------------------------------------------
def test_constant_difference_gives_exact_estimate_and_verdicts():
    """Patch-trained = whole-trained + 0.3 dB on every image: estimate 0.3, a zero-width
    interval, reproduced at margin 0.5 and contradicted at margin 0.2."""
    b = base()
    m = pd.concat([cell(b, prior="whole"), cell(b + 0.3, prior="patch")])
    for margin, verdict in ((0.5, "reproduced"), (0.2, "contradicted")):
        t = claims_table(m, None, seed=SEED, margin_db=margin)
        assert list(t.columns) == CLAIMS_COLUMNS
        a = rows_of(t, "a_training")
        assert len(a) == 2  # the cell, then the pooled row
        row = a.iloc[0]
        assert (row["dataset"], row["solver"], row["task"], row["size"]) == (
            "knee",
            "dps",
            "denoise",
            "whole",
        )
        assert row["prior"] == "patch-whole" and row["n_images"] == N
        assert row[["estimate_db", "ci_lo_db", "ci_hi_db"]].tolist() == pytest.approx([0.3] * 3)
        assert row["verdict"] == verdict
        assert pooled(t, "a_training")["estimate_db"] == pytest.approx(0.3)
        assert pooled(t, "a_training")["verdict"] == verdict


def test_interval_straddling_the_margin_is_inconclusive():
    """Patch inference 0.5 dB below whole with per-image scatter: the interval contains
    -0.5, neither inside nor outside [-0.5, 0.5]."""
    b, d = base(), noise(scale=0.3)
    d = d - d.mean() - 0.5
    m = pd.concat([cell(b), cell(b + d, size="p32")])
    t = claims_table(m, None, seed=SEED, margin_db=0.5)
    row = rows_of(t, "b_inference").iloc[0]
    assert row["estimate_db"] == pytest.approx(-0.5)
    assert row["ci_lo_db"] < -0.5 < row["ci_hi_db"]
    assert row["verdict"] == "inconclusive"
    assert (row["prior"], row["size"]) == ("whole", "p32")
    # the per-cell interval is aggregate's bootstrap of the paired differences, seeded
    assert (row["estimate_db"], row["ci_lo_db"], row["ci_hi_db"]) == bootstrap_mean_ci(
        (b + d) - b, SEED
    )


def test_directional_claims_contradicted_and_reproduced():
    """Zeros beat reflection by 0.2 dB (padding contradicted); the patch-trained prior
    loses 0.3 dB less than the whole-trained one under patches (c reproduced)."""
    b, e = base(), noise(scale=0.1, seed=3)
    m = pd.concat(
        [
            cell(b, prior="whole"),
            cell(b - 0.5 + e, prior="whole", size="p32"),
            cell(b - 0.3 + e, prior="whole", size="p32", padding="zeros"),
            cell(b, prior="patch"),
            cell(b - 0.2 + noise(scale=0.1, seed=4), prior="patch", size="p32"),
        ]
    )
    t = claims_table(m, None, seed=SEED)
    pad = rows_of(t, "padding")
    assert len(pad) == 2  # only the whole prior has a zeros cell; then the pooled row
    assert pad.loc[0, "estimate_db"] == pytest.approx(-0.2)
    assert pad.loc[0, "ci_hi_db"] < 0 and pad.loc[0, "verdict"] == "contradicted"
    assert pooled(t, "padding")["verdict"] == "contradicted"
    c = rows_of(t, "c_patch_trained_resilient")
    assert c.loc[0, "prior"] == "patch-whole" and c.loc[0, "size"] == "p32"
    expected = (-0.2 + noise(scale=0.1, seed=4)) - (-0.5 + e)
    assert c.loc[0, "estimate_db"] == pytest.approx(expected.mean())
    assert c.loc[0, "ci_lo_db"] > 0 and c.loc[0, "verdict"] == "reproduced"
    # the pooled rows of claims pooled over priors say so
    assert pooled(t, "b_inference")["prior"] == "all"
    assert pooled(t, "c_patch_trained_resilient")["prior"] == "patch-whole"


def test_pooled_interval_moves_images_together_across_cells():
    """Two cells with the same per-image differences (up to a constant) carry no more
    information than one: the pooled interval must be as wide as one cell's, not
    1/sqrt(2) of it as a bootstrap treating the cells as independent would give. Two
    cells with independent differences do shrink it by about sqrt(2)."""
    n, b = 60, base(60)
    d = noise(60, scale=0.4, seed=5)
    _, lo1, hi1 = bootstrap_mean_ci(d, SEED)
    width1 = hi1 - lo1

    same = pd.concat(
        [
            cell(b, solver="dps"),
            cell(b + d, solver="dps", size="p32"),
            cell(b, solver="diffpir"),
            cell(b + d + 0.2, solver="diffpir", size="p32"),
        ]
    )
    row = pooled(claims_table(same, None, seed=SEED), "b_inference")
    assert row["estimate_db"] == pytest.approx(d.mean() + 0.1)  # equal weight per cell
    assert row["n_images"] == n
    assert 0.9 < (row["ci_hi_db"] - row["ci_lo_db"]) / width1 < 1.1

    d2 = noise(60, scale=0.4, seed=6)
    d2 = (d2 - d2.mean()) * d.std() / d2.std() + d.mean()  # same spread, independent
    indep = pd.concat(
        [
            cell(b, solver="dps"),
            cell(b + d, solver="dps", size="p32"),
            cell(b, solver="diffpir"),
            cell(b + d2, solver="diffpir", size="p32"),
        ]
    )
    row = pooled(claims_table(indep, None, seed=SEED), "b_inference")
    assert 0.6 < (row["ci_hi_db"] - row["ci_lo_db"]) / width1 < 0.82


def test_cluster_bootstrap_resamples_each_dataset_separately():
    """Images of different datasets are different images, even with the same index."""
    knee = pd.Series(noise(40, 0.5, 8), index=range(40))
    brain = pd.Series(noise(40, 0.5, 9) + 1.0, index=range(40))
    est, lo, hi = cluster_bootstrap_mean([("knee", knee), ("brain", brain)], SEED)
    assert est == pytest.approx((knee.mean() + brain.mean()) / 2)
    assert lo < est < hi
    # Constant values give the constant exactly, like aggregate.bootstrap_mean_ci.
    flat = pd.Series(0.25, index=range(5))
    assert cluster_bootstrap_mean([("knee", flat), ("knee", flat)], SEED) == (0.25, 0.25, 0.25)
    with pytest.raises(AggregateError, match="different images"):
        cluster_bootstrap_mean([("knee", knee), ("knee", knee.iloc[:-1])], SEED)


def test_mismatched_images_raise_naming_both_cells():
    b = base()
    m = pd.concat([cell(b), cell(b[:-1], size="p32", images=range(1, N))])
    with pytest.raises(AggregateError) as err:
        claims_table(m, None, seed=SEED)
    text = str(err.value)
    assert "knee/whole/dps/denoise/p32-reflect" in text
    assert "knee/whole/dps/denoise/whole-none" in text
    assert "[0]" in text  # image 0 is in only one of them


def test_missing_comparisons_give_one_not_tested_row_each():
    """A grid with one prior and no zero padding cannot test (a), (c) or padding; each
    says so in one pooled row rather than disappearing from the table."""
    b = base()
    m = pd.concat(
        [
            cell(b, prior="patch"),
            cell(b - 0.1, prior="patch", size="p32"),
            cell(b, prior="baseline", solver="baseline", size="measurement"),
        ]
    )
    t = claims_table(m, None, seed=SEED)
    assert list(pd.unique(t["claim"])) == [
        "a_training",
        "b_inference",
        "c_patch_trained_resilient",
        "padding",
        "d_memory_falls",
        "d_memory_plateaus",
    ]
    for claim in ("a_training", "c_patch_trained_resilient", "padding", "d_memory_falls"):
        (row,) = rows_of(t, claim).itertuples()
        assert row.verdict == "inconclusive" and row.detail.startswith("not tested")
        assert math.isnan(row.estimate_db) and row.n_images == 0
    assert len(rows_of(t, "b_inference")) == 2  # the baseline is no prior


# -- memory --------------------------------------------------------------------------------
def profile_rows(solver, totals: dict, side=64, resident=500.0) -> pd.DataFrame:
    """Profile rows: whole, each patch size one tile per call and all tiles per call
    (the latter must be ignored), plus an image-size sweep row (ignored too); working
    memory is the total above ``resident``."""
    rows = [("whole", "none", side, side, "inference_size", totals["whole"])]
    for p, t in totals.items():
        if p != "whole":
            rows += [("patch", "1", p, side, "inference_size", t)]
            rows += [("patch", "all", p, side, "inference_size", 10 * t)]
    rows += [("whole", "none", 4 * side, 4 * side, "image_size", 1.0)]
    columns = "mode patch_batch inference_size image_size sweep peak_total_mib".split()
    df = pd.DataFrame(rows, columns=columns)
    working = df["peak_total_mib"] - resident
    return df.assign(solver=solver, peak_working_mib=working, seconds_per_call=0.1)


def test_memory_rows_fall_and_plateau(tmp_path):
    plateau = profile_rows("diffpir", {"whole": 812, 32: 640, 16: 610})
    steady = profile_rows("dps", {"whole": 812, 32: 640, 16: 468})
    paths = []
    for name, df in (("diffpir", plateau), ("dps", steady)):
        paths.append(tmp_path / f"{name}.csv")
        df.to_csv(paths[-1], index=False)
    m = pd.concat([cell(base()), cell(base(), size="p32")])
    t = claims_table(m, read_profiles(paths), seed=SEED, profile_prior="patch")
    falls, plateaus = rows_of(t, "d_memory_falls"), rows_of(t, "d_memory_plateaus")
    assert falls["solver"].tolist() == ["diffpir", "dps", "all"]
    assert falls["verdict"].tolist() == ["reproduced"] * 3
    # steady: -21%, then -27%: the last step still saves more than 10%
    assert plateaus["verdict"].tolist() == ["reproduced", "contradicted", "contradicted"]
    assert falls.loc[0, "dataset"] == "profile N=64" and falls.loc[0, "task"] == "denoise"
    assert falls.loc[0, "prior"] == "patch" and falls.loc[0, "size"] == "all"
    assert falls.loc[0, "detail"].startswith(
        "total MiB, one tile per call: whole 812, p32 640, p16 610"
    )
    assert "whole->p32 +21.2%, p32->p16 +4.7%" in plateaus.loc[0, "detail"]
    assert "source: the grid's profiles" in plateaus.loc[0, "detail"]
    assert t[t["claim"].str.startswith("d_")][["estimate_db", "ci_lo_db"]].isna().all().all()

    flat = profile_rows("dps", {"whole": 812, 32: 830, 16: 815})
    t = claims_table(m, pd.concat([plateau, flat]), seed=SEED)
    assert rows_of(t, "d_memory_falls")["verdict"].tolist() == [
        "reproduced",
        "contradicted",
        "contradicted",  # a solver without any saving contradicts the general claim
    ]

    # DiffPIR at 64 px on the demo: 16 px tiles save 0.69 MiB of the whole image's 1.63
    # MiB working memory, less than the noise of the total, which reads +0.4 MiB; tiles
    # that save nothing (working memory too) with the same totals contradict.
    totals = {"whole": 593.7, 32: 593.0, 16: 594.1}
    small = profile_rows("diffpir", totals)
    small["peak_working_mib"] = small["inference_size"].map({64: 1.63, 32: 1.06, 16: 0.94})
    none = profile_rows("dps", totals)
    none["peak_working_mib"] = 1.63
    mem = rows_of(claims_table(m, pd.concat([small, none]), seed=SEED), "d_memory_falls")
    assert mem["verdict"].tolist() == ["inconclusive", "contradicted", "contradicted"]
    assert "the smallest tile saves 0.69 MiB of working memory" in mem.loc[0, "detail"]


def paper_scale_rows(solver, totals: dict, side=320) -> pd.DataFrame:
    """Paper-scale profile rows: whole, then per patch size the three micro-batch modes
    (only ``one`` counts), and a row not measured (over the memory limit)."""
    from patchpnp.evaluation.profile_table import PAPER_SCALE_COLUMNS

    rows = [dict(patch_batch_mode="whole", inference_size=side, peak_total_mib=totals["whole"])]
    for p, t in totals.items():
        if p != "whole":
            rows += [dict(patch_batch_mode="one", inference_size=p, peak_total_mib=t)]
            rows += [dict(patch_batch_mode="all", inference_size=p, peak_total_mib=5 * t)]
            rows += [dict(patch_batch_mode="auto", inference_size=p, peak_total_mib=2 * t)]
    df = pd.DataFrame(rows).assign(solver=solver, image_size=side, status="measured")
    df["peak_working_mib"] = df["peak_total_mib"] - 500
    df = pd.concat([df, df.iloc[:1].assign(image_size=4096, status="over the memory limit")])
    return df.reindex(columns=PAPER_SCALE_COLUMNS)


def test_memory_claim_prefers_the_paper_scale_profile(tmp_path):
    """With a paper-scale profile, claim (d) is judged on it (whole, 128, 64, 32 at the
    paper's size) and says so; the grid's own profile is then not used."""
    grid = profile_rows("dps", {"whole": 812, 32: 830, 16: 815})  # would contradict
    paper = pd.concat(
        [
            paper_scale_rows("diffpir", {"whole": 1618, 128: 1200, 64: 1150, 32: 1140}),
            paper_scale_rows("dps", {"whole": 3704, 128: 2100, 64: 2000, 32: 1990}),
        ]
    )
    path = tmp_path / "paper_scale.csv"
    paper.to_csv(path, index=False)
    m = pd.concat([cell(base()), cell(base(), size="p32")])
    from patchpnp.evaluation.claims import read_paper_scale

    t = claims_table(m, grid, seed=SEED, paper_scale=read_paper_scale(path))
    for claim in ("d_memory_falls", "d_memory_plateaus"):
        rows = rows_of(t, claim)
        assert rows["dataset"].tolist() == ["paper-scale N=320"] * 2 + ["all"]
        assert rows["verdict"].tolist() == ["reproduced"] * 3
        assert all("source: the paper-scale profile" in d for d in rows["detail"][:2])
    detail = rows_of(t, "d_memory_falls").loc[0, "detail"]
    assert "whole 1618, p128 1200, p64 1150, p32 1140" in detail  # one tile per call
    # no paper-scale file: the grid's profiles decide
    t = claims_table(m, grid, seed=SEED, paper_scale=None)
    assert pooled(t, "d_memory_falls")["verdict"] == "contradicted"


def test_read_profiles_wants_the_total_memory_column(tmp_path):
    path = tmp_path / "dps.csv"
    profile_rows("dps", {"whole": 8, 16: 4}).rename(columns={"peak_total_mib": "peak_mib"}).to_csv(
        path, index=False
    )
    with pytest.raises(AggregateError, match="peak_total_mib"):
        read_profiles([path])
    with pytest.raises(AggregateError, match="not found"):
        read_profiles([tmp_path / "missing.csv"])


# -- files and the command -----------------------------------------------------------------
def write_metrics(path, psnr, *, solver, task, size, padding):
    """A metrics CSV as ``patchpnp infer`` writes it: every column aggregate requires."""
    n = len(psnr)
    table = pd.DataFrame({c: [0.5] * n for c in REQUIRED})
    table = table.assign(
        image=range(n),
        psnr=psnr,
        task=task,
        solver=solver,
        nfe=10,
        tiles_evaluated=4,
        size=size[1:] if size != "whole" else "whole",
        padding=padding,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


def test_tables_command_writes_the_claims(tmp_path):
    b = base(8)
    root = tmp_path / "results" / "metrics" / "knee"
    paths = []
    for prior, offset in (("whole", 0.0), ("patch", 0.1)):
        for size, padding, shift in (("whole", "none", 0.0), ("p32", "reflect", -0.2)):
            path = root / prior / "dps" / "denoise" / f"{size}-{padding}.csv"
            psnr = b + offset + (shift if prior == "whole" else shift / 2)
            write_metrics(
                path,
                psnr,
                solver="dps",
                task="denoise",
                size=size,
                padding=padding,
            )
            paths.append(path)
    profile = tmp_path / "results" / "profile" / "dps.csv"
    profile.parent.mkdir(parents=True)
    profile_rows("dps", {"whole": 812, 32: 640, 16: 610}).to_csv(profile, index=False)
    out = tmp_path / "tables"
    argv = [
        "tables",
        *map(str, paths),
        "--out-dir",
        str(out),
        "--seed",
        "3",
        "--image-shape",
        "64",
        "64",
        "--profiles",
        str(profile),
        "--margin-db",
        "0.25",
        "--profile-prior",
        "patch",
        "--bars",
        "0.15",
        "0.05",
    ]
    assert main(argv) == 0
    t = pd.read_csv(out / "claims.csv")
    assert list(t.columns) == CLAIMS_COLUMNS
    a = pooled(t, "a_training")
    assert a["estimate_db"] == pytest.approx(0.1) and a["verdict"] == "reproduced"
    c = pooled(t, "c_patch_trained_resilient")
    assert c["estimate_db"] == pytest.approx(0.1) and c["verdict"] == "reproduced"
    assert pooled(t, "d_memory_falls")["verdict"] == "reproduced"
    assert pooled(t, "d_memory_plateaus")["verdict"] == "reproduced"
    md = (out / "claims.md").read_text()
    assert "[-0.25, 0.25] dB" in md
    assert ["a_training", "knee", "patch-whole"] in [r[:3] for r in md_rows(md)]
    assert "+0.100" in md
    assert (out / "table1.csv").is_file()
    check = pd.read_csv(out / "resolution.csv")
    assert list(check["check"]) == ["cell", "cell", "pooled", "pooled", "pooled", "pooled"]
    # constant differences: zero-width intervals; padding was not run
    assert list(check["holds"]) == [True, True, True, True, True, False]
    assert "Not every bar holds." in (out / "resolution.md").read_text()

    # written atomically and computed first: a failing claim leaves no claims behind
    for f in out.iterdir():
        f.unlink()
    bad = root / "whole" / "dps" / "denoise" / "whole-none.csv"
    write_metrics(bad, b[:-1], solver="dps", task="denoise", size="whole", padding="reflect")
    assert main(argv) == 2
    assert not any(out.iterdir())


def test_write_claims_formats_missing_numbers_as_blank(tmp_path):
    m = pd.concat([cell(base()), cell(base() - 0.1, size="p32")])
    t = claims_table(m, None, seed=SEED)
    written = write_claims(t, tmp_path, 0.5)
    md = written["claims.md"].read_text()
    row = ["d_memory_falls", "all", "n/a", "all", "all", "all", "0", "", "", "inconclusive"]
    assert row in [r[:10] for r in md_rows(md)]
    assert "-0.100" in md
