"""Verdicts on the paper's four claims and the padding ablation (docs/methods.md section 10).

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
- ``d_memory_falls`` and ``d_memory_plateaus``: claim (d) in its two parts, on total
  memory ``T`` over decreasing patch sizes (one tile per network call): it *falls* from
  the whole image to the smallest patch beyond the measurement noise, and it
  *plateaus*: the relative saving of each step down, ``(T(2P) - T(P)) / T(2P)``,
  shrinks from the first step to the last and the last is below ``plateau_fraction``.
  Judged on the paper-scale profile (whole, 128, 64, 32 at the paper's image sizes)
  when there is one, else on the grid's profiles; each row names its source.

Each block ends with pooled rows (``dataset``, ``solver``, ``task`` read ``all``): one
per inference size when the block has several (N/2 and N/4 answer different questions),
and one over every size (``size`` ``all``, the block's last row). A pooled row of an
equivalence claim (a, b) is a family verdict, an intersection-union test: the paper's
claims are universal ("regardless of training scheme or plug-and-play method"), so the
row is reproduced only when every cell in it is, contradicted when any cell is, and
inconclusive otherwise. Averaging cannot stand in for that: a -0.7 dB cell and a -0.2 dB
cell average to a passing -0.45, and cells of opposite sign cancel. The pooled mean and
its interval stay beside the verdict as a description. A directional claim's pooled row
(c, padding) tests the mean effect. Every pooled row's ``detail`` counts its cells by
verdict.

The pooled mean weights the block's cells equally. Its interval resamples images, not
cells: the same image appears in every cell of a dataset and its errors are shared
between them, so a bootstrap that treated cells as independent would shrink the
interval by up to ``sqrt(cells)``. The cluster bootstrap below draws the images of each
dataset once per resample and moves all of an image's ``d`` values together. A block
with nothing to compare (a grid with one prior, no zero padding, no profile) is one
pooled row that says what is missing.

Torch-free: it runs in the ``tables`` job next to :mod:`patchpnp.evaluation.aggregate`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
from patchpnp.layout import CLAIMS_STEM, WHOLE, size_tag
from patchpnp.layout import NO_PADDING as NONE

__all__ = [
    "CLAIMS_COLUMNS",
    "MEMORY_CLAIMS",
    "ClaimSettings",
    "claims_display",
    "claims_table",
    "cluster_bootstrap_linear",
    "cluster_bootstrap_mean",
    "comparable_verdict",
    "directional_verdict",
    "family_verdict",
    "inference_claims",
    "memory_falls_verdict",
    "memory_plateau_verdict",
    "memory_series",
    "read_paper_scale",
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
# Claim (d) in its two parts, the claims without an interval (no PSNR difference).
MEMORY_FALLS, MEMORY_PLATEAUS = "d_memory_falls", "d_memory_plateaus"
MEMORY_CLAIMS = (MEMORY_FALLS, MEMORY_PLATEAUS)
PLATEAU_FRACTION = 0.10  # the default of claims.plateau_fraction
N_BOOT = 10000


@dataclass(frozen=True)
class ClaimSettings:
    """How the claims are judged (:func:`claims_table`): the equivalence margin (dB) of
    claims (a) and (b), the whole-image and patch-trained priors of claims (a) and (c),
    the profiled prior shown in the memory rows and claim (d)'s plateau bar."""

    margin_db: float = 0.5
    whole_prior: str = WHOLE
    patch_prior: str = "patch"
    profile_prior: str = "n/a"
    plateau_fraction: float = PLATEAU_FRACTION


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


def family_verdict(verdicts: Iterable[str]) -> str:
    """A universal claim over a family of cells (an intersection-union test): reproduced
    when every cell is, contradicted when any cell is, inconclusive otherwise."""
    verdicts = list(verdicts)
    if not verdicts:
        raise AggregateError("family_verdict: no cells")
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    return REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE


def verdict_counts(verdicts: Iterable[str]) -> str:
    """``cells reproduced / inconclusive / contradicted: r / i / c``."""
    verdicts = list(verdicts)
    counts = " / ".join(str(verdicts.count(v)) for v in (REPRODUCED, INCONCLUSIVE, CONTRADICTED))
    return f"cells reproduced / inconclusive / contradicted: {counts}"


# Changes smaller than this are measurement noise, not a rise: the resident baseline of
# fresh processes differs by up to ~0.5 MiB on this CPU (libraries, heap layout).
MEMORY_TOLERANCE_MIB = 1.0


def memory_falls_verdict(
    totals: list[float],
    tolerance: float = MEMORY_TOLERANCE_MIB,
    max_saving: float | None = None,
) -> str:
    """Claim (d), first part, on total memory ``[whole, largest patch, ..., smallest]``
    (MiB): memory falls from the whole image to the smallest patch.

    Reproduced when the smallest patch needs more than ``tolerance`` less than the whole
    image; contradicted when it needs at least as much and its working memory (the whole
    image's minus the tile's, ``max_saving``, measured without the resident noise) saves
    nothing either; inconclusive otherwise: a saving within the noise of the total.
    """
    if len(totals) < 2:
        return INCONCLUSIVE
    fall = totals[0] - totals[-1]
    if fall > tolerance:
        return REPRODUCED
    if fall <= 0 and not (max_saving is not None and saving_below_noise(max_saving, tolerance)):
        return CONTRADICTED
    return INCONCLUSIVE


def relative_savings(totals: list[float]) -> np.ndarray:
    """What each step down saves, relative to the step's larger size: ``(T(2P) - T(P)) /
    T(2P)`` (the first step from the whole image)."""
    t = np.asarray(totals, dtype=float)
    return (t[:-1] - t[1:]) / t[:-1]


def memory_plateau_verdict(
    totals: list[float],
    fraction: float = PLATEAU_FRACTION,
    tolerance: float = MEMORY_TOLERANCE_MIB,
) -> str:
    """Claim (d), second part: the saving plateaus as the patch shrinks.

    The relative saving of each step (:func:`relative_savings`) must shrink from the
    first step to the last, and the last must be below ``fraction``: reproduced then
    (a last step that saves no more than ``tolerance`` MiB has shrunk to the noise, which
    counts as shrinking); contradicted when the last step still saves ``fraction`` or
    more (memory keeps falling in proportion, e.g. pure P^2 scaling, 75% a halving: no
    plateau within the sizes measured); inconclusive otherwise, or with fewer than two
    steps (one patch size shows no plateau).
    """
    if not 0 < fraction < 1:
        raise AggregateError(f"plateau_fraction must be in (0, 1), got {fraction}")
    if len(totals) < 3:
        return INCONCLUSIVE
    r = relative_savings(totals)
    if r[-1] >= fraction:
        return CONTRADICTED
    last_in_noise = totals[-2] - totals[-1] <= tolerance
    return REPRODUCED if r[-1] < r[0] or last_in_noise else INCONCLUSIVE


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
    flat = _checked_values(cells, "cluster_bootstrap_mean")
    if np.all(flat == flat[0]):
        return float(flat[0]), float(flat[0]), float(flat[0])
    estimate = float(np.mean([d.mean() for _, d in cells]))
    pooled = _dataset_draws(cells, seed, n_boot).mean(axis=1)
    return (estimate, *_percentiles(pooled, level))


def cluster_bootstrap_linear(
    terms: list[tuple[str, pd.Series, float]],
    seed: int,
    n_boot: int = N_BOOT,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """A weighted sum of means, ``sum_j w_j * mean(d_j)``, with a percentile interval
    from resampling images within each dataset, as :func:`cluster_bootstrap_mean` does.

    ``terms`` holds ``(dataset, d, w)``. The terms of one dataset share each resample's
    draw (they must hold the same images); different datasets are drawn independently,
    so a contrast between two disjoint image sets (``w`` of opposite signs on terms of
    different datasets) resamples the two sets independently. Terms whose values are
    each constant return ``(v, v, v)``: no resample can move them.
    """
    cells = [(dataset, d) for dataset, d, _ in terms]
    _checked_values(cells, "cluster_bootstrap_linear")
    weights = np.array([w for _, _, w in terms], dtype=float)
    estimate = float(sum(w * d.mean() for (_, d), w in zip(cells, weights, strict=True)))
    if all(np.all(d.to_numpy(float) == d.iloc[0]) for _, d in cells):
        return estimate, estimate, estimate
    return (estimate, *_percentiles(_dataset_draws(cells, seed, n_boot) @ weights, level))


def _checked_values(cells: list[tuple[str, pd.Series]], caller: str) -> np.ndarray:
    """Every cell's values in one array, refusing no cells and NaN."""
    if not cells:
        raise AggregateError(f"{caller}: no cells")
    flat = np.concatenate([d.to_numpy(float) for _, d in cells])
    if np.isnan(flat).any():
        raise AggregateError(f"{caller}: values contain NaN")
    return flat


def _dataset_draws(cells: list[tuple[str, pd.Series]], seed: int, n_boot: int) -> np.ndarray:
    """Each cell's mean over ``n_boot`` resamples, ``(n_boot, cells)``: per resample each
    dataset's images drawn with replacement once (datasets in order of first appearance,
    from one generator seeded ``seed``), every cell of that dataset averaged with it."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, len(cells)))
    for dataset in dict.fromkeys(ds for ds, _ in cells):
        columns = [j for j, (ds, _) in enumerate(cells) if ds == dataset]
        images = cells[columns[0]][1].index
        for j in columns[1:]:
            d = cells[j][1]
            if set(d.index) != set(images):
                raise AggregateError(
                    f"dataset {dataset!r}: the cells of one claim evaluate different images "
                    f"({sorted(set(d.index) ^ set(images))} appear in only some)"
                )
        matrix = np.stack([cells[j][1].loc[images].to_numpy(float) for j in columns])
        n = len(images)
        counts = rng.multinomial(n, np.full(n, 1 / n), size=n_boot)
        out[:, columns] = counts @ matrix.T / n
    return out


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1 - level) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail])
    return float(lo), float(hi)


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
    return _same_prior(cells, lambda size: (WHOLE,), ("{size}", WHOLE))


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
    return _same_prior(cells, lambda size: (size, ZEROS), (REFLECT, ZEROS))


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
    family: bool = False,
) -> list[dict]:
    """Per-cell rows (bootstrap over images), then pooled rows (cluster bootstrap): with
    ``per_solver`` (and several solvers) one per solver and patch size and one per
    solver; one per inference size when there are several; the block's row over every
    cell last. ``family``: pooled rows are family verdicts on their cells' verdicts (an
    equivalence claim), else tests of the pooled mean (a directional claim)."""
    if not cells:
        return [_row(claim, _pooled_keys(pooled_prior), INCONCLUSIVE, 0, f"not tested: {missing}")]
    rows = []
    for c in cells:
        ci = bootstrap_mean_ci(c["d"].to_numpy(), seed)
        c["verdict"] = verdict(*ci[1:])
        rows.append(_row(claim, c["keys"], c["verdict"], len(c["d"]), c["detail"], ci))
    pool = partial(_pooled_row, claim, verdict=verdict, seed=seed, family=family)
    solvers = list(dict.fromkeys(c["keys"]["solver"] for c in cells))
    if per_solver and len(solvers) > 1:
        for solver in solvers:
            mine = [c for c in cells if c["keys"]["solver"] == solver]
            keys = _pooled_keys(pooled_prior) | {"solver": solver}
            rows += [pool(keys | {"size": size}, at) for size, at in _by_size(mine)]
            rows.append(pool(keys, mine))
    rows += [pool(_pooled_keys(pooled_prior) | {"size": size}, at) for size, at in _by_size(cells)]
    rows.append(pool(_pooled_keys(pooled_prior), cells))
    return rows


def _by_size(cells: list[dict]) -> list[tuple[str, list[dict]]]:
    """The cells grouped by inference size, in their order; nothing when there is one."""
    sizes = list(dict.fromkeys(c["keys"]["size"] for c in cells))
    if len(sizes) < 2:
        return []
    return [(size, [c for c in cells if c["keys"]["size"] == size]) for size in sizes]


def _pooled_row(
    claim: str, keys: dict, cells: list[dict], *, verdict, seed: int, family: bool
) -> dict:
    """The pooled row of ``cells``: the mean over cells with its cluster-bootstrap
    interval, and the family verdict of the cells (``family``) or the mean's verdict."""
    ci = cluster_bootstrap_mean([(c["keys"]["dataset"], c["d"]) for c in cells], seed)
    n_images = len({(c["keys"]["dataset"], i) for c in cells for i in c["d"].index})
    counts = verdict_counts(c["verdict"] for c in cells)
    if family:
        judged = family_verdict(c["verdict"] for c in cells)
        detail = f"{counts}; reproduced only if every cell is (intersection-union)"
    else:
        judged = verdict(*ci[1:])
        detail = f"{counts}; verdict on the mean"
    detail += (
        f"; mean of {len(cells)} cells, equal weight, images resampled within each "
        "dataset, together across cells"
    )
    return _row(claim, keys, judged, n_images, detail, ci)


# -- memory ----------------------------------------------------------------------------------
def read_profiles(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The grid's profile tables claim (d) reads (:mod:`patchpnp.evaluation.profile_table`)."""
    try:
        return profile_table.read_profiles(list(paths))
    except FormatError as err:
        raise AggregateError(str(err)) from err


def read_paper_scale(path: str | os.PathLike) -> pd.DataFrame:
    """The paper-scale profile claim (d) prefers (:mod:`patchpnp.evaluation.profile_table`)."""
    try:
        return profile_table.read_paper_scale(path)
    except FormatError as err:
        raise AggregateError(str(err)) from err


GRID_PROFILES = "the grid's profiles (results/profile/<solver>.csv)"
PAPER_SCALE_PROFILE = "the paper-scale profile (results/profile/paper_scale.csv)"


def memory_series(profiles: pd.DataFrame, paper_scale: pd.DataFrame | None = None) -> list[dict]:
    """The total-memory series claim (d) is judged on: per (solver, image size), the whole
    image then each patch size, largest first, one tile per network call.

    From the paper-scale profile (:func:`patchpnp.evaluation.profile_table.read_paper_scale`:
    ``patch_batch_mode`` whole and ``one``, measured rows) when it is given and has any,
    else from the grid's profiles (their ``inference_size`` sweep). Each series holds
    ``source``, ``label`` (``profile N=64``, ``paper-scale N=320``), ``solver``,
    ``sizes`` (``whole``, ``p128``, ...), ``totals`` (MiB) and ``max_saving``: the whole
    image's working memory minus the smallest tile's (None where one is missing).
    """
    if paper_scale is not None and not paper_scale.empty:
        df = paper_scale[paper_scale["status"].astype(str) == "measured"]
        df = df[df["patch_batch_mode"].isin([WHOLE, "one"])]
        if not df.empty:
            whole = df["patch_batch_mode"] == WHOLE
            return _series(df.assign(whole=whole), PAPER_SCALE_PROFILE, "paper-scale")
    sweep = profiles[profiles["sweep"] == "inference_size"]
    sweep = sweep[(sweep["mode"] == WHOLE) | (sweep["patch_batch"].astype(str) == "1")]
    return _series(sweep.assign(whole=sweep["mode"] == WHOLE), GRID_PROFILES, "profile")


def _series(df: pd.DataFrame, source: str, label: str) -> list[dict]:
    out = []
    for (solver, side), g in df.groupby(["solver", "image_size"], sort=False):
        whole, tiles = g[g["whole"]], g[~g["whole"]]
        if whole.empty or tiles.empty:
            continue
        per_size = tiles.groupby(tiles["inference_size"].astype(int))
        totals = per_size["peak_total_mib"].mean().sort_index(ascending=False).astype(float)
        working = per_size["peak_working_mib"].mean().astype(float)
        whole_working = float(whole["peak_working_mib"].astype(float).mean())
        max_saving = whole_working - float(working.loc[totals.index[-1]])
        out.append(
            dict(
                source=source,
                label=f"{label} N={int(side)}",
                solver=solver,
                sizes=[WHOLE, *(size_tag(p) for p in totals.index)],
                totals=[float(whole["peak_total_mib"].astype(float).mean()), *totals],
                max_saving=None if math.isnan(max_saving) else max_saving,
            )
        )
    return out


def _memory_rows(series: list[dict], prior: str, fraction: float) -> list[dict]:
    """Per claim (d) part, one row per series, then the pooled row (a family verdict: a
    solver or image size without the effect is a counter-example to the general claim)."""
    if not series:
        detail = "not tested: needs whole and one-tile patch rows of a memory profile"
        return [
            _row(claim, _pooled_keys(prior), INCONCLUSIVE, 0, detail) for claim in MEMORY_CLAIMS
        ]
    rows = []
    for claim in MEMORY_CLAIMS:
        mine = []
        for s in series:
            totals, sizes = s["totals"], s["sizes"]
            if claim == MEMORY_FALLS:
                verdict = memory_falls_verdict(totals, max_saving=s["max_saving"])
                steps = ", ".join(f"{lab} {t:.0f}" for lab, t in zip(sizes, totals, strict=True))
                detail = f"total MiB, one tile per call: {steps}"
                fall = totals[0] - totals[-1]
                detail += f"; falls {fall:.1f} MiB ({fall / totals[0]:.0%})"
                detail += f", noise {MEMORY_TOLERANCE_MIB:g}"
                if s["max_saving"] is not None and saving_below_noise(s["max_saving"]):
                    detail += (
                        f"; the smallest tile saves {s['max_saving']:.2f} MiB of working "
                        f"memory, within the {MEMORY_TOLERANCE_MIB:g} MiB noise of the total"
                    )
            else:
                verdict = memory_plateau_verdict(totals, fraction)
                saved = relative_savings(totals)
                per_step = ", ".join(
                    f"{a}->{b} {r:+.1%}"
                    for a, b, r in zip(sizes[:-1], sizes[1:], saved, strict=True)
                )
                detail = f"relative saving per step: {per_step}"
                detail += f"; plateau: shrinking, last < {fraction:.0%}"
                if len(totals) < 3:
                    detail += "; one patch size shows no plateau"
            detail += f"; source: {s['source']}"
            keys = dict(dataset=s["label"], prior=prior, solver=s["solver"], task="denoise")
            rows.append(_row(claim, keys | {"size": ALL}, verdict, 1, detail))
            mine.append(rows[-1])
        verdicts = [r["verdict"] for r in mine]
        detail = f"{verdict_counts(verdicts)}; " + ", ".join(
            f"{r['solver']} ({r['dataset']}): {r['verdict']}" for r in mine
        )
        rows.append(_row(claim, _pooled_keys(prior), family_verdict(verdicts), 1, detail))
    return rows


# -- the table -------------------------------------------------------------------------------
def claims_table(
    metrics: pd.DataFrame,
    profiles: pd.DataFrame | None,
    *,
    seed: int,
    margin_db: float = 0.5,
    whole_prior: str = WHOLE,
    patch_prior: str = "patch",
    profile_prior: str = "n/a",
    paper_scale: pd.DataFrame | None = None,
    plateau_fraction: float = PLATEAU_FRACTION,
) -> pd.DataFrame:
    """Every claim's rows (see the module doc), in the columns of ``CLAIMS_COLUMNS``.

    ``metrics`` is :func:`patchpnp.evaluation.aggregate.read_metrics`'s table; ``profiles`` the
    profile rows (:func:`read_profiles`) or None; ``paper_scale`` the paper-scale profile
    (claim (d) is judged on it when given) or None. ``whole_prior`` / ``patch_prior`` name
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
        for row in _db_block(
            claim, c, v, seed, prior, why,
            per_solver=claim == "b_inference", family=v is comparable,
        )
    ]  # fmt: skip
    profiles = profiles if profiles is not None else read_profiles([])
    rows += _memory_rows(memory_series(profiles, paper_scale), profile_prior, plateau_fraction)
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
        family=True,
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
    table: pd.DataFrame,
    outdir: str | os.PathLike,
    margin_db: float,
    plateau_fraction: float = PLATEAU_FRACTION,
) -> dict[str, Path]:
    """Write ``claims.csv`` and ``claims.md`` atomically; returns the paths by file name."""
    preface = (
        "# Claim verdicts\n\n"
        "Paired per-image PSNR differences with 95% bootstrap intervals over images "
        "(docs/methods.md section 10). A cell of a comparable claim (a, b) is reproduced "
        f"when its interval lies inside [-{margin_db:g}, {margin_db:g}] dB and contradicted "
        "when it lies entirely outside; of a directional claim (c, padding) when it excludes "
        "0 on the claimed (positive) or the other side. Pooled rows (`all`; per inference "
        "size, then over every size) give the mean of their cells, equal weight, with an "
        "interval that resamples each dataset's images, an image's differences moving "
        "together across cells. Their verdict: for a comparable claim, which is universal, "
        "reproduced only when every cell is reproduced and contradicted when any cell is "
        "(the mean is a description, not the verdict); for a directional claim, the mean's. "
        "The detail counts the cells by verdict. Memory (d), on total memory with one tile "
        "per call: *falls* when the smallest patch needs more than "
        f"{MEMORY_TOLERANCE_MIB:g} MiB (the noise of a fresh process's resident baseline) "
        "less than the whole image; *plateaus* when the relative saving of each step down "
        "shrinks from the first step to the last and the last is below "
        f"{plateau_fraction:.0%}; the row names its profile.\n\n"
    )
    writers = {
        f"{CLAIMS_STEM}.csv": lambda p: table.to_csv(p, index=False),
        f"{CLAIMS_STEM}.md": lambda p: p.write_text(
            preface + to_markdown(claims_display(table)), encoding="utf-8"
        ),
    }
    return write_files(outdir, writers)
