"""snakemake padis: its plan, its config checks, its table and claims, and a tiny run."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from patchpnp import layout
from patchpnp.evaluation.padis_table import padis_claims, padis_table
from patchpnp.formats import read_split
from patchpnp.pipeline.config import ConfigError, validate_config
from patchpnp.pipeline.plan import PadisPlan, Plan
from workflow_runner import tiny_demo_config


def _plan(config=None) -> PadisPlan:
    return PadisPlan(Plan(validate_config(config or tiny_demo_config())))


def test_plan_pairs_every_prior_solver_task_and_size():
    padis = _plan()
    cells = padis.cells()
    # 3 priors x 2 solvers x 2 tasks x (whole, 4-px tiles)
    assert len(cells) == 24
    assert {c.dataset for c in cells if c.task == "ct20"} == {"ct_ellipses_synthetic"}
    assert {c.dataset for c in cells if c.task == "deblur"} == {"mni_t1_singlecoil"}
    assert {c.padding for c in cells if c.size != "whole"} == {"zeros"}
    assert padis.domain("ct20") == "ct" and padis.domain("deblur") == "mri"
    # The MRI domain reuses the grid's whole and patch priors; everything else is its own.
    assert padis.prior_file("mri", "patch") == layout.PRIOR.format(prior="patch")
    assert padis.prior_file("mri", "position") == layout.PADIS_PRIOR.format(
        domain="mri", prior="position"
    )
    assert padis.prior_file("ct", "whole") == layout.PADIS_PRIOR.format(domain="ct", prior="whole")
    assert padis.trained_priors() == [
        {"domain": "mri", "prior": "position"},
        {"domain": "ct", "prior": "whole"},
        {"domain": "ct", "prior": "patch"},
        {"domain": "ct", "prior": "position"},
    ]
    assert len(padis.metrics_files()) == 24 + 2  # cells, then one baseline per task
    assert padis.solver_params("padis_dps", "ct20") == {
        "steps": 2,
        "inner": 2,
        "zeta": 1.0,
        "sigma_start": 0.3,
    }


def _tuned_config() -> dict:
    config = tiny_demo_config()
    config["padis"]["tune"] = {"per_decade": 2, "decades": 0.5}
    config["padis"]["ct"]["n_tune"] = 2
    return config


def test_tuning_gives_every_cell_its_prior_solver_and_task_table():
    assert _plan().tune_jobs() == [] and _plan().tuned_input("d", "p", "s", "t") == []
    padis = _plan(_tuned_config())
    jobs = padis.tune_jobs()
    assert len(jobs) == 3 * 2 * 2  # priors x solvers x tasks: the sizes share a table
    for cell in padis.cells():
        (table,) = padis.tuned_input(cell.dataset, cell.prior, cell.solver, cell.task)
        assert table in padis.tune_files()
        assert f"/{cell.prior}/{cell.solver}/{cell.task}.csv" in table
    # each domain tunes on its own tuning images
    assert padis.tune_data("ct_ellipses_synthetic") == padis.ct_split_file("tune")
    assert padis.tune_data("mni_t1_singlecoil") == layout.SPLIT.format(
        dataset="mni_t1_singlecoil", split="tune"
    )
    assert "tune" in padis.ct_splits()
    assert padis.tune_grid() == "--per-decade 2 --decades 0.5"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c["padis"]["ct"].update(n_tune=0), "'padis.ct.n_tune': padis.tune tunes"),
        (
            lambda c: c["data"]["datasets"]["mni_t1_singlecoil"].update(n_tune=0),
            "'data.datasets.mni_t1_singlecoil.n_tune': padis.tune tunes the MRI",
        ),
        (lambda c: c["padis"]["tune"].update(decades=0), "padis.tune.decades"),
    ],
)
def test_tuning_without_tuning_images_is_refused(change, message):
    config = _tuned_config()
    change(config)
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_ct_splits_are_disjoint_phantom_ranges():
    padis = _plan()
    opts = {s: padis.ct_split_options(s).split() for s in ("train", "eval")}

    def value(split, flag):
        return int(opts[split][opts[split].index(flag) + 1])

    assert value("train", "--first-image") == 0 and value("train", "--images") == 6
    assert value("eval", "--first-image") == 6 and value("eval", "--images") == 2
    assert padis.synthetic_datasets() == "ct_ellipses_synthetic"
    assert "synthetic" in padis.figure_title("ct20")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["priors"].append("nonesuch"), "'nonesuch' is neither a key of priors"),
        (lambda p: p.update(sizes=["whole", 8]), "not fit 16-px images|beyond the position"),
        (lambda p: p["position_prior"].update(pad=2), "margin of 4 px, beyond .* canvas pad 2"),
        (lambda p: p.update(n_eval=5), "'padis.n_eval': 5 images"),
        (lambda p: p["tasks"].update(x={"operator": "xray", "sigma_n": 0.1}), "unknown operator"),
        (lambda p: p["tasks"]["ct20"].update(kernel="box"), r"\['kernel'\] do not apply to ct"),
        (lambda p: p["solvers"]["dps"]["tasks"].pop("ct20"), "no parameters for task 'ct20'"),
        (lambda p: p["solvers"]["padis_dps"]["tasks"]["ct20"].pop("zeta"), "needs \\['zeta'\\]"),
    ],
)
def test_bad_padis_settings_are_refused_naming_the_key(change, message):
    config = tiny_demo_config()
    change(config["padis"])
    with pytest.raises(ConfigError, match=message):
        validate_config(copy.deepcopy(config))


def _metrics(effects: dict, n: int = 12, seed: int = 0) -> pd.DataFrame:
    """Per-image PSNRs of a padis grid: a shared per-image level plus each cell's effect."""
    rng = np.random.default_rng(seed)
    level = 25 + rng.normal(0, 2, n)
    rows = []
    for (prior, size, padding), effect in effects.items():
        for task in ("deblur", "ct20"):
            for i in range(n):
                rows.append(
                    dict(dataset="ds", task=task, prior=prior, solver="padis_dps", size=size,
                         padding=padding, image=i, ssim=0.8,
                         psnr=level[i] + effect + rng.normal(0, 0.05))
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_claims_judge_paired_differences_per_task_and_pooled():
    df = _metrics(
        {
            ("whole", "whole", "none"): 0.0,
            ("patch", "p4", "zeros"): -0.6,
            ("position", "p4", "zeros"): 0.3,
            ("whole", "p4", "zeros"): -1.0,
        }
    )
    claims = padis_claims(df, seed=1)
    g = claims[claims["claim"] == "g_position"]
    # position beats patch by 0.9 dB in every cell: reproduced per cell, task and pooled
    assert set(g["verdict"]) == {"reproduced"}
    assert list(g["task"]) == ["deblur", "deblur", "ct20", "ct20", "all"]
    assert g["estimate_db"].to_numpy() == pytest.approx(0.9, abs=0.05)
    h = claims[claims["claim"] == "h_padis_vs_whole"]
    assert set(h["verdict"]) == {"reproduced"}  # +0.3 dB over the whole-image cell
    table = padis_table(df, seed=1, synthetic=["ds"])
    row = table[(table["prior"] == "position") & (table["task"] == "ct20")].iloc[0]
    assert row["synthetic"] and row["dpsnr_vs_patch"] == pytest.approx(0.9, abs=0.05)
    assert row["whole_ci_lo"] < row["dpsnr_vs_whole"] < row["whole_ci_hi"]


def test_claims_say_what_is_missing():
    df = _metrics({("whole", "whole", "none"): 0.0, ("patch", "p4", "zeros"): -0.6})
    claims = padis_claims(df, seed=1)
    assert list(claims["verdict"]) == ["inconclusive", "inconclusive"]
    assert claims["detail"].str.startswith("not tested").all()


@pytest.mark.slow
def test_tiny_padis_runs_end_to_end(tiny_padis, tmp_path):
    """`snakemake padis_table` on the tiny demo (the session's run, tests/conftest.py:
    the patch and position-aware priors, PaDIS's DPS): CT phantoms, the three priors it
    trains, every cell and baseline, the table and the claims; then a task's figure."""
    from patchpnp.evaluation.figures import padis_figure_command
    from patchpnp.pipeline.plan import PadisPlan, Plan

    work = tiny_padis
    table = pd.read_csv(work / f"{layout.PADIS_TABLE}.csv", dtype={"size": str})
    assert len(table) == 8 + 2 and set(table["solver"]) == {"padis_dps", "baseline"}
    ct = table[table["task"] == "ct20"]
    assert ct["synthetic"].all() and not table[table["task"] == "deblur"]["synthetic"].any()
    assert (table["psnr_mean"] > 5).all()
    claims = pd.read_csv(work / f"{layout.PADIS_CLAIMS}.csv")
    g = claims[claims["claim"] == "g_position"]
    assert len(g) == 5 and list(g["task"])[-1] == "all"  # 2 cells + 2 task rows + pooled
    h = claims[claims["claim"] == "h_padis_vs_whole"]  # no whole prior in this run
    assert list(h["verdict"]) == ["inconclusive"] and h["detail"].str.startswith("not tested").all()
    assert "synthetic" in (work / f"{layout.PADIS_TABLE}.md").read_text()
    split = read_split(
        work / layout.PADIS_SPLIT.format(dataset="ct_ellipses_synthetic", split="eval")
    )
    assert all(s.startswith("synthetic_ellipses/") for s in split.source)
    settings = work / layout.PADIS_PRIOR_DIR.format(domain="ct", prior="position") / "settings.yaml"
    assert "pad: 4" in settings.read_text()
    from conftest import tiny_extensions_config

    padis = PadisPlan(Plan(validate_config(tiny_extensions_config())))
    # padis.tune: one table per prior, solver and task, each with one interior choice,
    # and every cell ran with its table's value (its log says which)
    for job in padis.tune_jobs():
        tuned = pd.read_csv(work / layout.PADIS_TUNE.format(**job))
        assert tuned["chosen"].sum() == 1 and tuned["interior"].all(), tuned
        value = tuned.loc[tuned["chosen"], "value"].item()
        for size in ("whole-none", "p4-zeros"):
            cell_log = work / layout.LOGS / "padis" / job["dataset"] / job["prior"]
            text = (cell_log / job["solver"] / job["task"] / f"{size}.log").read_text()
            assert f"{{'zeta': {value}}} from results/padis/tune/" in text, text[-1000:]
    # The figure rule's command, on the run's cells (in this process: no job to start).
    cells = padis.figure_cells("ct20")
    dataset = cells[0].dataset
    stem = tmp_path / "padis_ct20"
    padis_figure_command(
        [str(work / layout.PADIS_RECON.format(**c.wildcards())) for c in cells],
        labels=[f"{c.prior} {c.size}" for c in cells],
        baseline=str(work / layout.PADIS_BASELINE_RECON.format(dataset=dataset, task="ct20")),
        gt=str(work / padis.eval_file(dataset)), out_stem=str(stem),
        title=padis.figure_title("ct20"),
    )  # fmt: skip
    assert stem.with_suffix(".png").stat().st_size > 0
