"""PaDIS as a system (snakemake padis; docs/methods.md sections 10, 13 and 14): the
table of its cells and the verdicts on its two claims.

Every cell is a (dataset, prior, solver, task, inference size) of the padis grid, run with
the grid's keyed streams, so differences between cells of one image are paired. The table
gives each cell's mean PSNR and SSIM with two paired differences and their 95% bootstrap
intervals over images:

- ``dpsnr_vs_whole``: against the whole-image cell (the ``whole`` prior, whole-image
  inference, same solver and task);
- ``dpsnr_vs_patch``: against the position-free patch prior (``patch``) at the same
  solver, task, size and padding.

The measurement's own reconstruction (FBP for CT, the blurred image, bicubic upsampling)
is a row of its own. Rows of synthetic data (the demo's ellipse phantoms) say so.

Claims (same machinery as the paper's, :mod:`patchpnp.evaluation.claims`):

- ``g_position``: the position-aware prior beats the position-free patch prior under
  tiled inference, ``d_i = PSNR(position, tiles) - PSNR(patch, tiles)``; directional.
- ``h_padis_vs_whole``: PaDIS (the position-aware prior under tiled inference) against
  the whole-image prior with whole-image inference, same solver;
  ``d_i = PSNR(position, tiles) - PSNR(whole, whole)``; directional on PaDIS's side.

Each claim has a row per cell, a pooled row per task (every solver and size of the
task) and one pooled row over every cell; pooled rows test the mean of their cells, its
interval resampling each dataset's images together across cells.

Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from patchpnp.evaluation.aggregate import (
    AggregateError,
    bootstrap_mean_ci,
    format_difference,
    read_metrics,
    to_markdown,
    write_files,
)
from patchpnp.evaluation.claims import (
    ALL,
    CLAIMS_COLUMNS,
    _Cells,
    _db_block,
    claims_display,
    directional_verdict,
)
from patchpnp.layout import BASELINE, NO_PADDING, WHOLE

WHOLE_PRIOR, PATCH_PRIOR, POSITION_PRIOR = "whole", "patch", "position"
PADIS_COLUMNS = [
    "dataset",
    "synthetic",
    "task",
    "prior",
    "solver",
    "size",
    "padding",
    "n_images",
    "psnr_mean",
    "ssim_mean",
    "dpsnr_vs_whole",
    "whole_ci_lo",
    "whole_ci_hi",
    "dpsnr_vs_patch",
    "patch_ci_lo",
    "patch_ci_hi",
]


def _interval(d: pd.Series | None, seed: int) -> tuple[float, float, float]:
    if d is None:
        return (float("nan"),) * 3
    return bootstrap_mean_ci(d.to_numpy(), seed)


def padis_table(metrics: pd.DataFrame, *, seed: int, synthetic: Sequence[str] = ()) -> pd.DataFrame:
    """One row per cell and measurement baseline (see the module doc)."""
    cells = _Cells(metrics)
    rows = []
    keys = ["dataset", "task", "prior", "solver", "size", "padding"]
    for (dataset, task, prior, solver, size, padding), g in metrics.groupby(keys, sort=False):
        psnr = g.set_index("image")["psnr"].astype(float)
        row = dict(
            dataset=dataset,
            synthetic=dataset in synthetic,
            task=task,
            prior=prior,
            solver=solver,
            size=size,
            padding=padding,
            n_images=len(g),
            psnr_mean=psnr.mean(),
            ssim_mean=g["ssim"].astype(float).mean(),
        )
        d_whole = d_patch = None
        if prior != BASELINE:
            here = (dataset, prior, solver, task, size, padding)
            whole = (dataset, WHOLE_PRIOR, solver, task, WHOLE, NO_PADDING)
            if cells.get(*whole) is not None and whole != here:
                d_whole = cells.diff(here, whole)
            patch = (dataset, PATCH_PRIOR, solver, task, size, padding)
            if prior != PATCH_PRIOR and cells.get(*patch) is not None:
                d_patch = cells.diff(here, patch)
        est, lo, hi = _interval(d_whole, seed)
        row.update(dpsnr_vs_whole=est, whole_ci_lo=lo, whole_ci_hi=hi)
        est, lo, hi = _interval(d_patch, seed)
        row.update(dpsnr_vs_patch=est, patch_ci_lo=lo, patch_ci_hi=hi)
        rows.append(row)
    table = pd.DataFrame(rows, columns=PADIS_COLUMNS)
    # Per task: the measurement first, then the cells in the grid's order.
    table["_baseline"] = table["prior"] != BASELINE
    table["_task"] = pd.Categorical(table["task"], list(dict.fromkeys(table["task"])))
    table = table.sort_values(["_task", "_baseline"], kind="stable")
    return table.drop(columns=["_baseline", "_task"]).reset_index(drop=True)


def _position_cells(cells: _Cells, other: str, other_size) -> list[dict]:
    """Per (dataset, solver, task, tiled size, padding): position-aware prior under tiles
    minus ``other`` prior at ``other_size(size)`` (its own size: same tiles; ``whole``)."""
    out = []
    for dataset, solver, task, size, padding in cells.grid(
        "dataset", "solver", "task", "size", "padding"
    ):
        if padding == NO_PADDING:
            continue
        a = (dataset, POSITION_PRIOR, solver, task, size, padding)
        b_size = other_size(size)
        b = (dataset, other, solver, task, b_size, padding if b_size != WHOLE else NO_PADDING)
        if cells.get(*a) is None or cells.get(*b) is None:
            continue
        d = cells.diff(a, b)
        detail = (
            f"PSNR {POSITION_PRIOR} {size} {cells.get(*a).mean():.2f}, "
            f"{other} {b_size} {cells.get(*b).mean():.2f} dB"
        )
        keys = dict(
            dataset=dataset, prior=f"{POSITION_PRIOR}-{other}", solver=solver, task=task, size=size
        )
        out.append(dict(keys=keys, d=d, detail=detail))
    return out


def _per_task_block(claim: str, cells: list[dict], seed: int, prior: str, missing: str) -> list:
    """Cell rows and a pooled row per task, then the pooled row over every cell."""
    if not cells:
        return _db_block(claim, [], directional_verdict, seed, prior, missing)
    rows = []
    tasks = list(dict.fromkeys(c["keys"]["task"] for c in cells))
    for task in tasks:
        mine = [c for c in cells if c["keys"]["task"] == task]
        block = _db_block(claim, mine, directional_verdict, seed, prior, missing)
        pooled = block[-1] | {"task": task}
        rows += block[: len(mine)] + [pooled]
    if len(tasks) > 1:
        rows.append(_db_block(claim, cells, directional_verdict, seed, prior, missing)[-1])
    return rows


def padis_claims(metrics: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """``g_position`` and ``h_padis_vs_whole`` (module doc), in ``CLAIMS_COLUMNS``."""
    cells = _Cells(metrics)
    g = _position_cells(cells, PATCH_PRIOR, lambda size: size)
    h = _position_cells(cells, WHOLE_PRIOR, lambda size: WHOLE)
    rows = _per_task_block(
        "g_position", g, seed, f"{POSITION_PRIOR}-{PATCH_PRIOR}",
        f"needs tiled cells of priors {POSITION_PRIOR!r} and {PATCH_PRIOR!r}",
    ) + _per_task_block(
        "h_padis_vs_whole", h, seed, f"{POSITION_PRIOR}-{WHOLE_PRIOR}",
        f"needs tiled cells of {POSITION_PRIOR!r} and whole cells of {WHOLE_PRIOR!r}",
    )  # fmt: skip
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS).astype({"n_images": int})


def _display(table: pd.DataFrame) -> pd.DataFrame:
    out = table[["dataset", "task", "prior", "solver", "size", "padding", "n_images"]].copy()
    out["dataset"] = [
        f"{d} (synthetic)" if s else d
        for d, s in zip(table["dataset"], table["synthetic"], strict=True)
    ]
    out["PSNR (dB)"] = table["psnr_mean"].map(lambda v: f"{v:.2f}")
    out["SSIM"] = table["ssim_mean"].map(lambda v: f"{v:.3f}")
    out["vs whole-image cell (dB)"] = [
        format_difference(*r)
        for r in table[["dpsnr_vs_whole", "whole_ci_lo", "whole_ci_hi"]].to_numpy()
    ]
    out["vs patch prior (dB)"] = [
        format_difference(*r)
        for r in table[["dpsnr_vs_patch", "patch_ci_lo", "patch_ci_hi"]].to_numpy()
    ]
    return out


def _write_stem(stem: str, df: pd.DataFrame, markdown: str) -> None:
    """``<stem>.csv`` (the table) and ``<stem>.md`` (the text), each atomically."""
    folder, name = os.path.dirname(stem) or ".", os.path.basename(stem)
    os.makedirs(folder, exist_ok=True)
    write_files(
        folder,
        {
            f"{name}.csv": lambda p: df.to_csv(p, index=False),
            f"{name}.md": lambda p: p.write_text(markdown, encoding="utf-8"),
        },
    )


def padis_table_command(
    metrics: Sequence[str], *, table: str, claims: str, seed: int = 0, synthetic=("none",)
) -> str:
    """``patchpnp padis-table``: the padis table and its two claims' verdicts."""
    df = read_metrics(metrics)
    if df.empty:
        raise AggregateError("padis-table: no metrics")
    synthetic = [s for s in synthetic if s != "none"]
    out = padis_table(df, seed=seed, synthetic=synthetic)
    verdicts = padis_claims(df, seed=seed)
    note = (
        f"Datasets marked synthetic ({', '.join(synthetic)}) are random-ellipse phantoms: "
        "no evidence about patient data.\n\n"
        if synthetic
        else ""
    )
    preface = (
        "# PaDIS as a system\n\n"
        "Mean PSNR / SSIM per cell; paired PSNR differences (same images, same keyed "
        "streams) with 95% bootstrap intervals over images, against the whole-image cell "
        "(whole prior, whole inference, same solver) and against the position-free patch "
        "prior at the same size (docs/methods.md sections 10, 13, 14). `baseline` is the "
        "measurement's own reconstruction (FBP for CT).\n\n" + note
    )
    claims_preface = (
        "# PaDIS claims\n\n"
        "Directional verdicts on paired per-image PSNR differences (docs/methods.md "
        "section 10): reproduced when the 95% interval excludes 0 on the claimed (positive) "
        "side, contradicted on the other, else inconclusive. Pooled rows per task and over "
        "every cell test the mean of their cells.\n\n" + note
    )
    _write_stem(table, out, preface + to_markdown(_display(out)))
    _write_stem(claims, verdicts, claims_preface + to_markdown(claims_display(verdicts)))
    pooled = verdicts[verdicts["dataset"] == ALL]
    return to_markdown(pooled[["claim", "task", "estimate_db", "ci_lo_db", "ci_hi_db", "verdict"]])
