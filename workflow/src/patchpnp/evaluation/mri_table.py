"""The MRI table (``results/tables/mri.{csv,md}``) and its checks, from the cells' metrics.

One row per cell: an acquisition (dataset, mask, acceleration) and a method; diffusion
rows also name the prior, the solver and the inference size. Patch rows carry the
paired per-image PSNR difference to the whole-image cell of the same prior and solver
(same slices, same measurements, same solver noise), with its 95% bootstrap interval.
The markdown adds two checks: every diffusion cell beats zero filling, and
at 4x the best diffusion cell beats the best classical one.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from patchpnp.evaluation.aggregate import (
    AggregateError,
    bootstrap_mean_ci,
    paired_difference,
    to_markdown,
)
from patchpnp.formats import MRI_CELL_KEYS
from patchpnp.layout import WHOLE

MRI_COLUMNS = [
    "dataset",
    "acceleration",
    "mask",
    "method",
    "prior",
    "solver",
    "size",
    "n_images",
    "psnr_mean",
    "ssim_mean",
    "nmse_mean",
    "dpsnr_vs_whole",
    "dpsnr_lo",
    "dpsnr_hi",
]
EXTRA_COLUMNS = ["data_consistency_mean", "cg_residual_max", "seconds_mean", "nfe", "lam"]
KEYS = list(MRI_CELL_KEYS)
METHOD_ORDER = {"zero_filled": 0, "sense": 1, "cs_wavelet": 2, "diffusion": 3}


def read_cells(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The per-image rows of every cell, each file checked for the cell keys."""
    frames = []
    for path in paths:
        df = pd.read_csv(path, dtype={"size": str})
        missing = [c for c in [*KEYS, "image", "psnr", "ssim", "nmse"] if c not in df.columns]
        if missing:
            raise AggregateError(f"{path}: not an MRI cell's metrics (missing {missing})")
        frames.append(df)
    if not frames:
        raise AggregateError("no MRI cell metrics given")
    return pd.concat(frames, ignore_index=True)


def _size_rank(size: str) -> float:
    return -np.inf if size == WHOLE else -float(size)


def mri_table(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """One row per cell (:data:`MRI_COLUMNS` then :data:`EXTRA_COLUMNS`)."""
    rows = []
    cells = {key: part for key, part in df.groupby(KEYS, sort=False)}
    for key, part in cells.items():
        cell = dict(zip(KEYS, key, strict=True))
        row = {
            **cell,
            "n_images": len(part),
            "psnr_mean": part["psnr"].mean(),
            "ssim_mean": part["ssim"].mean(),
            "nmse_mean": part["nmse"].mean(),
            "dpsnr_vs_whole": np.nan,
            "dpsnr_lo": np.nan,
            "dpsnr_hi": np.nan,
            "data_consistency_mean": part["data_consistency"].mean(),
            "cg_residual_max": part["cg_residual_max"].max(),
            "seconds_mean": part["seconds"].mean(),
            "nfe": part["nfe"].iloc[0],
            "lam": part["lam"].iloc[0] if "lam" in part else np.nan,
        }
        if cell["method"] == "diffusion" and cell["size"] != WHOLE:
            whole_key = tuple({**cell, "size": WHOLE}[k] for k in KEYS)
            if whole_key in cells:
                d = paired_difference(
                    part.set_index("image")["psnr"],
                    cells[whole_key].set_index("image")["psnr"],
                    str(cell),
                    "its whole-image cell",
                )
                cell_seed = zlib.crc32(repr(key).encode()) ^ seed
                row["dpsnr_vs_whole"], row["dpsnr_lo"], row["dpsnr_hi"] = bootstrap_mean_ci(
                    d, cell_seed
                )
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*MRI_COLUMNS, *EXTRA_COLUMNS])
    order = out.assign(
        _m=out["method"].map(METHOD_ORDER), _s=out["size"].map(_size_rank)
    ).sort_values(["dataset", "mask", "acceleration", "_m", "prior", "solver", "_s"])
    return order[[*MRI_COLUMNS, *EXTRA_COLUMNS]].reset_index(drop=True)


def mri_checks(table: pd.DataFrame) -> list[str]:
    """The two checks, one line per acquisition, with the numbers behind them."""
    lines = []
    for (dataset, mask, acc), part in table.groupby(["dataset", "mask", "acceleration"]):
        where = f"{dataset} {mask} {acc}x"
        zf = part.loc[part["method"] == "zero_filled", "psnr_mean"]
        diff = part[part["method"] == "diffusion"]
        classical = part[part["method"].isin(["sense", "cs_wavelet"])]
        if len(zf) and len(diff):
            worst = diff.loc[diff["psnr_mean"].idxmin()]
            ok = bool((diff["psnr_mean"] > zf.iloc[0]).all())
            lines.append(
                f"- {where}: every diffusion cell beats zero filling: "
                f"{'yes' if ok else 'NO'} (worst {worst['prior']} / {worst['solver']} / "
                f"{worst['size']} {worst['psnr_mean']:.2f} dB vs zero-filled {zf.iloc[0]:.2f} dB)"
            )
        if len(diff) and len(classical):
            best_d = diff.loc[diff["psnr_mean"].idxmax()]
            best_c = classical.loc[classical["psnr_mean"].idxmax()]
            ok = best_d["psnr_mean"] > best_c["psnr_mean"]
            lines.append(
                f"- {where}: best diffusion ({best_d['prior']} / {best_d['solver']} / "
                f"{best_d['size']}, {best_d['psnr_mean']:.2f} dB) "
                f"{'beats' if ok else 'does NOT beat'} the best classical "
                f"({best_c['method']}, {best_c['psnr_mean']:.2f} dB) by "
                f"{best_d['psnr_mean'] - best_c['psnr_mean']:+.2f} dB"
            )
    return lines


def write_mri_table(
    paths: Iterable[str | os.PathLike], out_prefix: str | os.PathLike, seed: int
) -> pd.DataFrame:
    """Write ``<out_prefix>.csv`` and ``<out_prefix>.md`` (table and checks)."""
    from patchpnp.atomic import atomic_path

    table = mri_table(read_cells(paths), seed)
    out = Path(out_prefix)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out.with_suffix(".csv")) as tmp:
        table.to_csv(tmp, index=False)
    shown = table[MRI_COLUMNS].copy()
    text = [
        "# Multicoil MRI reconstruction",
        "",
        "Magnitude PSNR / SSIM (data range: the maximum of the scored target's magnitude "
        "over each volume's scored slices) and NMSE, fastMRI's "
        "convention. dpsnr_vs_whole: paired patch minus whole PSNR (same prior and solver), "
        "95% bootstrap interval.",
        "",
        to_markdown(shown, floatfmt=".4g"),
        "",
        "## Checks",
        "",
        *mri_checks(table),
        "",
    ]
    with atomic_path(out.with_suffix(".md")) as tmp:
        Path(tmp).write_text("\n".join(text))
    return table


def mri_table_command(metrics: list[str], output: str, seed: int = 0) -> str:
    """``patchpnp mri-table``: the MRI table from the cells' metrics files."""
    table = write_mri_table(metrics, output, seed)
    return "\n".join(mri_checks(table))
