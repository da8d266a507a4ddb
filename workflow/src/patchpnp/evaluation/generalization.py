"""Data efficiency and distribution shift (snakemake generalization; docs/methods.md
section 15): the table of its cells, the verdicts on its two claims and its figure.

A training domain (``trained_on``: ``mni_t1``, ``knee``, ``brain``) is a set of training
datasets and one shift dataset no prior of it saw. Its whole-image prior (``whole``) and
patch prior (``patch``), optionally more, are trained on ``n_train`` slices per training
dataset (a positive number, or ``all``) and evaluated on the grid's evaluation slices of
the training datasets (``in_distribution``) and of the shift dataset (``shifted``).
Cells use the grid's keyed streams: every prior and every ``n_train`` sees the same
measurement and noise on one image, so differences between priors are paired.

The table gives each cell's mean PSNR and SSIM and, on every prior's row of a cell, the
paired difference between the two priors trained on the same slices,
``dpsnr_patch_minus_whole_prior = mean_i [PSNR_i(patch) - PSNR_i(whole)]``, with its 95%
bootstrap interval over images (NaN where either prior lacks the cell).

Claims (directional, the machinery of :mod:`patchpnp.evaluation.claims`), per training
domain, with ``d_i = PSNR_i(patch) - PSNR_i(whole)`` at one ``n_train``:

- ``e_data_efficiency``: trained on few slices, the patch prior beats the whole-image
  prior: ``d_i`` over the in-distribution images of a cell (dataset, solver, task,
  size). Rows per cell, a pooled row per ``n_train`` (mean of its cells, images of each
  dataset resampled together across cells) and one over every ``n_train`` (``every``).
  The claim's own row is the pooled row of the smallest ``n_train``.
- ``f_shift``: the patch prior loses less than the whole-image prior under the shift:
  per (solver, task, size), ``mean_{i shifted} d_i - mean_{i in distribution} d_i``,
  each in-distribution image weighted equally (a difference of paired differences on
  two disjoint image sets); positive is the claimed side. Its interval resamples the
  shifted and the in-distribution images independently, each dataset's images within
  itself (:func:`patchpnp.evaluation.claims.cluster_bootstrap_linear`). Rows per cell,
  pooled per ``n_train`` and over every ``n_train`` as for ``e``.

A claim without the cells it needs is one ``inconclusive`` row saying what is missing.
Each inference size runs with one padding (the table has no padding column).

Torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from patchpnp.evaluation.aggregate import (
    AggregateError,
    _ordered,
    bootstrap_mean_ci,
    format_difference,
    read_metrics,
    to_markdown,
)
from patchpnp.evaluation.claims import (
    ALL,
    CLAIMS_COLUMNS,
    INCONCLUSIVE,
    _cell,
    _Cells,
    _db_block,
    _pooled_keys,
    _pooled_row,
    _row,
    claims_display,
    cluster_bootstrap_linear,
    directional_verdict,
    verdict_counts,
)
from patchpnp.evaluation.figures import _figure, _save
from patchpnp.evaluation.padis_table import PATCH_PRIOR, WHOLE_PRIOR, _write_stem
from patchpnp.evaluation.resolution import half_width
from patchpnp.layout import ALL_TRAINING, BASELINE

__all__ = [
    "GENERALIZATION_CLAIM_COLUMNS",
    "GENERALIZATION_COLUMNS",
    "TrainingGroup",
    "generalization_claims",
    "generalization_figure",
    "generalization_table",
    "generalization_table_command",
    "parse_group",
    "read_groups",
]

IN_DISTRIBUTION, SHIFTED = "in_distribution", "shifted"
E_CLAIM, F_CLAIM = "e_data_efficiency", "f_shift"
EVERY_N = "every"  # the n_train of a claim row pooled over every n_train
OWN_ROW = "the claim's own row: at the smallest n_train the patch prior beats the whole prior"
GENERALIZATION_COLUMNS = [
    "dataset",
    "domain",
    "trained_on",
    "prior",
    "n_train",
    "n_train_slices",
    "solver",
    "task",
    "size",
    "n_images",
    "psnr_mean",
    "ssim_mean",
    "dpsnr_patch_minus_whole_prior",
    "ci_lo",
    "ci_hi",
]
GENERALIZATION_CLAIM_COLUMNS = [*CLAIMS_COLUMNS, "trained_on", "n_train"]
_GROUP_TOKENS = "DOMAIN N_TRAIN N_TRAIN_SLICES SHIFT_DATASET METRICS.csv [METRICS.csv ...]"
_RUN = ["trained_on", "n_train"]


# -- the input -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingGroup:
    """The cells of the priors of one training ``domain`` trained on ``n_train`` slices
    per dataset (``"24"`` or ``"all"``): ``n_train_slices`` slices in all, evaluated in
    distribution and on the ``shift`` dataset; ``metrics`` their metrics CSVs."""

    domain: str
    n_train: str
    n_train_slices: int
    shift: str
    metrics: tuple[str, ...]


def _positive(text: str, what: str, group: str, alternative: str = "") -> int:
    if not str(text).isdigit() or int(text) < 1:
        raise AggregateError(
            f"--group {group}: {what} must be a positive integer{alternative}, got {text!r}"
        )
    return int(text)


def parse_group(tokens: Sequence[str]) -> TrainingGroup:
    """One ``--group`` (``DOMAIN N_TRAIN N_TRAIN_SLICES SHIFT_DATASET METRICS.csv ...``),
    checked: N_TRAIN a positive integer or ``all``, N_TRAIN_SLICES a positive integer and
    at least one metrics file."""
    tokens = [str(t) for t in tokens]
    if len(tokens) < 5:
        raise AggregateError(
            f"--group {' '.join(tokens)}: expected {_GROUP_TOKENS} (a group with no metrics "
            f"files?), got {len(tokens)} values"
        )
    domain, n_train, slices, shift, *metrics = tokens
    if n_train != ALL_TRAINING:
        n_train = str(_positive(n_train, "N_TRAIN", domain, f" or {ALL_TRAINING!r}"))
    return TrainingGroup(
        domain, n_train, _positive(slices, "N_TRAIN_SLICES", domain), shift, tuple(metrics)
    )


def _n_rank(n_train: str) -> float:
    """Numeric n_train ascending, ``all`` last."""
    return np.inf if n_train == ALL_TRAINING else float(n_train)


def _run_order(frame: pd.DataFrame, domains: Sequence[str]) -> pd.DataFrame:
    """``frame`` stably sorted by training domain (in the order of ``domains``), n_train
    (:func:`_n_rank`) and domain (in distribution first)."""
    rank = {d: i for i, d in enumerate(domains)}
    order = pd.DataFrame(
        {
            "trained_on": frame["trained_on"].map(rank),
            "n_train": frame["n_train"].map(_n_rank),
            "domain": frame["domain"] != IN_DISTRIBUTION,
        }
    )
    return frame.loc[order.sort_values(list(order), kind="stable").index].reset_index(drop=True)


def read_groups(groups: Sequence[TrainingGroup | Sequence[str]]) -> pd.DataFrame:
    """The groups' metrics (:func:`patchpnp.evaluation.aggregate.read_metrics`, per group)
    with ``trained_on``, ``n_train``, ``n_train_slices``, ``shift`` and ``domain``
    (``shifted`` on the shift dataset's rows), ordered by training domain (as given),
    ``n_train`` (ascending, ``all`` last) and domain (in distribution first). Groups of one
    (domain, n_train) are merged; they must agree on the slices and the shift dataset."""
    parsed = [g if isinstance(g, TrainingGroup) else parse_group(g) for g in groups]
    if not parsed:
        raise AggregateError(f"generalization: no groups; give --group {_GROUP_TOKENS}")
    seen: dict[tuple, TrainingGroup] = {}
    frames = []
    for g in parsed:
        first = seen.setdefault((g.domain, g.n_train), g)
        if (first.n_train_slices, first.shift) != (g.n_train_slices, g.shift):
            raise AggregateError(
                f"--group {g.domain} {g.n_train}: given twice with different N_TRAIN_SLICES or "
                f"SHIFT_DATASET ({first.n_train_slices} {first.shift} and "
                f"{g.n_train_slices} {g.shift})"
            )
        df = read_metrics(g.metrics)
        shifted = np.where(df["dataset"] == g.shift, SHIFTED, IN_DISTRIBUTION)
        frames.append(
            df.assign(trained_on=g.domain, n_train=g.n_train, n_train_slices=g.n_train_slices,
                      shift=g.shift, domain=shifted)
        )  # fmt: skip
    df = pd.concat(frames, ignore_index=True)
    dup = df.duplicated([*_RUN, "dataset", "prior", "solver", "task", "size", "padding", "image"])
    if dup.any():
        row = df.loc[dup.idxmax(), [*_RUN, "dataset", "prior", "solver", "task", "image"]]
        raise AggregateError(f"image listed twice in one group's cell: {row.to_dict()}")
    paddings = df[df["prior"] != BASELINE].groupby("size")["padding"].unique()
    several = {size: sorted(p) for size, p in paddings.items() if len(p) > 1}
    if several:
        raise AggregateError(f"generalization: one padding per inference size, got {several}")
    return _run_order(df, list(pd.unique(df["trained_on"])))


def _metrics(groups) -> pd.DataFrame:
    return groups if isinstance(groups, pd.DataFrame) else read_groups(groups)


def _differences(df: pd.DataFrame, whole: str, patch: str) -> dict[tuple, pd.Series]:
    """``PSNR(patch) - PSNR(whole)`` per image of every cell both priors ran, keyed by
    (trained_on, n_train, dataset, solver, task, size); unmatched images raise."""
    out = {}
    for (trained_on, n_train), part in df.groupby(_RUN, sort=False):
        if not (part["prior"] == patch).any():
            continue
        cells = _Cells(part)
        for dataset, prior, solver, task, size, padding in cells.psnr:
            a = (dataset, patch, solver, task, size, padding)
            b = (dataset, whole, solver, task, size, padding)
            if prior != patch or cells.get(*b) is None:
                continue
            try:
                d = cells.diff(a, b)
            except AggregateError as err:
                raise AggregateError(f"{trained_on}, n_train {n_train}: {err}") from None
            out[(trained_on, n_train, dataset, solver, task, size)] = d
    return out


# -- the table -------------------------------------------------------------------------------
def generalization_table(
    groups, *, seed: int, whole_prior: str = WHOLE_PRIOR, patch_prior: str = PATCH_PRIOR
) -> pd.DataFrame:
    """One row per (trained_on, n_train, dataset, prior, solver, task, size) cell in
    ``GENERALIZATION_COLUMNS`` (see the module doc). ``groups``: :class:`TrainingGroup`'s,
    ``--group`` token lists, or :func:`read_groups`'s frame."""
    df = _metrics(groups)
    diffs = _differences(df, whole_prior, patch_prior)
    keys = [*_RUN, "dataset", "prior", "solver", "task", "size", "padding"]
    out = (
        df.assign(psnr=df["psnr"].astype(float), ssim=df["ssim"].astype(float))
        .groupby(keys, sort=False)
        .agg(
            domain=("domain", "first"),
            n_train_slices=("n_train_slices", "first"),
            n_images=("image", "size"),
            psnr_mean=("psnr", "mean"),
            ssim_mean=("ssim", "mean"),
        )
        .reset_index()
    )
    intervals = {key: bootstrap_mean_ci(d.to_numpy(), seed) for key, d in diffs.items()}
    cell = out[[*_RUN, "dataset", "solver", "task", "size"]].itertuples(index=False, name=None)
    stats = [intervals.get(key, (np.nan,) * 3) for key in cell]
    out[["dpsnr_patch_minus_whole_prior", "ci_lo", "ci_hi"]] = np.array(stats, dtype=float)
    # The grid's order within each (trained_on, n_train, domain), then those by rank.
    out = _ordered(out, df, ["dataset", "task", "solver", "size", "prior"])
    return _run_order(out, list(pd.unique(df["trained_on"])))[GENERALIZATION_COLUMNS]


# -- the claims ------------------------------------------------------------------------------
def _efficiency_cells(diffs: dict, df: pd.DataFrame, pair: str) -> dict[tuple, list[dict]]:
    """``e``'s cells per (trained_on, n_train): the in-distribution differences."""
    shifted = df.loc[df["domain"] == SHIFTED, [*_RUN, "dataset"]]
    shifted = set(shifted.itertuples(index=False, name=None))
    out: dict[tuple, list[dict]] = {}
    for (trained_on, n_train, dataset, solver, task, size), d in diffs.items():
        if (trained_on, n_train, dataset) in shifted:
            continue
        detail = f"{pair} per in-distribution image of {dataset}"
        out.setdefault((trained_on, n_train), []).append(
            _cell(dataset, pair, solver, task, size, d, detail)
        )
    return out


def _shift_cells(diffs: dict, df: pd.DataFrame, pair: str) -> dict[tuple, list[dict]]:
    """``f``'s cells per (trained_on, n_train): per (solver, task, size), the shifted
    mean difference minus the in-distribution one, as weighted terms."""
    shift = df.groupby(_RUN, sort=False)["shift"].first()
    by_cell: dict[tuple, dict[str, list]] = {}
    for (trained_on, n_train, dataset, solver, task, size), d in diffs.items():
        side = SHIFTED if dataset == shift[(trained_on, n_train)] else IN_DISTRIBUTION
        sides = by_cell.setdefault((trained_on, n_train, solver, task, size), {})
        sides.setdefault(side, []).append((dataset, d))
    out: dict[tuple, list[dict]] = {}
    for (trained_on, n_train, solver, task, size), sides in by_cell.items():
        if len(sides) < 2:
            continue
        terms, means = [], {}
        for side, sign in ((SHIFTED, 1.0), (IN_DISTRIBUTION, -1.0)):
            n = sum(len(d) for _, d in sides[side])
            terms += [(ds, d, sign * len(d) / n) for ds, d in sides[side]]
            means[side] = (sum(float(d.sum()) for _, d in sides[side]) / n, n)
        names = ", ".join(ds for ds, _ in sides[IN_DISTRIBUTION])
        detail = (
            f"{pair}: shifted {means[SHIFTED][0]:+.2f} dB ({means[SHIFTED][1]} images), "
            f"in distribution ({names}) {means[IN_DISTRIBUTION][0]:+.2f} dB "
            f"({means[IN_DISTRIBUTION][1]} images)"
        )
        keys = dict(dataset=shift[(trained_on, n_train)], prior=pair, solver=solver, task=task,
                    size=size)  # fmt: skip
        out.setdefault((trained_on, n_train), []).append(
            dict(keys=keys, terms=terms, detail=detail)
        )
    return out


def _efficiency_judged(cells: list[dict], seed: int) -> list[dict]:
    """``e``'s cell rows (:func:`patchpnp.evaluation.claims._db_block`'s, its pooled rows
    left out: they are pooled per n_train here)."""
    pair = cells[0]["keys"]["prior"]
    return _db_block(E_CLAIM, cells, directional_verdict, seed, pair, "")[: len(cells)]


def _contrast_row(keys: dict, terms: list, detail: str, seed: int) -> dict:
    """An ``f`` row: the terms' weighted sum, its interval and directional verdict."""
    ci = cluster_bootstrap_linear(terms, seed)
    n_images = len({(ds, i) for ds, d, _ in terms for i in d.index})
    return _row(F_CLAIM, keys, directional_verdict(*ci[1:]), n_images, detail, ci)


def _shift_judged(cells: list[dict], seed: int) -> list[dict]:
    rows = []
    for c in cells:
        rows.append(_contrast_row(c["keys"], c["terms"], c["detail"], seed))
        c["verdict"] = rows[-1]["verdict"]
    return rows


def _shift_pooled(keys: dict, cells: list[dict], seed: int) -> dict:
    terms = [(ds, d, w / len(cells)) for c in cells for ds, d, w in c["terms"]]
    detail = (
        f"{verdict_counts(c['verdict'] for c in cells)}; verdict on the mean of {len(cells)} "
        "cells, equal weight; shifted and in-distribution images resampled independently, "
        "each dataset's images together across cells"
    )
    return _contrast_row(keys, terms, detail, seed)


def _claim_rows(
    claim: str,
    trained_on: str,
    by_n: dict[str, list[dict]],
    judge: Callable[[list[dict]], list[dict]],
    pool: Callable[[dict, list[dict]], dict],
    not_tested: dict,
) -> list[dict]:
    """Cell rows (``judge``) and a pooled row (``pool``) per n_train, then the pooled row
    over every n_train; ``not_tested`` when there is no cell at all."""
    if not by_n:
        return [not_tested | dict(trained_on=trained_on, n_train=EVERY_N)]
    rows = []
    pair = next(iter(by_n.values()))[0]["keys"]["prior"]
    for k, (n_train, cells) in enumerate(by_n.items()):
        judged = judge(cells)  # first: the pooled row counts its cells' verdicts
        pooled = pool(_pooled_keys(pair), cells)
        if claim == E_CLAIM and k == 0:
            pooled["detail"] = f"{OWN_ROW} (n_train {n_train}); {pooled['detail']}"
        mine = [*judged, pooled]
        rows += [r | dict(trained_on=trained_on, n_train=n_train) for r in mine]
    if len(by_n) > 1:
        every = [c for cells in by_n.values() for c in cells]
        rows.append(pool(_pooled_keys(pair), every) | dict(trained_on=trained_on, n_train=EVERY_N))
    return rows


def generalization_claims(
    groups, *, seed: int, whole_prior: str = WHOLE_PRIOR, patch_prior: str = PATCH_PRIOR
) -> pd.DataFrame:
    """``e_data_efficiency`` and ``f_shift`` (module doc) per training domain, in
    ``GENERALIZATION_CLAIM_COLUMNS``; ``groups`` as :func:`generalization_table` takes."""
    df = _metrics(groups)
    diffs = _differences(df, whole_prior, patch_prior)
    pair = f"{patch_prior}-{whole_prior}"
    both = f"priors {whole_prior!r} and {patch_prior!r}"
    blocks = (
        (E_CLAIM, _efficiency_cells(diffs, df, pair), partial(_efficiency_judged, seed=seed),
         partial(_pooled_row, E_CLAIM, verdict=directional_verdict, seed=seed, family=False),
         f"needs in-distribution cells of {both}"),
        (F_CLAIM, _shift_cells(diffs, df, pair), partial(_shift_judged, seed=seed),
         partial(_shift_pooled, seed=seed),
         f"needs cells of {both} on the shift dataset and in distribution"),
    )  # fmt: skip
    rows = []
    for claim, cells, judge, pool, missing in blocks:
        for trained_on in pd.unique(df["trained_on"]):
            by_n = {n: c for (t, n), c in cells.items() if t == trained_on}
            shift = ", ".join(pd.unique(df.loc[df["trained_on"] == trained_on, "shift"]))
            why = missing + (f" ({shift!r})" if claim == F_CLAIM else "")
            not_tested = _db_block(claim, [], directional_verdict, seed, pair, why)[0]
            rows += _claim_rows(claim, trained_on, by_n, judge, pool, not_tested)
    return pd.DataFrame(rows, columns=GENERALIZATION_CLAIM_COLUMNS).astype({"n_images": int})


# -- the figure ------------------------------------------------------------------------------
def _tick(n_train: str, slices: int) -> str:
    return f"{n_train} ({slices})"


def generalization_figure(table: pd.DataFrame, stem) -> tuple[Path, Path]:
    """PSNR against n_train per prior (colour), in distribution solid and shifted dashed,
    each point the mean over the domain's datasets weighted by images; one panel per
    (training domain and task: rows; solver and size: columns). Writes ``<stem>.png``
    and ``<stem>.pdf``; returns their paths."""
    cells = table[table["prior"] != BASELINE].copy()
    if cells.empty:
        raise AggregateError("generalization figure: no prior cells in the table")
    cells["weighted"] = cells["psnr_mean"] * cells["n_images"]
    keys = ["trained_on", "task", "solver", "size", "prior", "domain", "n_train"]
    points = cells.groupby(keys, sort=False)[["weighted", "n_images"]].sum().reset_index()
    points["psnr"] = points["weighted"] / points["n_images"]
    rows = list(dict.fromkeys(zip(cells["trained_on"], cells["task"], strict=True)))
    columns = list(dict.fromkeys(zip(cells["solver"], cells["size"], strict=True)))
    priors = list(pd.unique(cells["prior"]))
    colours = {p: f"C{i}" for i, p in enumerate(priors)}
    styles = {IN_DISTRIBUTION: "-", SHIFTED: "--"}
    size = (3.4 * len(columns) + 0.6, 2.8 * len(rows))
    with _figure(len(rows), len(columns), size, "whitegrid") as (fig, axes):
        for i, (trained_on, task) in enumerate(rows):
            mine = cells[cells["trained_on"] == trained_on]
            ticks = dict(zip(mine["n_train"], mine["n_train_slices"], strict=True))
            x = {n: k for k, n in enumerate(ticks)}
            for j, (solver, inference) in enumerate(columns):
                ax = axes[i, j]
                here = points[
                    (points["trained_on"] == trained_on) & (points["task"] == task)
                    & (points["solver"] == solver) & (points["size"] == inference)
                ]  # fmt: skip
                for (prior, domain), line in here.groupby(["prior", "domain"], sort=False):
                    ax.plot(line["n_train"].map(x), line["psnr"], marker="o",
                            color=colours[prior], linestyle=styles[domain])  # fmt: skip
                if here.empty:
                    ax.text(0.5, 0.5, "no cells", ha="center", transform=ax.transAxes)
                ax.set_xticks(list(x.values()), [_tick(n, s) for n, s in ticks.items()])
                ax.set_xlim(-0.5, len(x) - 0.5)
                ax.set_title(f"trained on {trained_on}: {task}, {solver} {inference}")
                ax.set(xlabel="n_train (training slices)", ylabel="PSNR (dB)" if j == 0 else "")
        handles = [Line2D([], [], color=colours[p], marker="o", label=p) for p in priors]
        handles += [Line2D([], [], color="grey", linestyle=s, label=d) for d, s in styles.items()]
        axes[0, 0].legend(handles=handles, fontsize="small")
        return _save(fig, stem)


# -- the command -----------------------------------------------------------------------------
def _table_display(table: pd.DataFrame) -> pd.DataFrame:
    out = table[["trained_on", "n_train", "n_train_slices", "domain", "dataset", "prior",
                 "solver", "task", "size", "n_images"]].copy()  # fmt: skip
    out["PSNR (dB)"] = table["psnr_mean"].map(lambda v: f"{v:.2f}")
    out["SSIM"] = table["ssim_mean"].map(lambda v: f"{v:.3f}")
    diff = table[["dpsnr_patch_minus_whole_prior", "ci_lo", "ci_hi"]].to_numpy()
    out["patch - whole prior (dB)"] = [format_difference(*r) for r in diff]
    return out


def images_to_decide(n_images: int, half: float, estimate: float) -> float:
    """Images at which an interval of half-width ``half`` on ``n_images`` images, shrinking
    as ``1 / sqrt(n)``, would exclude 0 at ``estimate``: ``n (half / |estimate|)^2``
    (NaN without an interval or at a zero estimate)."""
    if not (half > 0 and abs(estimate) > 0):
        return float("nan")
    return float(np.ceil(n_images * (half / abs(estimate)) ** 2))


def _claims_text(claims: pd.DataFrame) -> pd.DataFrame:
    out = claims_display(claims)
    out.insert(1, "trained_on", claims["trained_on"])
    out.insert(2, "n_train", claims["n_train"])
    half = half_width(claims["ci_lo_db"], claims["ci_hi_db"])
    out.insert(out.columns.get_loc("verdict"), "half-width (dB)",
               half.map(lambda v: "" if pd.isna(v) else f"{v:.3f}"))  # fmt: skip
    needed = [
        images_to_decide(n, h, e) if v == INCONCLUSIVE else float("nan")
        for n, h, e, v in zip(
            claims["n_images"], half, claims["estimate_db"], claims["verdict"], strict=True
        )
    ]
    out.insert(out.columns.get_loc("verdict") + 1, "images to decide",
               ["" if np.isnan(v) else f"{v:.0f}" for v in needed])  # fmt: skip
    return out


def generalization_table_command(
    groups: Sequence[Sequence[str]],
    *,
    table: str,
    claims: str,
    figure: str,
    seed: int = 0,
    whole_prior: str = WHOLE_PRIOR,
    patch_prior: str = PATCH_PRIOR,
) -> str:
    """``patchpnp generalization-table``: the table, the two claims' verdicts and the
    figure; returns the pooled verdicts (the claim's own row of ``e`` first)."""
    df = read_groups(groups)
    for prior, flag in ((whole_prior, "--whole-prior"), (patch_prior, "--patch-prior")):
        if not (df["prior"] == prior).any():
            raise AggregateError(
                f"generalization-table: prior {prior!r} ({flag}) has no cells in any group; "
                f"the groups hold priors {sorted(set(df['prior']))}"
            )
    kw = dict(seed=seed, whole_prior=whole_prior, patch_prior=patch_prior)
    out, verdicts = generalization_table(df, **kw), generalization_claims(df, **kw)
    same = (
        f"between the patch prior ({patch_prior}) and the whole-image prior ({whole_prior}) "
        "trained on the same slices (same n_train), on the same images with the same keyed "
        "measurement and noise streams"
    )
    preface = (
        "# Data efficiency and distribution shift\n\n"
        "Mean PSNR / SSIM per cell of the priors of a training domain (`trained_on`) trained "
        "on `n_train` slices per training dataset (`n_train_slices` in all), evaluated in "
        "distribution and on the shift dataset no prior saw (`shifted`; docs/methods.md "
        f"section 15). `patch - whole prior`: the paired per-image PSNR difference {same}, "
        "with its 95% bootstrap interval over images; the same on every prior's row of a "
        "cell, blank where either prior lacks it.\n\n"
    )
    claims_preface = (
        "# Data efficiency and distribution shift: claims\n\n"
        f"Directional verdicts (docs/methods.md sections 10 and 15) on PSNR differences {same}: "
        "reproduced when the 95% interval excludes 0 on the claimed (positive) side, "
        "contradicted when it excludes 0 on the other, else inconclusive. "
        f"`{E_CLAIM}`: d_i = PSNR(patch) - PSNR(whole) on the in-distribution images; its "
        "own row is the pooled row of the smallest n_train. "
        f"`{F_CLAIM}`: mean d over the shifted images minus mean d over the in-distribution "
        "images (each weighted equally), a difference of differences, positive when the patch "
        "prior loses less under the shift; its interval resamples the two image sets "
        "independently, each dataset's images within itself. Pooled rows (per n_train, and "
        f"`{EVERY_N}` over every n_train) test the mean of their cells, equal weight, each "
        "dataset's images resampled together across cells. The half-width is half the "
        "interval's width: the smallest effect this run resolves. For an inconclusive row, "
        "`images to decide` is the evaluation images at which the interval, shrinking as "
        "1 / sqrt(n), would exclude 0 at the measured estimate: n (half-width / "
        "|estimate|)^2.\n\n"
    )
    _write_stem(table, out, preface + to_markdown(_table_display(out)))
    _write_stem(claims, verdicts, claims_preface + to_markdown(_claims_text(verdicts)))
    generalization_figure(out, figure)
    pooled = verdicts[verdicts["dataset"] == ALL]
    own = pooled["detail"].str.startswith(OWN_ROW)
    pooled = pd.concat([pooled[own], pooled[~own]])
    columns = ["claim", "trained_on", "n_train", "estimate_db", "ci_lo_db", "ci_hi_db", "verdict"]
    return to_markdown(pooled[columns])
