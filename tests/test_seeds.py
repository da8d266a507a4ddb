"""snakemake seeds: the claims and cells across training runs (patchpnp.evaluation.seeds),
on synthetic metrics of known answer, and its place in the plan."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from patchpnp import layout
from patchpnp.cli import main
from patchpnp.evaluation.aggregate import REQUIRED, AggregateError
from patchpnp.evaluation.claims import claims_table
from patchpnp.evaluation.seeds import (
    ALL_AGREE,
    SPLIT,
    seeds_cells_table,
    seeds_claims_table,
    whole_run_gaps,
)

N = 24


@pytest.fixture
def demo_config(repo_root):
    return yaml.safe_load((repo_root / "config" / "config.yaml").read_text())


def metrics_frame(offsets: dict[tuple, float], base: np.ndarray) -> pd.DataFrame:
    """A read_metrics-like frame: one cell per key (prior, solver, size) on one dataset."""
    frames = []
    for (prior, solver, size), off in offsets.items():
        frames.append(
            pd.DataFrame(
                dict(
                    dataset="knee",
                    prior=prior,
                    solver=solver,
                    task="denoise",
                    size=size,
                    padding="none" if size == "whole" else "reflect",
                    image=range(len(base)),
                    psnr=base + off,
                )
            )
        )
    return pd.concat(frames, ignore_index=True)


def grid(whole_off: float, patch_off: float, tiling: float = -0.2) -> dict:
    return {
        ("whole", "dps", "whole"): whole_off,
        ("whole", "dps", "p32"): whole_off + tiling,
        ("patch", "dps", "whole"): patch_off,
        ("patch", "dps", "p32"): patch_off + tiling / 2,
    }


def test_claims_across_runs_agree_or_split_and_carry_the_yardstick():
    """Run 0: the patch prior 0.3 dB behind (claim a reproduced at margin 0.5); run 1:
    the whole prior's second run lands 0.4 dB higher, the patch prior's not, so (a) is
    -0.7 dB there: contradicted, split. The yardstick (whole run 1 - whole run 0) is 0.4
    dB, and run 0's -0.3 dB is within it: the scheme gap says nothing."""
    b = np.random.default_rng(0).normal(28, 1, N)
    runs = [metrics_frame(grid(0.0, -0.3), b), metrics_frame(grid(0.4, -0.3), b)]
    claims = [claims_table(m, None, seed=3) for m in runs]
    cells = seeds_cells_table(runs, seed=3)
    row = cells[(cells["prior"] == "whole") & (cells["size"] == "whole")].iloc[0]
    assert row["psnr_run1"] - row["psnr_run0"] == pytest.approx(0.4)
    assert row["gap_run1_db"] == pytest.approx(0.4) and row["spread_db"] == pytest.approx(0.4)
    assert row["gap_run1_lo"] == pytest.approx(0.4)  # constant gap: zero-width interval

    gaps = whole_run_gaps(cells, "whole")
    assert gaps["yardstick_db"].tolist() == pytest.approx([0.4])
    table = seeds_claims_table(claims, gaps)
    a = table[table["claim"] == "a_training"].iloc[0]
    assert (a["verdict_run0"], a["verdict_run1"]) == ("reproduced", "contradicted")
    assert a["estimate_db_run1"] == pytest.approx(-0.7)
    assert a["seed_agreement"] == SPLIT
    assert a["yardstick_db"] == pytest.approx(0.4) and a["exceeds_yardstick"] == "False"
    b_rows = table[table["claim"] == "b_inference"]
    assert (b_rows["seed_agreement"] == ALL_AGREE).all()
    assert b_rows["yardstick_db"].isna().all()
    assert not table["claim"].str.startswith("d_memory").any()  # not the weights'


def test_runs_must_hold_the_same_rows_and_cells():
    b = np.random.default_rng(1).normal(28, 1, N)
    full, part = metrics_frame(grid(0, 0), b), metrics_frame(grid(0, 0), b)
    part = part[part["size"] == "whole"]
    with pytest.raises(AggregateError, match="run 1 lacks the cell"):
        seeds_cells_table([full, part], seed=0)
    claims = [claims_table(full, None, seed=0), claims_table(part, None, seed=0)]
    with pytest.raises(AggregateError, match="run 1's claims rows differ"):
        seeds_claims_table(claims)
    with pytest.raises(AggregateError, match="at least one more run"):
        seeds_claims_table(claims[:1])


def write_cell(root, run_offsets, b):
    paths = []
    for (prior, solver, size), off in run_offsets.items():
        padding = "none" if size == "whole" else "reflect"
        path = root / "metrics" / "knee" / prior / solver / "denoise" / f"{size}-{padding}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        t = pd.DataFrame({c: [0.5] * len(b) for c in REQUIRED}).assign(
            image=range(len(b)), psnr=b + off, task="denoise", solver=solver,
            size=size[1:] if size != "whole" else "whole", padding=padding, nfe=10,
            tiles_evaluated=4,
        )  # fmt: skip
        t.to_csv(path, index=False)
        paths.append(str(path))
    return paths


def test_seeds_table_command(tmp_path):
    b = np.random.default_rng(2).normal(28, 1, N)
    runs = [grid(0.0, -0.1), grid(0.05, -0.1)]
    argv = ["seeds-table"]
    for k, offsets in enumerate(runs):
        argv += ["--metrics", *write_cell(tmp_path / f"run{k}", offsets, b)]
    out = tmp_path / "tables"
    stems = ["--out-claims", str(out / "seeds_claims"), "--out-cells", str(out / "seeds_cells")]
    assert main([*argv, "--training-seeds", "7", "8", *stems, "--margin-db", "0.25"]) == 0
    t = pd.read_csv(out / "seeds_claims.csv")
    assert {"verdict_run0", "verdict_run1", "estimate_db_run1", "seed_agreement"} <= set(t.columns)
    a = t[(t["claim"] == "a_training") & (t["dataset"] == "knee")].iloc[0]
    assert a["estimate_db_run0"] == pytest.approx(-0.1) and a["estimate_db_run1"] == pytest.approx(
        -0.15
    )
    assert a["yardstick_db"] == pytest.approx(0.05) and a["exceeds_yardstick"]
    md = (out / "seeds_claims.md").read_text()
    assert "run 0: 7, run 1: 8" in md and "margin 0.25 dB" in md
    cells = pd.read_csv(out / "seeds_cells.csv")
    assert len(cells) == 4 and not math.isnan(cells["gap_run1_db"].iloc[0])
    # one training seed for two runs: an error before anything is written
    for f in out.iterdir():
        f.unlink()
    assert main([*argv, "--training-seeds", "7", *stems]) == 2
    assert not any(out.iterdir())


def test_seed_runs_layout_and_plan(demo_config):
    from patchpnp.pipeline.plan import Plan, SeedsPlan

    plan = Plan(demo_config)
    seeds = SeedsPlan(plan)
    assert seeds.runs == list(range(1, demo_config["seeds"]["extra"] + 1))
    assert seeds.training_seed(1) == demo_config["seed"] + 1
    run1 = seeds.metrics_files(1)
    assert len(run1) == len(plan.cell_files("metrics"))
    assert all(p.startswith("results/seeds/run1/metrics/") for p in run1[: len(plan.cells())])
    # the measurement baselines are the grid's own (no prior to retrain)
    assert run1[len(plan.cells()) :] == plan.cell_files("metrics")[len(plan.cells()) :]
    assert seeds.cell_metrics_files(0) == plan.cell_files("metrics")[: len(plan.cells())]
    assert layout.seed_run(2) == "results/seeds/run2"
    with pytest.raises(layout.LayoutError, match="run 0 is the grid"):
        layout.seed_run(0)
