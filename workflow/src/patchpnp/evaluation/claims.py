"""Verdicts on the paper's four claims and the padding ablation (ALGORITHMS.md section 10).

The paper's effects are 0.0-0.4 dB while per-image PSNR spreads 1-2 dB, so every claim
is judged on paired per-image differences ``d_i`` (same image, same solver noise through
common random numbers), never on differences of means. One block of rows per claim:

- ``a_training``: patch-trained ~ whole-trained prior, both inferring on whole images;
  ``d_i = PSNR(patch prior) - PSNR(whole prior)``. Comparable.
- ``b_inference``: shifted-grid ~ whole-image inference, every prior and solver;
  ``d_i = PSNR(p<P>, reflect) - PSNR(whole)``, same prior. Comparable. With several
  solvers, pooled rows per solver and patch size, then per solver (``solver`` named,
  the rest ``all``), precede the block's pooled row: the paper claims (b)
  "regardless of ... plug-and-play method".
- ``c_patch_trained_resilient``: the patch-trained prior loses less under patch
  inference; ``d_i = (patch prior: p<P> - whole) - (whole prior: p<P> - whole)``.
  Directional, claimed side > 0.
- ``padding``: reflection beats zero padding; ``d_i = PSNR(reflect) - PSNR(zeros)``.
  Directional, claimed side > 0.
- ``d_memory``: total memory falls from whole to the smallest patch, then plateaus
  (one tile per network call, the profile's ``inference_size`` sweep).

Each block ends with a pooled row (``dataset``, ``solver``, ``task``, ``size`` read
``all``): the mean over the block's cells of their mean ``d_i``, each cell weighted
equally. Its interval resamples images, not cells: the same image appears in every cell
of a dataset and its errors are shared between them, so a bootstrap that treated cells
as independent would shrink the interval by up to ``sqrt(cells)``. The cluster bootstrap
below draws the images of each dataset once per resample and moves all of an image's
``d`` values together. A block with nothing to compare (a grid with one prior, no zero
padding, no profile) is one pooled row that says what is missing.

Torch-free: it runs in the ``tables`` job next to :mod:`patchpnp.evaluation.aggregate`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from patchpnp.evaluation import profile_table
from patchpnp.evaluation.aggregate import (
    AggregateError,
    bootstrap_mean_ci,
    paired_difference,
    to_markdown,
    write_files,
)
from patchpnp.formats import FormatError
from patchpnp.layout import NO_PADDING as NONE
from patchpnp.layout import WHOLE, size_tag

__all__ = [
    "CLAIMS_COLUMNS",
    "claims_display",
    "claims_table",
    "cluster_bootstrap_mean",
    "inference_claims",
    "comparable_verdict",
    "directional_verdict",
    "memory_verdict",
    "read_profiles",
    "write_claims",
]

CLAIMS_COLUMNS = [
    "claim",
    "dataset",
    "solver",
    "task",
    "size",
    "estimate_db",
    "ci_lo_db",
    "ci_hi_db",
    "verdict",
    "prior",
    "n_images",
    "detail",
]
REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
ALL = "all"
REFLECT, ZEROS = "reflect", "zeros"
MEMORY_CLAIM = "d_memory"  # the claim without an interval (no PSNR difference)
N_BOOT = 10000


# -- verdicts ------------------------------------------------------------------------------
def comparable_verdict(lo: float, hi: float, margin: float) -> str:
    """An equivalence claim ("A performs comparably to B") against margin ``m``.

    Reproduced when the 95% interval lies inside ``[-m, m]`` (ends included);
    contradicted when it lies entirely outside ``[-m, m]`` (``lo > m`` or ``hi < -m``:
    the difference is surely larger than the margin); inconclusive otherwise, an interval
    straddling ``m`` or ``-m`` being too wide to tell.
    """
    if not margin > 0:
        raise AggregateError(f"the equivalence margin must be positive, got {margin}")
    if lo >= -margin and hi <= margin:
        return REPRODUCED
    if lo > margin or hi < -margin:
        return CONTRADICTED
    return INCONCLUSIVE


def directional_verdict(lo: float, hi: float) -> str:
    """A claim that the difference is positive: reproduced when the interval excludes 0
    above, contradicted when it excludes 0 below, else inconclusive."""
    if lo > 0:
        return REPRODUCED
    if hi < 0:
        return CONTRADICTED
    return INCONCLUSIVE


# Changes smaller than this are measurement noise, not a rise: the resident baseline of
# fresh processes differs by up to ~0.5 MiB on this CPU (libraries, heap layout).
MEMORY_TOLERANCE_MIB = 1.0


def memory_verdict(
    totals: list[float],
    tolerance: float = MEMORY_TOLERANCE_MIB,
    max_saving: float | None = None,
) -> str:
    """Claim (d) on total memory ``[whole, largest patch, ..., smallest patch]`` (MiB).

    Reproduced when memory never rises along the sequence (by more than ``tolerance``),
    ends below whole, and the last step saves less than the first (the plateau; it takes
    two patch sizes to see); contradicted when the smallest patch needs at least as much
    as the whole image (no benefit at all); inconclusive otherwise (it rises somewhere,
    or keeps falling as fast). ``max_saving``: what the smallest tile saves in working
    memory (the whole image's minus the tile's, measured without the resident noise);
    a saving within ``tolerance`` is real but too small for the total to show, so the
    verdict is inconclusive.
    """
    if len(totals) < 2 or (max_saving is not None and saving_below_noise(max_saving, tolerance)):
        return INCONCLUSIVE
    if totals[-1] >= totals[0]:
        return CONTRADICTED
    saved = -np.diff(totals)
    if len(saved) >= 2 and (saved >= -tolerance).all() and saved[-1] < saved[0]:
        return REPRODUCED
    return INCONCLUSIVE


def saving_below_noise(saving: float, tolerance: float = MEMORY_TOLERANCE_MIB) -> bool:
    """A working-memory saving that is real (> 0) but within the noise of the total."""
    return 0 < saving <= tolerance


# -- statistics ----------------------------------------------------------------------------
def cluster_bootstrap_mean(
    cells: list[tuple[str, pd.Series]], seed: int, n_boot: int = N_BOOT, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean over cells of each cell's mean, with a percentile interval from resampling
    images within each dataset.

    ``cells`` holds ``(dataset, d)`` with ``d`` indexed by image. Per resample, each
    dataset's images are drawn with replacement once, and every cell of that dataset is
    averaged with the same draw, so an image's ``d`` values move together across cells.
    The cells of one dataset must hold the same images (else :class:`AggregateError`).
    Identical values everywhere return ``(v, v, v)``, as :func:`bootstrap_mean_ci` does.
    """
    if not cells:
        raise AggregateError("cluster_bootstrap_mean: no cells")
    estimate = float(np.mean([d.mean() for _, d in cells]))
    flat = np.concatenate([d.to_numpy(float) for _, d in cells])
    if np.isnan(flat).any():
        raise AggregateError("cluster_bootstrap_mean: values contain NaN")
    if np.all(flat == flat[0]):
        return float(flat[0]), float(flat[0]), float(flat[0])
    rng = np.random.default_rng(seed)
    resampled = []
    for dataset in dict.fromkeys(ds for ds, _ in cells):
        ds_cells = [d for ds, d in cells if ds == dataset]
        images = ds_cells[0].index
        for d in ds_cells[1:]:
            if set(d.index) != set(images):
                raise AggregateError(
                    f"dataset {dataset!r}: the cells of one claim evaluate different images "
                    f"({sorted(set(d.index) ^ set(images))} appear in only some)"
                )
        matrix = np.stack([d.loc[images].to_numpy(float) for d in ds_cells])
        n = len(images)
        counts = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)
        resampled.append(counts @ matrix.T / n)  # (n_boot, cells of this dataset)
    pooled = np.concatenate(resampled, axis=1).mean(axis=1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(pooled, [tail, 1 - tail])
    return estimate, float(lo), float(hi)


# -- the dB claims -------------------------------------------------------------------------
class _Cells:
    """PSNR per image of every prior cell, keyed by (dataset, prior, solver, task, size,
    padding), with the grid's values in order of first appearance (patch sizes largest
    first) for a stable row order."""

    def __init__(self, metrics: pd.DataFrame):
        df = metrics[metrics["prior"] != "baseline"]
        if df.empty:
            raise AggregateError("claims: no prior cells in the metrics")
        keys = ["dataset", "prior", "solver", "task", "size", "padding"]
        self.psnr = {
            key: g.set_index("image")["psnr"].astype(float)
            for key, g in df.groupby(keys, sort=False)
        }
        self.order = {k: list(pd.unique(df[k])) for k in keys}
        patch_sizes = [s for s in self.order["size"] if s != WHOLE]
        self.patch_sizes = sorted(patch_sizes, key=lambda s: -int(s[1:]))

    def get(self, dataset, prior, solver, task, size, padding=None) -> pd.Series | None:
        padding = NONE if size == WHOLE else padding
        return self.psnr.get((dataset, prior, solver, task, size, padding))

    def diff(self, a: tuple, b: tuple) -> pd.Series:
        """``PSNR(a) - PSNR(b)`` per image, a and b being cell keys present here."""
        return _paired(self.get(*a), self.get(*b), a, b)

    def grid(self, *names: str):
        """Every combination of the named keys, in the grid's order."""
        values = [self.patch_sizes if n == "size" else self.order[n] for n in names]
        return pd.MultiIndex.from_product(values).tolist() if values else [()]


def _paired(x: pd.Series, y: pd.Series, a: tuple, b: tuple) -> pd.Series:
    """``x - y`` matched on the image, cells ``a`` and ``b`` named by their metrics path."""
    return paired_difference(x, y, _name(a), _name(b))


def _name(key: tuple) -> str:
    """``dataset/prior/solver/task/size-padding``, the cell's metrics path."""
    dataset, prior, solver, task, size = key[:5]
    padding = NONE if size == WHOLE else key[5]
    return f"{dataset}/{prior}/{solver}/{task}/{size}-{padding}"


def _training(cells: _Cells, whole: str, patch: str) -> list[dict]:
    out = []
    for dataset, solver, task in cells.grid("dataset", "solver", "task"):
        a, b = (dataset, patch, solver, task, WHOLE), (dataset, whole, solver, task, WHOLE)
        if cells.get(*a) is None or cells.get(*b) is None:
            continue
        d = cells.diff(a, b)
        detail = f"PSNR {patch} {cells.get(*a).mean():.2f}, {whole} {cells.get(*b).mean():.2f} dB"
        out.append(_cell(dataset, f"{patch}-{whole}", solver, task, WHOLE, d, detail))
    return out


def _same_prior(cells: _Cells, other: Callable[[str], tuple], names: tuple[str, str]) -> list:
    """Per (dataset, prior, solver, task, patch size): reflect-padded cell minus the cell
    ``other(size)`` names (its size and padding), same prior, solver and task."""
    out = []
    for dataset, prior, solver, task, size in cells.grid(
        "dataset", "prior", "solver", "task", "size"
    ):
        a = (dataset, prior, solver, task, size, REFLECT)
        b = (dataset, prior, solver, task, *other(size))
        if cells.get(*a) is None or cells.get(*b) is None:
            continue
        d = cells.diff(a, b)
        detail = f"PSNR {names[0].format(size=size)} {cells.get(*a).mean():.2f}, "
        detail += f"{names[1]} {cells.get(*b).mean():.2f} dB"
        out.append(_cell(dataset, prior, solver, task, size, d, detail))
    return out


def _inference(cells: _Cells) -> list[dict]:
    return _same_prior(cells, lambda size: (WHOLE,), ("{size}", "whole"))


def _resilience(cells: _Cells, whole: str, patch: str) -> list[dict]:
    out = []
    for dataset, solver, task, size in cells.grid("dataset", "solver", "task", "size"):
        keys = [
            (dataset, prior, solver, task, s, REFLECT)
            for prior in (patch, whole)
            for s in (size, WHOLE)
        ]
        if any(cells.get(*k) is None for k in keys):
            continue
        loss_patch, loss_whole = cells.diff(keys[0], keys[1]), cells.diff(keys[2], keys[3])
        d = _paired(loss_patch, loss_whole, keys[0], keys[2])
        detail = (
            f"{size} - whole: {patch} {loss_patch.mean():+.2f}, {whole} {loss_whole.mean():+.2f} dB"
        )
        out.append(_cell(dataset, f"{patch}-{whole}", solver, task, size, d, detail))
    return out


def _padding(cells: _Cells) -> list[dict]:
    return _same_prior(cells, lambda size: (size, ZEROS), ("reflect", "zeros"))


def _cell(dataset, prior, solver, task, size, d: pd.Series, detail: str) -> dict:
    keys = dict(dataset=dataset, prior=prior, solver=solver, task=task, size=size)
    return dict(keys=keys, d=d, detail=detail)


def _pooled_keys(prior: str) -> dict:
    return dict(dataset=ALL, prior=prior, solver=ALL, task=ALL, size=ALL)


def _row(claim: str, keys: dict, verdict: str, n_images: int, detail: str, ci=None) -> dict:
    est, lo, hi = ci if ci is not None else (math.nan,) * 3
    stats = dict(estimate_db=est, ci_lo_db=lo, ci_hi_db=hi, verdict=verdict)
    return dict(claim=claim, **keys, **stats, n_images=n_images, detail=detail)


def _db_block(
    claim: str,
    cells: list[dict],
    verdict: Callable[[float, float], str],
    seed: int,
    pooled_prior: str,
    missing: str,
    per_solver: bool = False,
) -> list[dict]:
    """Per-cell rows (bootstrap over images), with ``per_solver`` a pooled row per solver
    and patch size, then per solver (when there are several), and the pooled row
    (cluster bootstrap)."""
    if not cells:
        return [_row(claim, _pooled_keys(pooled_prior), INCONCLUSIVE, 0, f"not tested: {missing}")]
    rows = []
    for c in cells:
        ci = bootstrap_mean_ci(c["d"].to_numpy(), seed)
        rows.append(_row(claim, c["keys"], verdict(*ci[1:]), len(c["d"]), c["detail"], ci))
    solvers = list(dict.fromkeys(c["keys"]["solver"] for c in cells))
    if per_solver and len(solvers) > 1:
        for solver in solvers:
            mine = [c for c in cells if c["keys"]["solver"] == solver]
            keys = _pooled_keys(pooled_prior) | {"solver": solver}
            sizes = list(dict.fromkeys(c["keys"]["size"] for c in mine))
            for size in sizes if len(sizes) > 1 else []:
                at = [c for c in mine if c["keys"]["size"] == size]
                rows.append(_pooled_row(claim, keys | {"size": size}, at, verdict, seed))
            rows.append(_pooled_row(claim, keys, mine, verdict, seed))
    rows.append(_pooled_row(claim, _pooled_keys(pooled_prior), cells, verdict, seed))
    return rows


def _pooled_row(claim: str, keys: dict, cells: list[dict], verdict, seed: int) -> dict:
    """The pooled row of ``cells``: cluster bootstrap over each dataset's images."""
    ci = cluster_bootstrap_mean([(c["keys"]["dataset"], c["d"]) for c in cells], seed)
    n_images = len({(c["keys"]["dataset"], i) for c in cells for i in c["d"].index})
    detail = (
        f"mean of {len(cells)} cells, equal weight; images resampled within each dataset, "
        f"together across cells"
    )
    return _row(claim, keys, verdict(*ci[1:]), n_images, detail, ci)


# -- memory ----------------------------------------------------------------------------------
def read_profiles(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The profile tables claim (d) reads (:func:`patchpnp.formats.read_profiles`)."""
    try:
        return profile_table.read_profiles(list(paths))
    except FormatError as err:
        raise AggregateError(str(err)) from err


def _memory_rows(profiles: pd.DataFrame, prior: str) -> list[dict]:
    """One row per (solver, image size) of the inference-size sweep, then the pooled row:
    reproduced when every solver's profile is, contradicted when any one's is (a solver
    without any saving is a counter-example to the general claim), else inconclusive."""
    claim, rows, verdicts = MEMORY_CLAIM, [], []
    sweep = profiles[profiles["sweep"] == "inference_size"]
    for (solver, side), g in sweep.groupby(["solver", "image_size"], sort=False):
        whole = g.loc[g["mode"] == WHOLE, "peak_total_mib"].astype(float)
        one_tile = g[(g["mode"] == "patch") & (g["patch_batch"].astype(str) == "1")]
        patches = (
            one_tile.groupby("inference_size")["peak_total_mib"].mean().sort_index(ascending=False)
        )
        if whole.empty or patches.empty:
            verdict, detail = INCONCLUSIVE, "not measured: needs whole and one-tile patch rows"
        else:
            working = g.loc[g["mode"] == WHOLE, "peak_working_mib"].astype(float).mean()
            sizes = one_tile["inference_size"].astype(int)
            tile_working = one_tile.loc[sizes == sizes.min(), "peak_working_mib"].astype(float)
            max_saving = working - tile_working.mean()
            totals = [float(whole.mean()), *patches.astype(float)]
            labels = [WHOLE, *(size_tag(p) for p in patches.index)]
            steps = [f"{labels[0]} {totals[0]:.0f}"] + [
                f"{lab} {t:.0f}" + (f" ({(t - prev) / prev:+.0%})" if prev > 0 else "")
                for lab, t, prev in zip(labels[1:], totals[1:], totals[:-1], strict=True)
            ]
            verdict = memory_verdict(totals, max_saving=max_saving)
            detail = "total MiB, one tile per call: " + ", ".join(steps)
            if saving_below_noise(max_saving):
                detail += (
                    f"; the smallest tile saves {max_saving:.2f} MiB of working memory, "
                    f"within the {MEMORY_TOLERANCE_MIB:g} MiB noise of the total"
                )
            elif len(totals) == 2 and verdict == INCONCLUSIVE:
                detail += "; one patch size shows no plateau"
        verdicts.append(verdict)
        keys = dict(dataset=f"profile N={int(side)}", prior=prior, solver=solver, task="denoise")
        rows.append(_row(claim, keys | {"size": ALL}, verdict, 1, detail))
    if not rows:
        detail = "not tested: needs the profile's inference-size sweep"
        return [_row(claim, _pooled_keys(prior), INCONCLUSIVE, 0, detail)]
    if all(v == REPRODUCED for v in verdicts):
        pooled = REPRODUCED
    elif CONTRADICTED in verdicts:
        pooled = CONTRADICTED
    else:
        pooled = INCONCLUSIVE
    detail = ", ".join(f"{r['solver']} ({r['dataset']}): {r['verdict']}" for r in rows)
    rows.append(_row(claim, _pooled_keys(prior), pooled, 1, detail))
    return rows


# -- the table -------------------------------------------------------------------------------
def claims_table(
    metrics: pd.DataFrame,
    profiles: pd.DataFrame | None,
    *,
    seed: int,
    margin_db: float = 0.5,
    whole_prior: str = "whole",
    patch_prior: str = "patch",
    profile_prior: str = "n/a",
) -> pd.DataFrame:
    """Every claim's rows (see the module doc), in the columns of ``CLAIMS_COLUMNS``.

    ``metrics`` is :func:`patchpnp.evaluation.aggregate.read_metrics`'s table; ``profiles`` the
    profile rows (:func:`read_profiles`) or None. ``whole_prior`` / ``patch_prior`` name
    the whole-image and patch-trained priors of claims (a) and (c); ``profile_prior`` is
    the profiled prior, shown in the memory rows. Cells are paired strictly on ``image``:
    two cells holding different images raise :class:`AggregateError` naming both.
    """
    cells = _Cells(metrics)
    pair = f"{patch_prior}-{whole_prior}"
    both = f"priors {whole_prior!r} and {patch_prior!r}"
    comparable = partial(comparable_verdict, margin=margin_db)
    blocks = [
        ("a_training", _training(cells, whole_prior, patch_prior), comparable, pair,
         f"needs whole-image cells of {both}"),
        ("b_inference", _inference(cells), comparable, ALL,
         "needs a reflect-padded patch cell and the whole cell of its prior"),
        ("c_patch_trained_resilient", _resilience(cells, whole_prior, patch_prior),
         directional_verdict, pair, f"needs reflect-padded patch and whole cells of {both}"),
        ("padding", _padding(cells), directional_verdict, ALL,
         "needs a zeros-padded cell beside its reflect-padded one"),
    ]  # fmt: skip
    rows = [
        row
        for claim, c, v, prior, why in blocks
        for row in _db_block(claim, c, v, seed, prior, why, per_solver=claim == "b_inference")
    ]
    profiles = profiles if profiles is not None else read_profiles([])
    rows += _memory_rows(profiles, profile_prior)
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS).astype({"n_images": int})


def inference_claims(metrics: pd.DataFrame, *, seed: int, margin_db: float = 0.5) -> pd.DataFrame:
    """Claim (b) alone, with its per-solver pooled rows: ``snakemake solvers``' verdicts."""
    rows = _db_block(
        "b_inference",
        _inference(_Cells(metrics)),
        partial(comparable_verdict, margin=margin_db),
        seed,
        ALL,
        "needs a reflect-padded patch cell and the whole cell of its prior",
        per_solver=True,
    )
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS).astype({"n_images": int})


def claims_display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as printed: estimate and interval in dB to 3 decimals, signed."""

    def num(v) -> str:
        return "" if pd.isna(v) else f"{v:+.3f}"

    out = table[["claim", "dataset", "prior", "solver", "task", "size", "n_images"]].copy()
    out["estimate (dB)"] = table["estimate_db"].map(num)
    out["95% interval (dB)"] = [
        "" if pd.isna(lo) else f"[{num(lo)}, {num(hi)}]"
        for lo, hi in zip(table["ci_lo_db"], table["ci_hi_db"], strict=True)
    ]
    out["verdict"], out["detail"] = table["verdict"], table["detail"]
    return out


def write_claims(
    table: pd.DataFrame, outdir: str | os.PathLike, margin_db: float
) -> dict[str, Path]:
    """Write ``claims.csv`` and ``claims.md`` atomically; returns the paths by file name."""
    preface = (
        "# Claim verdicts\n\n"
        "Paired per-image PSNR differences with 95% bootstrap intervals over images "
        "(ALGORITHMS.md section 10). Comparable claims (a, b) are reproduced when the "
        f"interval lies inside [-{margin_db:g}, {margin_db:g}] dB and contradicted when it "
        "lies entirely outside; directional claims (c, padding) when it excludes 0 on the "
        "claimed (positive) or the other side. A block's pooled row (`all`) averages its "
        "cells with equal weight; its interval resamples each dataset's images, an image's "
        "differences moving together across cells. Memory (d): total memory never rises "
        f"(by more than {MEMORY_TOLERANCE_MIB:g} MiB, the noise of a fresh process's resident "
        "baseline) from whole to the smallest patch, and the last step saves less than the "
        "first.\n\n"
    )
    writers = {
        "claims.csv": lambda p: table.to_csv(p, index=False),
        "claims.md": lambda p: p.write_text(
            preface + to_markdown(claims_display(table)), encoding="utf-8"
        ),
    }
    return write_files(outdir, writers)
