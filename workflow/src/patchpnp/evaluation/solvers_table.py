"""``snakemake solvers``: claim (b) across solvers, as a table and as verdicts.

One row per (dataset, task, prior, solver, size) of the comparison (docs/methods.md
section 12): our solvers' grid cells beside deepinv's, every patch row with its paired
patch-minus-whole PSNR difference and 95% bootstrap interval (same images, same solver
noise: common random numbers hold for deepinv's solvers too). The claim-(b) verdicts,
one pooled row per solver, come from :func:`patchpnp.evaluation.claims.inference_claims`.
Torch-free.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from patchpnp.evaluation.aggregate import extended_table, read_metrics, to_markdown, write_files
from patchpnp.evaluation.claims import claims_display, inference_claims
from patchpnp.inference.tuned import chosen_row
from patchpnp.layout import parse_tune_path

__all__ = ["SOLVERS_COLUMNS", "solvers_table", "solvers_table_command"]

SOLVERS_COLUMNS = [
    "dataset",
    "task",
    "prior",
    "solver",
    "size",
    "padding",
    "n_images",
    "psnr_mean",
    "ssim_mean",
    "dpsnr_vs_whole",
    "dpsnr_lo",
    "dpsnr_hi",
    "seconds_mean",
    "nfe",
]
EXTRA = ["psnr_std", "backward_passes_mean", "time_ratio", "tuned"]


def tuned_settings(tables: Sequence[str | os.PathLike]) -> dict[tuple[str, str, str], str]:
    """``{(prior, solver, task): "weight=..."}`` from tuning tables (their chosen rows)."""
    out = {}
    for path in tables:
        row = chosen_row(path)
        where = parse_tune_path(path)
        interior = "" if bool(row["interior"]) else " (edge)"
        out[(where["prior"], where["solver"], where["task"])] = (
            f"{row['parameter']}={row['value']:.3g}{interior}"
        )
    return out


def solvers_table(
    metrics: pd.DataFrame,
    *,
    seed: int,
    image_shape: tuple[int, int],
    tuned: dict[tuple[str, str, str], str] | None = None,
) -> pd.DataFrame:
    """The comparison's rows in :data:`SOLVERS_COLUMNS` (then :data:`EXTRA`)."""
    ext = extended_table(metrics, seed, image_shape=image_shape).rename(columns={"nfe_mean": "nfe"})
    tuned = tuned or {}
    ext["tuned"] = [
        tuned.get((r.prior, r.solver, r.task), "config") for r in ext.itertuples(index=False)
    ]
    return ext[SOLVERS_COLUMNS + EXTRA].reset_index(drop=True)


def solvers_table_command(
    metrics: Sequence[str],
    *,
    table: str,
    claims: str,
    image_shape: Sequence[int],
    tuned: Sequence[str] = (),
    seed: int = 0,
    margin_db: float = 0.5,
) -> str:
    """Write ``<table>.{csv,md}`` and ``<claims>.{csv,md}``; return both as markdown."""
    frame = read_metrics(metrics)
    rows = solvers_table(
        frame, seed=seed, image_shape=tuple(image_shape), tuned=tuned_settings(tuned)
    )
    verdicts = inference_claims(frame, seed=seed, margin_db=margin_db)
    per_solver = verdicts[(verdicts["dataset"] == "all")]
    table_md = (
        "# Claim (b) across solvers\n\n"
        "PSNR (dB) per cell; patch rows give the paired patch - whole difference with its "
        "95% bootstrap interval over images (same images and solver noise). `tuned`: the "
        "weight chosen on the tuning slices (deepinv's solvers) or `config` (ours, as the "
        "grid runs them).\n\n"
        + to_markdown(rows, floatfmt=".3f")
        + "\n\n## Claim (b) per solver\n\n"
        + to_markdown(claims_display(per_solver))
    )
    claims_md = (
        "# Claim (b) across solvers: verdicts\n\n"
        f"A cell is comparable when its 95% interval lies inside [-{margin_db:g}, "
        f"{margin_db:g}] dB (docs/methods.md section 10). Pooled rows, per solver and "
        "inference size, per solver, per inference size over all solvers, then over every "
        "cell: reproduced only when every cell in them is, contradicted when any cell is "
        "(the claim is universal); the mean and its interval describe them.\n\n"
        + to_markdown(claims_display(verdicts))
    )
    table_stem, claims_stem = Path(table), Path(claims)
    written = write_files(
        table_stem.parent,
        {
            f"{table_stem.name}.csv": lambda p: rows.to_csv(p, index=False),
            f"{table_stem.name}.md": lambda p: p.write_text(table_md, encoding="utf-8"),
        },
    )
    written |= write_files(
        claims_stem.parent,
        {
            f"{claims_stem.name}.csv": lambda p: verdicts.to_csv(p, index=False),
            f"{claims_stem.name}.md": lambda p: p.write_text(claims_md, encoding="utf-8"),
        },
    )
    return table_md
