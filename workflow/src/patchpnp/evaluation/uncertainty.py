"""``snakemake uncertainty``: the posterior cells' table and figures (docs/methods.md
section 12).

The table has one row per posterior cell (:mod:`patchpnp.inference.posterior`), each
per-image statistic averaged over the images, and for patch rows how tiling changes the
spread: ``sd_ratio_vs_whole`` (mean standard deviation, patch over whole, same prior,
solver and task) and ``dcoverage_2sd_vs_whole``. The figure shows, per task, one slice:
truth, sample mean, |error| and the standard-deviation map, one row per inference size.
Torch-free.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from patchpnp.evaluation.aggregate import AggregateError, to_markdown, write_files
from patchpnp.evaluation.figures import FigureError, _figure, _image, _panel, _save
from patchpnp.formats import IMAGES, MEAN, POSTERIOR_COLUMNS, SD
from patchpnp.layout import WHOLE, LayoutError, parse_uncertainty_path
from patchpnp.metrics.quality import psnr

__all__ = ["UNCERTAINTY_COLUMNS", "uncertainty_figure", "uncertainty_table"]

UNCERTAINTY_COLUMNS = [
    "dataset",
    "task",
    "prior",
    "solver",
    "size",
    "samples",
    "psnr_of_mean",
    "psnr_mean_of_samples",
    "sd_mean",
    "coverage_1sd",
    "coverage_2sd",
]
EXTRA = [
    "coverage_1sd_calibrated",
    "coverage_2sd_calibrated",
    "n_images",
    "zero_sd_fraction",
    "sd_ratio_vs_whole",
    "dcoverage_2sd_vs_whole",
    "seconds_mean",
]


def calibrated_coverage(z: float, samples: int) -> float:
    """The coverage a perfectly calibrated Gaussian posterior gives with ``samples`` draws.

    Truth and the K samples are independent draws of N(mu, s^2): the sample mean's
    error ``m - x`` is N(0, s^2 (1 + 1/K)) and independent of the sample standard
    deviation (K - 1 degrees of freedom), so ``(m - x) / (sd sqrt(1 + 1/K))`` is
    Student's t with K - 1 degrees of freedom and ``P(|m - x| <= z sd) =
    P(|t_{K-1}| <= z / sqrt(1 + 1/K))``: 0.56 and 0.83 for z = 1, 2 at K = 4 (0.68 and
    0.95 only as K grows). Measured coverage below it means samples spread too little.
    """
    from scipy.stats import t

    k = int(samples)
    if k < 2:
        raise AggregateError(f"calibrated coverage needs at least 2 samples, got {samples}")
    return float(2 * t.cdf(z / math.sqrt(1 + 1 / k), df=k - 1) - 1)


def read_posterior_cells(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The per-image tables of posterior cells, each with its cell keys from its path."""
    frames = []
    for path in paths:
        try:
            cell = parse_uncertainty_path(path)
        except LayoutError as err:
            raise AggregateError(str(err)) from None
        t = pd.read_csv(path)
        missing = [c for c in ["image", "samples", *POSTERIOR_COLUMNS] if c not in t.columns]
        if missing or t.empty:
            raise AggregateError(f"{path}: missing columns {missing} or no rows")
        keys = cell.wildcards()
        frames.append(t.assign(**{k: keys[k] for k in ("dataset", "prior", "task", "size")}))
    if not frames:
        raise AggregateError("no posterior cells given")
    return pd.concat(frames, ignore_index=True)


def uncertainty_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per cell in :data:`UNCERTAINTY_COLUMNS` (then :data:`EXTRA`)."""
    keys = ["dataset", "task", "prior", "solver", "size"]
    rows = []
    for key, g in frame.groupby(keys, sort=False):
        row = dict(zip(keys, key, strict=True), samples=int(g["samples"].iloc[0]))
        row |= {c: float(g[c].mean()) for c in POSTERIOR_COLUMNS}
        for z in (1, 2):
            row[f"coverage_{z}sd_calibrated"] = calibrated_coverage(z, row["samples"])
        row |= {"n_images": len(g), "seconds_mean": float(g["seconds"].mean())}
        rows.append(row)
    out = pd.DataFrame(rows)
    out["sd_ratio_vs_whole"] = math.nan
    out["dcoverage_2sd_vs_whole"] = math.nan
    whole = out[out["size"] == WHOLE].set_index(keys[:4])
    for i, r in out.iterrows():
        ref = tuple(r[k] for k in keys[:4])
        if r["size"] != WHOLE and ref in whole.index:
            out.loc[i, "sd_ratio_vs_whole"] = r["sd_mean"] / whole.loc[ref, "sd_mean"]
            out.loc[i, "dcoverage_2sd_vs_whole"] = (
                r["coverage_2sd"] - whole.loc[ref, "coverage_2sd"]
            )
    return out[UNCERTAINTY_COLUMNS + EXTRA]


def uncertainty_figure(
    rows: Sequence[tuple[str, str]], gt: str | os.PathLike, out_stem, index: int = 0
) -> tuple[Path, Path]:
    """One slice of a task: per ``(label, posterior_h5)`` row the truth, the sample mean
    (with its PSNR), ``|mean - truth|`` and the standard deviation, the last two on
    shared scales so whole and patch rows compare at a glance."""
    if not rows:
        raise FigureError("uncertainty_figure: no rows")
    truth = _image(gt, IMAGES, index)
    loaded = []
    for label, path in rows:
        with h5py.File(path, "r") as f:
            if MEAN not in f or SD not in f:
                raise FigureError(f"{path}: not a posterior cell (needs '{MEAN}' and '{SD}')")
            mean, sd = f[MEAN][index, 0].astype(float), f[SD][index, 0].astype(float)
        if mean.shape != truth.shape:
            raise FigureError(f"{path}: image shape {mean.shape} differs from {truth.shape}")
        loaded.append((label, mean, np.abs(mean - truth), sd))
    err_max = max(float(np.quantile(e, 0.995)) for _, _, e, _ in loaded) or 1.0
    sd_max = max(float(np.quantile(s, 0.995)) for _, _, _, s in loaded) or 1.0
    titles = ("truth", "sample mean", "|error|", "std. deviation")
    with _figure(len(loaded), 4, (7.6, 2.0 * len(loaded)), "white") as (fig, axes):
        for i, (label, mean, err, sd) in enumerate(loaded):
            first = i == 0
            score = float(psnr(mean[None], truth[None])[0])
            _panel(axes[i][0], np.clip(truth, 0, 1), titles[0] if first else None)
            axes[i][0].set_ylabel(label, fontsize="medium")
            _panel(axes[i][1], np.clip(mean, 0, 1), titles[1] if first else None, f"{score:.2f} dB")
            for j, (img, top, cmap) in enumerate(
                ((err, err_max, "magma"), (sd, sd_max, "viridis")), 2
            ):
                axes[i][j].imshow(img, cmap=cmap, vmin=0, vmax=top)
                axes[i][j].set_xticks([])
                axes[i][j].set_yticks([])
                if first:
                    axes[i][j].set_title(f"{titles[j]} (0-{top:.2g})", fontsize="small")
        return _save(fig, out_stem)


def uncertainty_command(cells: Sequence[str], *, table: str) -> str:
    """``patchpnp uncertainty-table``: write ``<table>.{csv,md}``; return the markdown."""
    out = uncertainty_table(read_posterior_cells(cells))
    md = (
        "# Posterior samples: spread and coverage\n\n"
        "Per cell, averages over images of: the PSNR of the sample mean, the mean PSNR of "
        "a sample, the per-pixel standard deviation across samples, and the fraction of "
        "pixels whose error |mean - truth| is within 1 and 2 standard deviations, beside "
        "what a perfectly calibrated Gaussian posterior would give with the same K "
        "(`*_calibrated`: P(|t_(K-1)| <= z / sqrt(1 + 1/K)), 0.56 and 0.83 at K = 4; "
        "below it, the samples spread too little for their error). "
        "Patch rows: the standard deviation over the whole cell's (tiling widens the "
        "spread above 1) and the change in 2-sd coverage.\n\n" + to_markdown(out, floatfmt=".3f")
    )
    stem = Path(table)
    write_files(
        stem.parent,
        {
            f"{stem.name}.csv": lambda p: out.to_csv(p, index=False),
            f"{stem.name}.md": lambda p: p.write_text(md, encoding="utf-8"),
        },
    )
    return md


def uncertainty_figure_command(
    cells: Sequence[str], *, labels: Sequence[str], gt: str, out_stem: str, index: int = 0
) -> str:
    """``patchpnp uncertainty-figure``: one row per posterior cell (``.h5``)."""
    if len(labels) != len(cells):
        raise FigureError(f"{len(labels)} labels for {len(cells)} cells")
    png, pdf = uncertainty_figure(list(zip(labels, cells, strict=True)), gt, out_stem, index)
    return f"wrote {png} and {pdf}"
