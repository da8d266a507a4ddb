"""Summary tables over the grid's per-image metrics (the paper's Table 1 and an extended table).

Every inference cell writes one CSV with one row per evaluation image, and every
(dataset, task) one measurement baseline, at the paths of :mod:`patchpnp.layout`.
The cell's identity is taken from the path, the layout Snakemake guarantees, rather than
from the CSV's own columns (a baseline records ``size`` ``whole`` although it runs no
network). The CSV columns are still checked against the path, so a file copied into the
wrong folder stops the aggregation instead of landing in the wrong row.

Means are taken with ``skipna=False`` throughout: a missing LPIPS (weights unavailable
offline) shows as missing, never as an average over the images that happened to have it.
Patch-versus-whole comparisons are paired on the image index (every cell of a dataset
evaluates the same slices), so the bootstrap interval reflects the per-image difference
and not the much larger spread between images.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from patchpnp.atomic import atomic_path
from patchpnp.errors import PatchpnpError
from patchpnp.layout import (
    BASELINE,
    EXTENDED_STEM,
    METRICS_LAYOUT,
    TABLE1_STEM,
    WHOLE,
    Cell,
    LayoutError,
    parse_metrics_path,
    size_tag,
)
from patchpnp.layout import (
    NO_PADDING as NONE,
)

__all__ = [
    "AggregateError",
    "bootstrap_mean_ci",
    "extended_table",
    "format_mean_std",
    "paired_difference",
    "read_metrics",
    "table1",
    "table1_display",
    "to_latex",
    "to_markdown",
    "write_files",
    "write_tables",
]

MEASUREMENT = "measurement"  # the baseline's size: the measurement itself
PAPER_PADDING = "reflect"
CELL = ["dataset", "task", "prior", "solver", "size", "padding"]
T1_KEYS = ["dataset", "task", "solver", "size"]
REQUIRED = (
    "image psnr ssim lpips rmse_band rmse_interior data_consistency nfe backward_passes"
    " tiles_evaluated seconds task solver size padding"
).split()


class AggregateError(PatchpnpError, ValueError):
    """Metrics that cannot be aggregated; the message names the file and what was expected."""


# -- reading -------------------------------------------------------------------------------
def _cell_of(path: Path) -> dict:
    """The cell a metrics path stands for, from the layout alone."""
    try:
        cell = parse_metrics_path(path)
    except LayoutError as err:
        raise AggregateError(str(err)) from None
    if isinstance(cell, Cell):
        return {**cell.wildcards()}
    return {**cell, "prior": BASELINE, "solver": BASELINE, "size": MEASUREMENT, "padding": NONE}


def _read_one(path: Path) -> pd.DataFrame:
    cell = _cell_of(path)
    if not path.is_file():
        raise AggregateError(f"{path}: metrics file not found")
    try:
        table = pd.read_csv(path, dtype=dict.fromkeys(("task", "solver", "size", "padding"), str))
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise AggregateError(f"{path}: not a readable metrics CSV ({err})") from err
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise AggregateError(f"{path}: missing columns {missing}; expected at least {REQUIRED}")
    if table.empty:
        raise AggregateError(f"{path}: no image rows")
    recorded = {"task": cell["task"], "solver": cell["solver"]}
    if cell["prior"] != BASELINE:
        recorded["size"] = cell["size"]
        recorded["padding"] = cell["padding"]
    for column, expected in recorded.items():
        values = table[column].map(size_tag) if column == "size" else table[column]
        found = list(pd.unique(values))
        if found != [expected]:
            raise AggregateError(
                f"{path}: column '{column}' holds {found}, but the path says '{expected}'"
            )
    return table.assign(**cell)


def read_metrics(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate metrics CSVs, identifying each cell by its path (see the module doc).

    Adds ``dataset`` and ``prior``, and sets ``solver``, ``size`` (``whole``, ``p<P>`` or
    ``measurement`` for baselines) and ``padding`` (``none`` unless patches are padded)
    from the path. One image may appear only once per cell: a duplicate would be counted
    twice in every mean and break the pairing with the whole-image cell.
    """
    frames = [_read_one(Path(p)) for p in paths]
    if not frames:
        raise AggregateError(f"no metrics files given; expected paths like {METRICS_LAYOUT}")
    df = pd.concat(frames, ignore_index=True)
    dup = df.duplicated(CELL + ["image"])
    if dup.any():
        row = df.loc[dup.idxmax(), CELL + ["image"]].to_dict()
        raise AggregateError(f"image listed twice in one cell (a file given twice?): {row}")
    rest = [c for c in df.columns if c not in CELL]
    return df[CELL + rest]


# -- statistics ----------------------------------------------------------------------------
def bootstrap_mean_ci(
    values, seed: int, n_boot: int = 10000, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval ``(mean, lo, hi)`` of ``values``.

    Seeded per call with ``numpy.random.default_rng(seed)``, so an interval depends only
    on its own values and seed, not on which other cells are in the table. Identical
    values (including a single one) return ``(v, v, v)`` exactly: resampled means would
    only add rounding noise. NaNs are an error: dropping them would silently unpair.
    """
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise AggregateError("bootstrap_mean_ci: no values")
    if np.isnan(x).any():
        raise AggregateError("bootstrap_mean_ci: values contain NaN")
    if not 0 < level < 1 or n_boot < 1:
        raise AggregateError(
            f"bootstrap_mean_ci: need 0 < level < 1 and n_boot >= 1, got {level=}, {n_boot=}"
        )
    if np.all(x == x[0]):
        return float(x[0]), float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(x.mean()), float(lo), float(hi)


def _mean(s: pd.Series) -> float:
    return float(s.mean(skipna=False))


def _std(s: pd.Series) -> float:
    return float(s.std(ddof=1, skipna=False)) if len(s) > 1 else math.nan


def _size_rank(tag: str) -> float:
    """Whole image (or the measurement) first, then patch sizes descending."""
    return -math.inf if tag in (WHOLE, MEASUREMENT) else -float(tag[1:])


def _ordered(frame: pd.DataFrame, ref: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows sorted by ``keys``: sizes by :func:`_size_rank`, baseline first, every other
    key in its order of first appearance in ``ref`` (the order the paths were given)."""
    ranks = {}
    for k in keys:
        if k == "size":
            ranks[k] = frame[k].map(_size_rank)
        else:
            rank = {v: i for i, v in enumerate(pd.unique(ref[k]))} | {BASELINE: -1}
            ranks[k] = frame[k].map(rank)
    order = pd.DataFrame(ranks).sort_values(keys, kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def table1(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1: PSNR and LPIPS mean and std per (dataset, task, solver, size).

    Patch rows use reflect padding only (the paper's method; the other paddings are an
    ablation for the extended table). One column group per prior, in order of first
    appearance; a prior without a given cell leaves NaN there. Baselines are excluded.
    """
    paper = np.where(df["size"] == WHOLE, df["padding"] == NONE, df["padding"] == PAPER_PADDING)
    cells = df[(df["prior"] != BASELINE) & paper]
    if cells.empty:
        raise AggregateError("table1: no prior cells (whole, or patches with reflect padding)")
    out = _ordered(cells[T1_KEYS].drop_duplicates(), df, T1_KEYS)
    for prior in pd.unique(cells["prior"]):
        g = cells[cells["prior"] == prior].groupby(T1_KEYS, sort=False)
        stats = pd.DataFrame(
            {
                f"{prior} PSNR mean": g["psnr"].agg(_mean),
                f"{prior} PSNR std": g["psnr"].agg(_std),
                f"{prior} LPIPS mean": g["lpips"].agg(_mean),
                f"{prior} LPIPS std": g["lpips"].agg(_std),
            }
        )
        out = out.merge(stats.reset_index(), on=T1_KEYS, how="left")
    return out


def paired_difference(x: pd.Series, y: pd.Series, x_name: str, y_name: str) -> pd.Series:
    """``x - y`` matched on the image index, refusing two different image sets: dropping
    the unmatched images would silently compare different slices."""
    if set(x.index) != set(y.index):
        raise AggregateError(
            f"cannot pair cells {x_name} and {y_name}: they evaluate different images "
            f"({sorted(set(x.index) ^ set(y.index))} appear in only one)"
        )
    return x - y.loc[x.index]


def _paired(cell: pd.DataFrame, whole: pd.DataFrame, key: tuple, seed: int) -> tuple:
    """Bootstrap of the per-image PSNR difference patch - whole, matched on ``image``."""
    a, b = cell.set_index("image")["psnr"], whole.set_index("image")["psnr"]
    d = paired_difference(a, b, str(dict(zip(CELL, key, strict=True))), "its whole-image cell")
    return bootstrap_mean_ci(d, seed)


def extended_table(df: pd.DataFrame, seed: int, *, image_shape: tuple[int, int]) -> pd.DataFrame:
    """One row per cell with every aggregate the paper's discussion relies on.

    Columns: the cell keys, ``n_images``, ``{psnr,ssim,lpips}_{mean,std}``,
    ``{data_consistency,seconds,nfe,backward_passes,tiles_evaluated}_mean`` (per image),
    the boundary-artifact score ``rmse_band_mean``, ``rmse_interior_mean`` and their ratio
    ``band_ratio`` (above 1: errors gather in the outer band, where padding acts),
    ``baseline_psnr`` and ``gain_db`` (over the measurement of the same
    dataset and task), and for patch rows the paired ``dpsnr_vs_whole`` with its 95%
    bootstrap ``dpsnr_lo``/``dpsnr_hi``, ``time_ratio`` (seconds patch / whole),
    ``pixel_ratio`` (pixels the network sees per evaluation, tiles/nfe * P^2, over the
    image's H*W: the cost padding and grid overlap add) and ``time_over_pixels``
    (above 1: patches cost more time than their pixel count explains, e.g. per-call
    overhead). Whole and baseline rows leave those NaN, as does a patch cell whose prior
    has no whole cell.
    """
    h, w = (int(v) for v in image_shape)
    if h <= 0 or w <= 0:
        raise AggregateError(f"image_shape must be two positive ints (H, W), got {image_shape}")
    groups = dict(tuple(df.groupby(CELL, sort=False)))
    rows = []
    for key, g in groups.items():
        row = dict(zip(CELL, key, strict=True), n_images=len(g))
        for col in ("psnr", "ssim", "lpips"):
            row |= {f"{col}_mean": _mean(g[col]), f"{col}_std": _std(g[col])}
        for col in (
            "data_consistency", "seconds", "nfe", "backward_passes", "rmse_band", "rmse_interior"
        ):  # fmt: skip
            row[f"{col}_mean"] = _mean(g[col])
        row["band_ratio"] = row["rmse_band_mean"] / row["rmse_interior_mean"]
        row["tiles_evaluated_mean"] = _mean(pd.to_numeric(g["tiles_evaluated"]))
        rows.append(row)
    out = pd.DataFrame(rows)
    base = out[out["prior"] == BASELINE].set_index(["dataset", "task"])["psnr_mean"]
    pairs = pd.MultiIndex.from_frame(out[["dataset", "task"]])
    out["baseline_psnr"] = base.reindex(pairs).to_numpy()
    out["gain_db"] = out["psnr_mean"] - out["baseline_psnr"]
    extra = {c: math.nan for c in ("dpsnr_vs_whole", "dpsnr_lo", "dpsnr_hi", "time_ratio")}
    out = out.assign(**extra, pixel_ratio=math.nan, time_over_pixels=math.nan)
    for i, r in out.iterrows():
        if r["size"] in (WHOLE, MEASUREMENT):
            continue
        whole = groups.get((r["dataset"], r["task"], r["prior"], r["solver"], WHOLE, NONE))
        if whole is not None:
            key = tuple(r[CELL])
            out.loc[i, ["dpsnr_vs_whole", "dpsnr_lo", "dpsnr_hi"]] = _paired(
                groups[key], whole, key, seed
            )
            out.loc[i, "time_ratio"] = r["seconds_mean"] / _mean(whole["seconds"])
        p = int(r["size"][1:])
        tiles_per_eval = r["tiles_evaluated_mean"] / r["nfe_mean"] if r["nfe_mean"] else math.nan
        out.loc[i, "pixel_ratio"] = tiles_per_eval * p * p / (h * w)
    out["time_over_pixels"] = out["time_ratio"] / out["pixel_ratio"]
    return _ordered(out, df, CELL)


# -- formatting ----------------------------------------------------------------------------
def format_mean_std(mean: float, std: float, digits: int) -> str:
    """``"27.85 ± 1.12"``; ``"n/a"`` for a missing mean, the mean alone for a missing std
    (a single image has no spread)."""
    if pd.isna(mean):
        return "n/a"
    if pd.isna(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _cell_text(value, floatfmt: str) -> str:
    """Strings as they are, integral numbers without decimals, other floats by ``floatfmt``."""
    if isinstance(value, str):
        return value
    if pd.isna(value):
        return "n/a"
    if isinstance(value, (int, np.integer)) or float(value).is_integer():
        return f"{int(value)}"
    return f"{value:{floatfmt}}"


def _numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _text_table(df: pd.DataFrame, cell, floatfmt: str) -> pd.DataFrame:
    """``df`` with every header and cell as its printed text: ``cell`` applied to
    :func:`_cell_text`'s string (NaN as ``n/a``, integral numbers without decimals)."""
    rows = [[cell(_cell_text(v, floatfmt)) for v in row] for row in df.itertuples(index=False)]
    return pd.DataFrame(rows, columns=[cell(str(c)) for c in df.columns], dtype=object)


def format_difference(estimate: float, lo: float, hi: float) -> str:
    """A paired difference with its interval, ``+0.12 [-0.03, +0.27]`` (dB); blank when
    there is none (NaN)."""
    if pd.isna(estimate):
        return ""
    return f"{estimate:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured Markdown (pipe) table by pandas/tabulate; numeric columns
    right-aligned, ``|`` escaped.

    Cells reach tabulate as finished text with its number parsing off, so a printed string
    such as ``+0.150`` stays as written and every number follows :func:`_cell_text`.
    """
    shown = _text_table(df, lambda text: text.replace("|", r"\|"), floatfmt)
    align = ["right" if _numeric(df[c]) else "left" for c in df.columns]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align) + "\n"


_LATEX_SPECIAL = {c: "\\" + c for c in "&%$#_{}"} | {
    "\\": r"\textbackslash{}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex_escape(text: str) -> str:
    escaped = re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIAL[m[0]], str(text))
    return escaped.replace("±", r"$\pm$")  # portable without relying on inputenc


def to_latex(df: pd.DataFrame, caption: str, label: str, floatfmt: str = ".4g") -> str:
    """A booktabs ``table`` environment by pandas' Styler; caption, headers and cells
    escaped, the label left as given (for \\ref).

    The escaping is this module's (:func:`_latex_escape`), not the Styler's
    ``escape="latex"``: the Styler leaves the caption as given, and ``±`` has to become
    ``$\\pm$`` after the escaping.
    """
    spec = "".join("r" if _numeric(df[c]) else "l" for c in df.columns)
    styler = _text_table(df, _latex_escape, floatfmt).style.hide(axis="index")
    return styler.to_latex(
        column_format=spec,
        position="t",
        position_float="centering",
        hrules=True,
        label=label,
        caption=_latex_escape(caption),
        environment="table",
    )


def table1_display(t1: pd.DataFrame) -> pd.DataFrame:
    """Table 1 as printed: ``<prior> PSNR`` (2 digits) and ``<prior> LPIPS`` (3 digits),
    each ``"mean ± std"``."""
    out = t1[T1_KEYS].copy()
    for col in t1.columns:
        if col.endswith(" PSNR mean"):
            prior = col[: -len(" PSNR mean")]
            for metric, digits in (("PSNR", 2), ("LPIPS", 3)):
                mean, std = t1[f"{prior} {metric} mean"], t1[f"{prior} {metric} std"]
                out[f"{prior} {metric}"] = [
                    format_mean_std(m, s, digits) for m, s in zip(mean, std, strict=True)
                ]
    return out


# -- output --------------------------------------------------------------------------------
def write_tables(
    df: pd.DataFrame,
    outdir: str | os.PathLike,
    seed: int,
    image_shape: tuple[int, int],
    extended: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write Table 1 (csv, md, tex) and the extended table (csv, md) of the metrics ``df``
    (:func:`read_metrics`'s table, which the claims read too); ``extended``, when
    given, is :func:`extended_table` of ``df`` computed already.

    Everything is computed before the first file is written, and each file is written
    atomically, so a failure leaves no partial or mismatched set of tables behind.
    Returns the written paths keyed by file name.
    """
    t1 = table1(df)
    shown = table1_display(t1)
    ext = extended if extended is not None else extended_table(df, seed, image_shape=image_shape)
    caption = (
        "PSNR (dB) and LPIPS, mean ± std over the evaluation images, per training scheme; "
        "patch inference with reflect padding."
    )
    writers = {
        f"{TABLE1_STEM}.csv": lambda p: t1.to_csv(p, index=False),
        f"{TABLE1_STEM}.md": lambda p: p.write_text(to_markdown(shown), encoding="utf-8"),
        f"{TABLE1_STEM}.tex": lambda p: p.write_text(
            to_latex(shown, caption, "tab:table1"), encoding="utf-8"
        ),
        f"{EXTENDED_STEM}.csv": lambda p: ext.to_csv(p, index=False),
        f"{EXTENDED_STEM}.md": lambda p: p.write_text(to_markdown(ext), encoding="utf-8"),
    }
    return write_files(outdir, writers)


def write_files(outdir: str | os.PathLike, writers: dict) -> dict[str, Path]:
    """Run ``writers`` (file name -> function writing to a path), each file atomically;
    returns the written paths keyed by file name."""
    written = {}
    for name, write in writers.items():
        dest = Path(outdir) / name
        with atomic_path(dest) as tmp:
            write(tmp)
        written[name] = dest
    return written
