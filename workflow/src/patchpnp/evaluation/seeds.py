"""``snakemake seeds``: the claims and cells across training runs (docs/methods.md section 10).

The claims' intervals resample images given the trained priors; they say nothing about
another training run of the same recipe. ``snakemake seeds`` retrains every prior under
more training seeds (run ``k`` trains with seed ``seed + k``; run 0 is the grid) and
reruns the grid's cells on each, with the grid's measurements and keyed solver noise, so
a difference between runs is the training run's alone. Two tables:

- ``seeds_claims``: every row of the grid's claims table (memory excepted: it does not
  depend on the weights) with its estimate and verdict under each run, and
  ``seed_agreement``: ``all agree`` when every run gives the same verdict, else
  ``split``. Claim (a)'s rows also carry their yardstick (below) and whether the run-0
  estimate exceeds it.
- ``seeds_cells``: per grid cell, the mean PSNR under each run, ``spread_db`` (largest
  minus smallest run mean) and, per extra run, the paired gap to run 0 (same images,
  same noise) with its 95% bootstrap interval.

Claim (a)'s yardstick: claim (a) compares one whole-trained run with one patch-trained
run, so a patch-vs-whole gap says something about the schemes only where it is larger
than the gap between two whole-trained runs of the same recipe. Per (dataset, solver,
task), the yardstick is the largest absolute whole-image gap between a whole-trained
run and run 0 (its pooled row: the mean of those over cells).

Torch-free: it runs in the ``seeds_table`` job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from patchpnp.evaluation.aggregate import (
    AggregateError,
    bootstrap_mean_ci,
    paired_difference,
    read_metrics,
    to_markdown,
    write_files,
)
from patchpnp.evaluation.claims import ALL, MEMORY_CLAIMS, claims_table
from patchpnp.layout import BASELINE, WHOLE

__all__ = [
    "ALL_AGREE",
    "SPLIT",
    "seeds_cells_table",
    "seeds_claims_table",
    "seeds_command",
]

ALL_AGREE, SPLIT = "all agree", "split"
CLAIM_KEYS = ["claim", "dataset", "prior", "solver", "task", "size"]
CELL_KEYS = ["dataset", "prior", "solver", "task", "size", "padding"]
A_CLAIM = "a_training"


def seeds_claims_table(
    claims: Sequence[pd.DataFrame], yardstick: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The run-0 claims' rows with every run's estimate and verdict side by side.

    ``claims[k]`` is run k's claims table; its memory rows are dropped (memory does not
    depend on the weights). Every run must hold the
    same rows (same grid): a row missing from a run is an error naming it. ``yardstick``
    (:func:`whole_run_gaps`): claim (a)'s per-cell yardstick, joined on its rows.
    """
    if len(claims) < 2:
        raise AggregateError(
            f"seeds: need the grid's claims and at least one more run, got {len(claims)}"
        )
    claims = [t[~t["claim"].isin(MEMORY_CLAIMS)] for t in claims]  # not the weights'
    out = claims[0][CLAIM_KEYS].reset_index(drop=True)
    keys = list(out.itertuples(index=False, name=None))
    key_set = set(keys)
    for k, t in enumerate(claims):
        t = t.set_index(CLAIM_KEYS)
        if t.index.duplicated().any():
            raise AggregateError(f"seeds: run {k}'s claims table repeats a row")
        absent = [key for key in keys if key not in t.index]
        extra = [key for key in t.index if key not in key_set]
        if absent or extra:
            raise AggregateError(
                f"seeds: run {k}'s claims rows differ from the grid's "
                f"(missing {absent[:3]}, extra {extra[:3]}): were the runs made with one config?"
            )
        out[f"estimate_db_run{k}"] = t.loc[keys, "estimate_db"].to_numpy(float)
        out[f"verdict_run{k}"] = t.loc[keys, "verdict"].to_numpy()
    verdicts = out[[f"verdict_run{k}" for k in range(len(claims))]]
    out["seed_agreement"] = np.where(verdicts.nunique(axis=1) == 1, ALL_AGREE, SPLIT)
    out["yardstick_db"] = math.nan
    if yardstick is not None and not yardstick.empty:
        for i, row in out[out["claim"] == A_CLAIM].iterrows():
            out.loc[i, "yardstick_db"] = _yardstick_of(row, yardstick)
    exceeds = out["estimate_db_run0"].abs() > out["yardstick_db"]
    out["exceeds_yardstick"] = np.where(out["yardstick_db"].isna(), "", exceeds.map(str))
    return out


def _yardstick_of(row: pd.Series, gaps: pd.DataFrame) -> float:
    """The whole-vs-whole gap matching a claim (a) row: its cell's, or for a pooled row
    the mean over the cells it pools."""
    sel = gaps
    for key in ("dataset", "solver", "task"):
        if row[key] != ALL:
            sel = sel[sel[key] == row[key]]
    return float(sel["yardstick_db"].mean()) if len(sel) else math.nan


def _psnr_by_cell(metrics: pd.DataFrame) -> dict[tuple, pd.Series]:
    cells = metrics[metrics["prior"] != BASELINE]
    return {
        key: g.set_index("image")["psnr"].astype(float)
        for key, g in cells.groupby(CELL_KEYS, sort=False)
    }


def seeds_cells_table(runs: Sequence[pd.DataFrame], seed: int) -> pd.DataFrame:
    """Per grid cell: each run's mean PSNR, the spread across runs, and each extra run's
    paired gap to run 0 with its 95% bootstrap interval. ``runs[k]``: run k's metrics
    (:func:`patchpnp.evaluation.aggregate.read_metrics`)."""
    per_run = [_psnr_by_cell(m) for m in runs]
    rows = []
    for key, ref in per_run[0].items():
        row = dict(zip(CELL_KEYS, key, strict=True))
        means = []
        for k, cells in enumerate(per_run):
            if key not in cells:
                raise AggregateError(f"seeds: run {k} lacks the cell {'/'.join(map(str, key))}")
            means.append(float(cells[key].mean()))
            row[f"psnr_run{k}"] = means[-1]
        row["spread_db"] = max(means) - min(means)
        for k, cells in enumerate(per_run[1:], start=1):
            name = "/".join(map(str, key))
            d = paired_difference(cells[key], ref, f"run {k}: {name}", f"run 0: {name}")
            est, lo, hi = bootstrap_mean_ci(d.to_numpy(), seed)
            row |= {f"gap_run{k}_db": est, f"gap_run{k}_lo": lo, f"gap_run{k}_hi": hi}
        rows.append(row)
    return pd.DataFrame(rows)


def whole_run_gaps(cells: pd.DataFrame, whole_prior: str) -> pd.DataFrame:
    """Claim (a)'s yardstick per (dataset, solver, task): the largest absolute gap between
    a run of the whole-trained prior and run 0, whole-image inference."""
    gap_cols = [c for c in cells.columns if c.startswith("gap_run") and c.endswith("_db")]
    sel = cells[(cells["prior"] == whole_prior) & (cells["size"] == WHOLE)]
    out = sel[["dataset", "solver", "task"]].copy()
    out["yardstick_db"] = sel[gap_cols].abs().max(axis=1).to_numpy()
    return out.reset_index(drop=True)


def seeds_command(
    *,
    metrics: Sequence[Sequence[str]],
    out_claims: str,
    out_cells: str,
    training_seeds: Sequence[int],
    seed: int = 0,
    margin_db: float = 0.5,
    whole_prior: str = WHOLE,
    patch_prior: str = "patch",
) -> str:
    """``patchpnp seeds-table``: write ``<out_claims>.{csv,md}`` and ``<out_cells>.{csv,md}``.

    ``metrics[k]``: run k's cell metrics files; ``training_seeds[k]``: run k's training
    seed (for the text). Runs 0, 1, ... in order, run 0 the grid. Each run's claims are
    computed here from its cells with the grid's settings (the same rows as the grid's
    claims table, without cells other targets add to it), so every run holds the same
    rows. Everything is computed before anything is written.
    """
    if len(metrics) != len(training_seeds) or len(metrics) < 2:
        raise AggregateError(
            f"seeds: {len(metrics)} runs of metrics and {len(training_seeds)} training "
            "seeds; expected one of each per run, and at least two runs"
        )
    runs = [read_metrics(m) for m in metrics]
    cells = seeds_cells_table(runs, seed)
    yardstick = whole_run_gaps(cells, whole_prior)
    claims = [
        claims_table(m, None, seed=seed, margin_db=margin_db, whole_prior=whole_prior,
                     patch_prior=patch_prior)
        for m in runs
    ]  # fmt: skip
    table = seeds_claims_table(claims, yardstick)
    seeds_text = ", ".join(f"run {k}: {s}" for k, s in enumerate(training_seeds))
    n_split = int((table["seed_agreement"] == SPLIT).sum())
    claims_md = (
        "# Claim verdicts across training runs\n\n"
        f"Each prior trained under {len(runs)} training seeds ({seeds_text}; run 0 is the "
        "grid); every run evaluated on the same slices with the same measurements and "
        "solver noise. Per claims row: the estimate (dB) and verdict under each run, and "
        f"whether the runs agree (margin {margin_db:g} dB, as in the claims table). "
        f"{n_split} of {len(table)} rows split. Claim (a)'s "
        "`yardstick_db`: the gap between two whole-trained runs (whole-image inference, "
        "largest over runs; mean over cells for pooled rows); a patch-vs-whole estimate "
        "no larger than it says nothing about the training schemes.\n\n"
        + to_markdown(table, floatfmt="+.3f")
    )
    cells_md = (
        "# Cells across training runs\n\n"
        f"Mean PSNR (dB) per cell under each training run ({seeds_text}); `spread_db`: "
        "largest minus smallest; `gap_run<k>`: run k minus run 0, paired per image, with "
        "its 95% bootstrap interval.\n\n" + to_markdown(cells, floatfmt=".3f")
    )
    stems = Path(out_claims), Path(out_cells)
    written = write_files(
        stems[0].parent,
        {
            f"{stems[0].name}.csv": lambda p: table.to_csv(p, index=False),
            f"{stems[0].name}.md": lambda p: p.write_text(claims_md, encoding="utf-8"),
        },
    )
    written |= write_files(
        stems[1].parent,
        {
            f"{stems[1].name}.csv": lambda p: cells.to_csv(p, index=False),
            f"{stems[1].name}.md": lambda p: p.write_text(cells_md, encoding="utf-8"),
        },
    )
    return claims_md
