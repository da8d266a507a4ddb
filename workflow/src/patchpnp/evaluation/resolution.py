"""Does a run resolve the paper's effects? The half-width bars, checked cell by cell.

The paper's effects are 0.0-0.4 dB, so a run that reports them must measure more
sharply than that. Two bars (config ``resolution.bars``; docs/methods.md section 10):

- every reflect-padded patch cell's paired interval against its whole-image cell
  (``dpsnr_lo``/``dpsnr_hi`` of the extended table) has a half-width of at most
  ``cell_db``;
- every claim's pooled row (``dataset``, ``solver``, ``task`` and ``size`` all ``all``;
  claims.csv) has a half-width of at most ``pooled_db``. Memory (d) has no interval
  and is not checked.

The check reads the tables that ``patchpnp tables`` computed, so it sees exactly the
intervals the tables report. Torch-free.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from patchpnp.evaluation.aggregate import AggregateError, to_markdown, write_files
from patchpnp.evaluation.claims import ALL, MEMORY_CLAIMS, REFLECT
from patchpnp.layout import RESOLUTION_STEM, WHOLE

CELL_KEYS = ("dataset", "prior", "solver", "task", "size")
# (estimate, lower, upper) columns of a cell's interval (extended table) and of a
# claim's (claims table)
CELL_INTERVAL = ("dpsnr_vs_whole", "dpsnr_lo", "dpsnr_hi")
CLAIM_INTERVAL = ("estimate_db", "ci_lo_db", "ci_hi_db")
RESOLUTION_COLUMNS = [
    "check",  # cell (a reflect patch cell against its whole cell) or pooled (a claim)
    "claim",
    "dataset",
    "prior",
    "solver",
    "task",
    "size",
    "n_images",
    "estimate_db",
    "half_width_db",
    "bar_db",
    "holds",
]


def half_width(lo: float, hi: float) -> float:
    """``(hi - lo) / 2``: the half-width of a 95% interval."""
    return (hi - lo) / 2


def resolution_table(
    extended: pd.DataFrame, claims: pd.DataFrame, *, cell_db: float, pooled_db: float
) -> pd.DataFrame:
    """One row per checked interval, in :data:`RESOLUTION_COLUMNS`.

    ``extended`` and ``claims`` are the tables of
    :func:`patchpnp.evaluation.aggregate.extended_table` and
    :func:`patchpnp.evaluation.claims.claims_table`. A cell or pooled row without an
    interval (no whole cell, a claim not tested) is listed with ``holds`` False: a bar
    that was not measured does not hold.
    """
    if cell_db <= 0 or pooled_db <= 0:
        raise AggregateError(f"resolution bars must be positive, got {cell_db}, {pooled_db}")
    for name, frame, cols in (
        ("extended table", extended, ("padding", "size", *CELL_INTERVAL)),
        ("claims table", claims, ("claim", *CLAIM_INTERVAL)),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise AggregateError(f"resolution check: the {name} lacks columns {missing}")
    patch = extended[(extended["padding"] == REFLECT) & (extended["size"] != WHOLE)]
    pooled = claims[
        (~claims["claim"].isin(MEMORY_CLAIMS))
        & (claims["dataset"] == ALL)
        & (claims["solver"] == ALL)
        & (claims["task"] == ALL)
        & (claims["size"] == ALL)
    ]
    rows = [_check(r, "cell", "b_inference", CELL_INTERVAL, cell_db) for _, r in patch.iterrows()]
    rows += [
        _check(r, "pooled", r["claim"], CLAIM_INTERVAL, pooled_db) for _, r in pooled.iterrows()
    ]
    return pd.DataFrame(rows, columns=RESOLUTION_COLUMNS)


def _check(row: pd.Series, check: str, claim: str, interval: tuple, bar: float) -> dict:
    """One row of the check: ``row``'s interval (its ``interval`` columns: estimate,
    lower, upper) against ``bar``. A missing interval (NaN) does not hold."""
    est, lo, hi = (row[c] for c in interval)
    hw = half_width(lo, hi)
    return dict(
        check=check,
        claim=claim,
        **{k: row[k] for k in CELL_KEYS},
        n_images=int(row["n_images"]),
        estimate_db=est,
        half_width_db=hw,
        bar_db=bar,
        holds=bool(hw <= bar),  # False for NaN
    )


def resolution_summary(table: pd.DataFrame) -> str:
    """Two lines: how many cells and pooled rows meet their bars, the widest of each."""
    lines = []
    for check, label in (("cell", "reflect patch cells"), ("pooled", "pooled claim rows")):
        rows = table[table["check"] == check]
        if rows.empty:
            lines.append(f"- {label}: none in this run.")
            continue
        bar = rows["bar_db"].iloc[0]
        widest = rows.loc[rows["half_width_db"].fillna(math.inf).idxmax()]
        where = (
            widest["claim"] if check == "pooled" else "/".join(str(widest[k]) for k in CELL_KEYS)
        )
        lines.append(
            f"- {label}: {int(rows['holds'].sum())} of {len(rows)} within {bar:g} dB; "
            f"widest {widest['half_width_db']:.3f} dB ({where}, {int(widest['n_images'])} images)."
        )
    verdict = "All bars hold." if bool(table["holds"].all()) else "Not every bar holds."
    return verdict + "\n\n" + "\n".join(lines)


def write_resolution(table: pd.DataFrame, outdir: str | os.PathLike) -> dict[str, Path]:
    """Write ``resolution.csv`` and ``resolution.md`` atomically; paths by file name."""
    shown = table.copy()
    for col in ("estimate_db", "half_width_db"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:+.3f}".lstrip("+"))
    shown["holds"] = shown["holds"].map({True: "yes", False: "NO"})
    preface = (
        "# Resolution: half-widths of the paired 95% intervals against their bars\n\n"
        "A run resolves the paper's 0.0-0.4 dB effects when every reflect-padded patch "
        "cell's interval against its whole-image cell, and every claim's pooled row, is "
        "narrower than its bar (config `resolution.bars`; config/README.md, "
        '"Resolution").\n\n' + resolution_summary(table) + "\n\n"
    )
    writers = {
        f"{RESOLUTION_STEM}.csv": lambda p: table.to_csv(p, index=False),
        f"{RESOLUTION_STEM}.md": lambda p: p.write_text(
            preface + to_markdown(shown), encoding="utf-8"
        ),
    }
    return write_files(outdir, writers)
