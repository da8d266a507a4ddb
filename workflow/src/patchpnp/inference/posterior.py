"""Posterior samples of one cell and how well their spread covers the error (docs/methods.md
section 12).

A posterior cell runs the grid cell (:func:`patchpnp.inference.cell.run_cell`) ``K``
times on the same measurements, sample ``k`` keying every random stream of the solve
(:class:`patchpnp.solvers.SolveStreams`): the solver's noise and the patch wrapper's
grid draws (shifts, noisy margin), which are part of a patch sampler's randomness, so
the K samples are independent solves. The measurement is the grid cell's, and whole and
patch inference stay paired per image and per sample through the solver stream. Per
image it then reports:

- ``psnr_of_mean``: PSNR of the sample mean (an MMSE estimate as K grows);
- ``psnr_mean_of_samples``: the mean of the K samples' PSNRs (the grid's kind of number);
- ``sd_mean``: the per-pixel standard deviation across samples (``ddof = 1``), averaged
  over the image;
- ``coverage_1sd``, ``coverage_2sd``: among the pixels whose standard deviation is
  above zero, the fraction with ``|mean - truth| <= z sd``, z = 1, 2. A Gaussian
  posterior whose spread matched the error would give 0.68 and 0.95 (with K samples the
  mean's own error is ``sd / sqrt(K)`` smaller, and ``sd`` is itself estimated from K
  values, so small K reads lower). Pixels with no spread at all (clamped black
  background, where every sample and the truth sit on the clamp) say nothing about
  calibration and would count as covered, so they are left out; ``zero_sd_fraction``
  says how many there were (NaN coverage when every pixel has zero spread).

It writes ``<out>.h5`` (sample mean and standard deviation ``[n, 1, H, W]``, the
settings as attributes) and ``<out>.csv`` (one row per image).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from patchpnp.atomic import atomic_path
from patchpnp.formats import MEAN, POSTERIOR_COLUMNS, RECON, SD, read_split
from patchpnp.inference.cell import CellSpec, InferenceError, run_cell
from patchpnp.layout import NO_PADDING, WHOLE
from patchpnp.metrics.quality import LPIPSMetric, Scoring, psnr
from patchpnp.runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["POSTERIOR_COLUMNS", "posterior_stats", "run_posterior_cell"]


def posterior_stats(samples: np.ndarray, truth: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Per-image statistics of ``samples`` ``[K, n, ...]`` against ``truth`` ``[n, ...]``.

    Returns ``(columns, mean, sd)``: the :data:`POSTERIOR_COLUMNS` as arrays of length n,
    the sample mean and the standard deviation (``ddof = 1``; K >= 2).
    """
    samples = np.asarray(samples, np.float64)
    truth = np.asarray(truth, np.float64)
    if samples.ndim < 2 or samples.shape[1:] != truth.shape:
        raise InferenceError(
            f"samples {samples.shape} do not match truth {truth.shape} (expected [K, *truth])"
        )
    if samples.shape[0] < 2:
        raise InferenceError(f"a spread needs at least 2 samples, got {samples.shape[0]}")
    n = truth.shape[0]
    mean, sd = samples.mean(axis=0), samples.std(axis=0, ddof=1)
    error = np.abs(mean - truth)

    def per_image(a: np.ndarray) -> np.ndarray:
        return a.reshape(n, -1).mean(axis=1)

    spread = (sd > 0).reshape(n, -1)
    n_spread = spread.sum(axis=1)

    def coverage(z: float) -> np.ndarray:
        covered = ((error <= z * sd).reshape(n, -1) & spread).sum(axis=1)
        return np.where(n_spread > 0, covered / np.maximum(n_spread, 1), np.nan)

    columns = {
        "psnr_of_mean": psnr(mean, truth),
        "psnr_mean_of_samples": np.mean([psnr(s, truth) for s in samples], axis=0),
        "sd_mean": per_image(sd),
        "coverage_1sd": coverage(1),
        "coverage_2sd": coverage(2),
        "zero_sd_fraction": per_image(sd == 0),
    }
    return columns, mean, sd


def run_posterior_cell(
    data: str | Path,
    recon_path: str | Path,
    metrics_path: str | Path,
    *,
    samples: int,
    cell: CellSpec,
    runtime: Runtime | None = None,
    scoring: Scoring | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run ``samples`` posterior samples of ``cell`` (with :func:`run_cell`'s ``runtime``,
    ``scoring``, ``limit`` and ``progress``; the cell's ``sample`` is drawn here) and write
    their mean, spread and coverage; return the table."""
    if int(samples) != samples or samples < 2:
        raise InferenceError(f"samples must be an integer >= 2, got {samples}")
    if cell.sample != 0:
        raise InferenceError("run_posterior_cell draws the samples itself: leave sample at 0")
    split = read_split(data, limit)
    recons, seconds = [], np.zeros(len(split.images))
    lpips = LPIPSMetric(enabled=False)  # the statistics here are pixelwise; no AlexNet
    with tempfile.TemporaryDirectory() as scratch:
        for k in range(int(samples)):
            h5, csv = Path(scratch) / f"{k}.h5", Path(scratch) / f"{k}.csv"
            table = run_cell(
                data, h5, csv, cell=replace(cell, sample=k), runtime=runtime, scoring=scoring,
                limit=limit, lpips=lpips, progress=progress,
            )  # fmt: skip
            seconds += table["seconds"].to_numpy()
            with h5py.File(h5, "r") as f:
                recons.append(f[RECON][()])
            log.info("sample %d of %d: PSNR %.2f dB", k + 1, samples, table["psnr"].mean())
    columns, mean, sd = posterior_stats(np.stack(recons), split.images)
    out = pd.DataFrame(
        {
            "image": np.arange(len(split.images)),
            "source": split.source,
            "slice": split.slice,
            **columns,
            "samples": int(samples),
            "seconds": seconds,
        }
    )
    size = str(cell.size)
    attrs = {
        "task": cell.task,
        "solver": cell.solver,
        "size": size,
        "padding": cell.padding if size != WHOLE else NO_PADDING,
        "samples": int(samples),
        "seed": int(cell.seed),
    }
    with atomic_path(Path(recon_path)) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset(MEAN, data=mean.astype(np.float32))
        f.create_dataset(SD, data=sd.astype(np.float32))
        f.attrs.update(attrs)
    with atomic_path(Path(metrics_path)) as tmp:
        out.assign(**{k: v for k, v in attrs.items() if k != "samples"}).to_csv(tmp, index=False)
    log.info(
        "posterior (%d samples): PSNR of the mean %.2f dB, of a sample %.2f dB, coverage "
        "%.2f / %.2f",
        samples,
        out["psnr_of_mean"].mean(),
        out["psnr_mean_of_samples"].mean(),
        out["coverage_1sd"].mean(),
        out["coverage_2sd"].mean(),
    )
    return out
