"""snakemake generalization's analysis (patchpnp.evaluation.generalization) on synthetic
metrics of known answer: the table's paired difference, the data-efficiency claim (e), the
shift claim (f) as a difference of differences, noise that decides nothing, the figure,
the command end to end and the input it refuses."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from patchpnp import layout
from patchpnp.cli import main
from patchpnp.evaluation.aggregate import AggregateError
from patchpnp.evaluation.claims import cluster_bootstrap_linear
from patchpnp.evaluation.generalization import (
    GENERALIZATION_CLAIM_COLUMNS,
    GENERALIZATION_COLUMNS,
    OWN_ROW,
    generalization_claims,
    generalization_figure,
    generalization_table,
    generalization_table_command,
    parse_group,
)
from test_claims import write_metrics

SEED = 3
SIZES = (("whole", "none"), ("p32", "reflect"))


def level(n: int, seed: int = 0) -> np.ndarray:
    """Per-image PSNRs that are multiples of 1/8 dB, so differences are exact."""
    return 26 + np.random.default_rng(seed).integers(0, 64, n) / 8


def write_group(root, domain, n_train, slices, shift, cells: dict) -> list[str]:
    """The ``--group`` tokens of one (domain, n_train) whose metrics CSVs ``cells`` gives:
    ``{(dataset, prior): psnr per image}``, every solver, task and size alike."""
    paths = []
    for (dataset, prior), psnr in cells.items():
        for size, padding in SIZES:
            path = root / layout.GENERALIZATION_METRICS.format(
                trained_on=domain, n_train=n_train, dataset=dataset, prior=prior,
                solver="dps", task="denoise", size=size, padding=padding,
            )  # fmt: skip
            write_metrics(path, psnr, solver="dps", task="denoise", size=size, padding=padding)
            paths.append(str(path))
    return [domain, str(n_train), str(slices), shift, *paths]


def pair(mni_d, flair_d, n=8, seed=0) -> dict:
    """Both priors on an in-distribution (mni) and a shifted (flair) dataset: the patch
    prior's PSNR is the whole prior's plus ``*_d`` per image."""
    mni, flair = level(n, seed), level(n, seed + 1) - 4
    return {
        ("mni", "whole"): mni, ("mni", "patch"): mni + mni_d,
        ("flair", "whole"): flair, ("flair", "patch"): flair + flair_d,
    }  # fmt: skip


def rows(claims: pd.DataFrame, claim: str, **match) -> pd.DataFrame:
    sel = claims["claim"] == claim
    for key, value in match.items():
        sel &= claims[key] == value
    return claims[sel].reset_index(drop=True)


def test_table_pairs_the_priors_per_cell_and_orders_n_train(tmp_path):
    d = np.array([0.25, -0.5, 1.0, 0.125, 0.0, 0.75, -0.25, 0.5])
    groups = [
        write_group(tmp_path, "mni_t1", "all", 48, "flair", pair(d + 1, -d)),
        write_group(tmp_path, "mni_t1", 24, 24, "flair", pair(d, 0.0)),
    ]
    table = generalization_table(groups, seed=SEED)
    assert list(table.columns) == GENERALIZATION_COLUMNS
    assert len(table) == 2 * 2 * 2 * 2  # n_train x dataset x prior x size
    # numeric n_train first, "all" last; in distribution before shifted
    assert list(dict.fromkeys(table["n_train"])) == ["24", "all"]
    assert list(table["domain"][:4]) == ["in_distribution"] * 4
    assert list(table["n_train_slices"][:8]) == [24] * 8
    cell = table[(table["n_train"] == "24") & (table["dataset"] == "mni")]
    cell = cell[cell["size"] == "p32"]
    assert list(cell["prior"]) == ["whole", "patch"]
    diff = cell["dpsnr_patch_minus_whole_prior"]
    assert diff.iloc[0] == diff.iloc[1] == d.mean()  # paired, the same on both rows
    assert (cell["ci_lo"] < d.mean()).all() and (cell["ci_hi"] > d.mean()).all()
    shifted = table[(table["n_train"] == "all") & (table["domain"] == "shifted")]
    assert set(shifted["dataset"]) == {"flair"}
    assert shifted["dpsnr_patch_minus_whole_prior"].to_numpy() == pytest.approx(-d.mean())


def test_patch_beats_whole_at_the_smallest_n_train_exactly(tmp_path):
    rng = np.random.default_rng(4)
    groups = [
        write_group(tmp_path, "mni_t1", 8, 8, "flair", pair(1.0, 1.0)),
        write_group(tmp_path, "mni_t1", "all", 40, "flair", pair(rng.normal(0, 0.3, 8), 0.0)),
    ]
    claims = generalization_claims(groups, seed=SEED)
    assert list(claims.columns) == GENERALIZATION_CLAIM_COLUMNS
    e = rows(claims, "e_data_efficiency")
    # two cells per n_train (whole and p32), its pooled row, then the pooled row over both
    assert list(e["n_train"]) == ["8", "8", "8", "all", "all", "all", "every"]
    own = e.iloc[2]
    assert own["detail"].startswith(OWN_ROW) and own["dataset"] == "all"
    assert (own["estimate_db"], own["ci_lo_db"], own["ci_hi_db"]) == (1.0, 1.0, 1.0)
    assert set(e["verdict"][:3]) == {"reproduced"}
    assert not e["detail"][3:].str.startswith(OWN_ROW).any()
    assert e["prior"].eq("patch-whole").all() and e["trained_on"].eq("mni_t1").all()


def test_shift_claim_is_a_difference_of_differences(tmp_path):
    # n_train 8: shifted d = +0.5, in distribution d = -0.5: the patch prior loses 1 dB less.
    # n_train 16: two in-distribution datasets of 8 and 24 images, each image weighted alike.
    more = {("t2", "whole"): level(24, 5), ("t2", "patch"): level(24, 5) - 1.0}
    groups = [
        write_group(tmp_path, "mni_t1", 8, 16, "flair", pair(-0.5, 0.5)),
        write_group(tmp_path, "mni_t1", 16, 32, "flair", pair(-0.5, 0.5) | more),
    ]
    f = rows(generalization_claims(groups, seed=SEED), "f_shift")
    assert list(f["n_train"]) == ["8", "8", "8", "16", "16", "16", "every"]
    assert list(f["dataset"][:2]) == ["flair", "flair"] and f["dataset"][2] == "all"
    assert f["estimate_db"][:3].tolist() == [1.0, 1.0, 1.0]
    assert set(f["verdict"]) == {"reproduced"}
    # 0.5 - (8 x -0.5 + 24 x -1.0) / 32
    assert f["estimate_db"][3] == 0.5 + 28 / 32
    assert f["n_images"][3] == 8 + 8 + 24
    assert "in distribution (mni, t2)" in f["detail"][3]


def test_noise_alone_is_inconclusive(tmp_path):
    rng = np.random.default_rng(9)

    def centred(n):
        x = rng.normal(0, 0.5, n)
        return x - x.mean()

    groups = [write_group(tmp_path, "mni_t1", 8, 8, "flair", pair(centred(8), centred(8)))]
    claims = generalization_claims(groups, seed=SEED)
    assert set(claims["verdict"]) == {"inconclusive"}
    assert (claims["ci_lo_db"] < 0).all() and (claims["ci_hi_db"] > 0).all()


def test_a_claim_without_its_cells_says_what_is_missing(tmp_path):
    no_shift = {k: v for k, v in pair(0.5, 0.5).items() if k[0] == "mni"}
    claims = generalization_claims(
        [write_group(tmp_path, "knee", 8, 8, "brain", no_shift)], seed=SEED
    )
    f = rows(claims, "f_shift")
    assert len(f) == 1 and f["verdict"][0] == "inconclusive" and f["n_train"][0] == "every"
    assert f["detail"][0].startswith("not tested") and "'brain'" in f["detail"][0]
    assert rows(claims, "e_data_efficiency")["verdict"].iloc[-1] == "reproduced"
    one_prior = {k: v for k, v in pair(0.5, 0.5).items() if k[1] == "whole"}
    claims = generalization_claims(
        [write_group(tmp_path / "b", "knee", 8, 8, "brain", one_prior)], seed=SEED
    )
    assert len(claims) == 2 and claims["detail"].str.startswith("not tested").all()


def test_linear_bootstrap_resamples_datasets_independently():
    rng = np.random.default_rng(2)
    a = pd.Series(rng.normal(0, 1, 40))
    b = pd.Series(rng.normal(0, 1, 40))
    # one dataset: the two terms share every draw, so their difference never moves
    assert cluster_bootstrap_linear([("x", a, 1.0), ("x", a, -1.0)], SEED) == (0.0, 0.0, 0.0)
    est, lo, hi = cluster_bootstrap_linear([("x", a, 1.0), ("y", b, -1.0)], SEED)
    assert est == pytest.approx(a.mean() - b.mean()) and lo < est < hi
    one = cluster_bootstrap_linear([("x", a, 1.0)], SEED)
    # independent sets: the variances add, the width grows by about sqrt(2)
    assert 1.25 < (hi - lo) / (one[2] - one[1]) < 1.6
    with pytest.raises(AggregateError, match="different images"):
        cluster_bootstrap_linear([("x", a, 1.0), ("x", a.iloc[1:], 1.0)], SEED)


def test_figure_writes_png_and_pdf(tmp_path):
    groups = [
        write_group(tmp_path, "mni_t1", 8, 8, "flair", pair(0.5, 0.25)),
        write_group(tmp_path, "mni_t1", "all", 32, "flair", pair(0.0, 0.5)),
    ]
    paths = generalization_figure(generalization_table(groups, seed=SEED), tmp_path / "fig")
    assert [p.name for p in paths] == ["fig.png", "fig.pdf"]
    assert all(p.stat().st_size > 0 for p in paths)


def test_the_command_end_to_end(tmp_path, capsys):
    groups = [
        write_group(tmp_path, "mni_t1", 8, 8, "flair", pair(1.0, 1.5)),
        write_group(tmp_path, "mni_t1", "all", 32, "flair", pair(0.5, 0.5)),
    ]
    out = tmp_path / "out"
    argv = ["generalization-table"]
    for g in groups:
        argv += ["--group", *g]
    argv += ["--table", str(out / "t"), "--claims", str(out / "c"), "--figure", str(out / "f")]
    assert main([*argv, "--seed", str(SEED)]) == 0
    summary = capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "c.csv", "c.md", "f.pdf", "f.png", "t.csv", "t.md"
    ]  # fmt: skip
    table = pd.read_csv(out / "t.csv", dtype={"n_train": str})
    assert list(table.columns) == GENERALIZATION_COLUMNS and len(table) == 16
    claims = pd.read_csv(out / "c.csv", dtype={"n_train": str})
    assert list(claims.columns) == GENERALIZATION_CLAIM_COLUMNS
    f = rows(claims, "f_shift", n_train="8")
    assert f["estimate_db"].iloc[-1] == 0.5 and f["verdict"].iloc[-1] == "reproduced"
    md = (out / "c.md").read_text()
    assert "half-width (dB)" in md and "difference of differences" in md
    assert "+1.000" in md and "every" in md
    assert "same keyed" in (out / "t.md").read_text()
    # the summary: pooled rows only, the claim's own row first
    lines = [[c.strip() for c in line.split("|")[1:-1]] for line in summary.splitlines()]
    lines = [cells for cells in lines if cells and cells[0] in ("e_data_efficiency", "f_shift")]
    assert lines[0][:3] == ["e_data_efficiency", "mni_t1", "8"]
    assert len(lines) == 6  # e and f: per n_train and over every n_train


@pytest.mark.parametrize(
    "tokens, message",
    [
        (["mni_t1", "8", "8", "flair"], "no metrics files"),
        (["mni_t1", "0", "8", "flair", "m.csv"], "N_TRAIN must be .* or 'all', got '0'"),
        (["mni_t1", "few", "8", "flair", "m.csv"], "N_TRAIN .*'few'"),
        (["mni_t1", "8", "many", "flair", "m.csv"], "N_TRAIN_SLICES.*'many'"),
    ],
)
def test_bad_groups_are_refused_naming_the_value(tokens, message):
    with pytest.raises(AggregateError, match=message):
        parse_group(tokens)


def test_bad_inputs_are_refused(tmp_path):
    group = write_group(tmp_path, "mni_t1", 8, 8, "flair", pair(0.5, 0.5))
    kw = dict(table=str(tmp_path / "t"), claims=str(tmp_path / "c"), figure=str(tmp_path / "f"))
    with pytest.raises(AggregateError, match=r"'pach' \(--patch-prior\)"):
        generalization_table_command([group], patch_prior="pach", **kw)
    other = [*group[:2], "9", *group[3:]]
    with pytest.raises(AggregateError, match="given twice"):
        generalization_table_command([group, other], **kw)
    assert not any(tmp_path.glob("t.*"))
    assert main(["generalization-table", "--group", "mni_t1", "8", "8", "flair", *kw_argv(kw)]) == 2


def kw_argv(kw: dict) -> list[str]:
    return [x for key, value in kw.items() for x in (f"--{key}", value)]


def test_images_to_decide_scales_the_interval_as_one_over_sqrt_n():
    from patchpnp.evaluation.generalization import images_to_decide

    # half-width 0.2 dB on 12 images at an estimate of 0.1 dB: 4x the images halve it
    assert images_to_decide(12, 0.2, 0.1) == 48
    assert images_to_decide(12, 0.2, -0.1) == 48
    assert np.isnan(images_to_decide(12, 0.0, 0.1)) and np.isnan(images_to_decide(12, 0.2, 0))
