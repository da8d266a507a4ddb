"""The paper's figures (Roy et al. 2025, Figs. 1-3) from the workflow's HDF5 and CSV results.

Output convention: every figure function takes ``out_stem`` and writes
``<out_stem>.png`` and ``<out_stem>.pdf`` (the suffix is appended, never substituted, so a
stem such as ``fig.3`` stays whole), each through :func:`patchpnp.atomic.atomic_path`, and
returns the two paths. One stem rather than two paths keeps the formats from drifting apart.

Figures are deterministic and need no display: the Agg backend, styles applied through
seaborn context managers (no global theme, so importing this module changes no other
plot), and a PDF without a creation date. Inputs are checked before anything is drawn; a
missing or malformed file, dataset or column raises :class:`FigureError` naming it, so a
Snakemake log points at the culprit rather than at a matplotlib traceback.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path

import h5py
import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import seaborn as sns  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import NullLocator  # noqa: E402

from patchpnp.atomic import atomic_path  # noqa: E402
from patchpnp.errors import PatchpnpError
from patchpnp.evaluation import profile_table
from patchpnp.formats import (
    DATA_RANGE,
    IMAGES,
    MEASUREMENT,
    RECON,
    FormatError,
    open_h5,
    read_image,
)
from patchpnp.layout import WHOLE
from patchpnp.metrics.quality import band_rmse, psnr

__all__ = [
    "FigureError",
    "border_zoom_box",
    "memory_figure",
    "mri_figure",
    "padding_figure",
    "qualitative_figure",
    "read_profiles",
]

# Fig. 3's rows: the paper's total memory, the working memory beside it, then time.
_METRICS = (
    ("peak_total_mib", "peak total memory (MiB)"),
    ("peak_working_mib", "peak working memory (MiB)"),
    ("seconds_per_call", "seconds per denoiser call"),
)
_ZOOM_COLOR = "tab:red"


class FigureError(PatchpnpError, ValueError):
    """An input of a figure is missing or malformed; the message names the file or column."""


# -- figure plumbing ---------------------------------------------------------------------------
@contextlib.contextmanager
def _figure(nrows: int, ncols: int, size: tuple[float, float], style: str, **kw):
    """A constrained-layout figure under a local seaborn style, closed whatever happens."""
    with sns.axes_style(style), sns.plotting_context("paper"):
        fig, axes = plt.subplots(
            nrows, ncols, figsize=size, squeeze=False, layout="constrained", **kw
        )
        try:
            yield fig, axes
        finally:
            plt.close(fig)


def _save(fig, out_stem: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<stem>.png`` and ``<stem>.pdf``; ``format=`` because the temp name ends .part."""
    paths = (Path(f"{out_stem}.png"), Path(f"{out_stem}.pdf"))
    for path, fmt, meta in zip(paths, ("png", "pdf"), ({}, {"CreationDate": None}), strict=True):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, metadata=meta)
    return paths


def _panel(ax, img, title=None, note=None, frame=None) -> None:
    """One grey image on [0, 1]; ``note`` (a score) in a corner, ``frame`` colours the border.

    Ticks are removed rather than the axis switched off, so a row label (ylabel) still shows.
    """
    ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        spine.set_color(frame or "none")
        spine.set_linewidth(1.5)
    if title:
        ax.set_title(title)
    if note:
        bbox = {"facecolor": "black", "alpha": 0.6, "lw": 0}
        ax.text(0.03, 0.03, note, transform=ax.transAxes, color="white", fontsize=8, bbox=bbox)


# -- HDF5 inputs -------------------------------------------------------------------------------
@contextmanager
def _open(path: str | os.PathLike):
    """A reconstruction or split file; format errors become figure errors."""
    try:
        with open_h5(path) as f:
            yield f
    except FormatError as err:
        raise FigureError(str(err)) from err


def _slice(f: h5py.File, key: str, index: int, shape: tuple[int, ...] | None = None):
    try:
        return read_image(f, key, index, shape)
    except FormatError as err:
        raise FigureError(str(err)) from err


def _image(path, key: str, index: int, shape=None, padding: str | None = None) -> np.ndarray:
    """One slice of one file; ``padding`` checks the file's attribute (catches swapped args)."""
    with _open(path) as f:
        found = f.attrs.get("padding")
        if padding is not None and found is not None and str(found) != padding:
            raise FigureError(f"{path}: padding attribute is {found!r}, expected {padding!r}")
        return _slice(f, key, index, shape)


def _measurement(path, index: int, gt: np.ndarray) -> tuple[np.ndarray, float]:
    """The baseline's display image and PSNR.

    The PSNR is always the baseline recon's (the measurement in image space: noisy image,
    bicubic upsampling, zero filling). A real measurement smaller than the ground truth by an
    integer factor (super-resolution) is shown itself, upsampled nearest, so its pixels show;
    anything else (same size, k-space, complex) is shown as the recon.
    """
    with _open(path) as f:
        recon = _slice(f, RECON, index, gt.shape)
        shown, m = recon, f.get(MEASUREMENT)
        if (
            isinstance(m, h5py.Dataset)
            and m.ndim == 4
            and m.shape[1] == 1
            and m.dtype.kind == "f"
            and index < m.shape[0]
        ):
            k = gt.shape[0] // m.shape[2]
            if k > 1 and (m.shape[2] * k, m.shape[3] * k) == gt.shape:
                shown = np.repeat(np.repeat(m[index, 0].astype(np.float64), k, 0), k, 1)
    return shown, float(psnr(recon[None], gt[None])[0])


# -- Fig. 1: padding -------------------------------------------------------------------------
def _zoom_box(shape: tuple[int, int], zoom) -> tuple[int, int, int, int]:
    """``(y0, x0, h, w)`` checked to lie inside ``shape``."""
    y0, x0, h, w = zoom
    if h < 1 or w < 1 or y0 < 0 or x0 < 0 or y0 + h > shape[0] or x0 + w > shape[1]:
        raise FigureError(f"zoom box {(y0, x0, h, w)} (y0, x0, h, w) is not inside {shape}")
    return int(y0), int(x0), int(h), int(w)


def border_zoom_box(gain: np.ndarray, side: int) -> tuple[int, int, int, int]:
    """The ``side`` x ``side`` window touching the image border where ``gain`` (per pixel,
    e.g. zeros' squared error minus reflect's) sums highest: where the two paddings differ
    most, which is at the border, where the padding acts. ``(y0, x0, side, side)``."""
    g = np.asarray(gain, dtype=np.float64)
    h, w = g.shape
    side = int(side)
    if not 0 < side <= min(h, w):
        raise FigureError(f"zoom side {side} does not fit a {h} x {w} image")
    integral = np.pad(g.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = (
        integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side]
        + integral[:-side, :-side]
    )  # fmt: skip
    ys, xs = np.meshgrid(np.arange(h - side + 1), np.arange(w - side + 1), indexing="ij")
    border = (ys == 0) | (xs == 0) | (ys == h - side) | (xs == w - side)
    sums = np.where(border, sums, -np.inf)
    y0, x0 = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y0), int(x0), side, side


def padding_figure(
    gt_h5, zeros_h5, reflect_h5, out_stem, index: int = 0, zoom=None, band: int = 4
) -> tuple[Path, Path]:
    """Fig. 1: ground truth, zero- and reflection-padding results of one slice.

    Top row: the images with their PSNR and the boundary band score (RMSE in the outer
    ``band`` pixels over the interior's, the extended table's ``band_ratio``). Middle row:
    the zoom box, scored on the box alone. By default the box is chosen from the numbers,
    not placed by hand: the border-touching window (a quarter of the side) where zero
    padding's squared error exceeds reflection's the most (:func:`border_zoom_box`);
    ``zoom`` = ``(y0, x0, h, w)`` overrides it. Bottom row: zeros' error minus
    reflection's (red where zeros err more) and each |error| on one scale, so where the
    paddings differ is seen over the whole slice, not only in the box.
    """
    gt = _image(gt_h5, IMAGES, index)
    zeros = _image(zeros_h5, RECON, index, gt.shape, "zeros")
    reflect = _image(reflect_h5, RECON, index, gt.shape, "reflect")
    err_z, err_r = np.abs(zeros - gt), np.abs(reflect - gt)
    side = max(1, min(gt.shape) // 4)
    box = _zoom_box(gt.shape, zoom or border_zoom_box(err_z**2 - err_r**2, side))
    y0, x0, h, w = box
    images = [("ground truth", gt), ("zero padding", zeros), ("reflection padding", reflect)]
    with _figure(3, 3, (7.5, 7.6), "white") as (fig, axes):
        for j, (title, img) in enumerate(images):
            crop, gt_crop = img[y0 : y0 + h, x0 : x0 + w], gt[y0 : y0 + h, x0 : x0 + w]
            full = part = None
            if j:
                b, interior = band_rmse(img[None, None], gt[None, None], band)
                ratio = float(b[0] / interior[0])
                full = f"PSNR {psnr(img[None], gt[None])[0]:.2f} dB, band {ratio:.2f}"
                part = f"box {psnr(crop[None], gt_crop[None])[0]:.2f} dB"
            _panel(axes[0, j], img, title, full)
            axes[0, j].add_patch(
                Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, ec=_ZOOM_COLOR, lw=1.2)
            )
            _panel(axes[1, j], crop, None, part, _ZOOM_COLOR)
        diff = err_z - err_r
        top = float(np.quantile(np.abs(diff), 0.995)) or 1.0
        err_top = float(np.quantile(np.concatenate([err_z.ravel(), err_r.ravel()]), 0.995)) or 1.0
        panels = (
            (diff, "RdBu_r", -top, top, f"|err| zeros - reflect (±{top:.2g})"),
            (err_z, "magma", 0, err_top, f"|error| zeros (0-{err_top:.2g})"),
            (err_r, "magma", 0, err_top, f"|error| reflect (0-{err_top:.2g})"),
        )
        for j, (img, cmap, lo, hi, title) in enumerate(panels):
            ax = axes[2, j]
            ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, ec="black", lw=1.0))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title, fontsize="small")
        return _save(fig, out_stem)


# -- Fig. 2: qualitative -----------------------------------------------------------------------
def qualitative_figure(
    rows: Sequence[dict], out_stem, index: int = 0, measurement_label: str = "measurement"
) -> tuple[Path, Path]:
    """Fig. 2: one row per task: ground truth, measurement, then each ``(label, recon_h5)``
    panel, with PSNR (dB, vs ground truth) on all but the ground truth.

    ``rows``: dicts with keys ``task``, ``gt`` (eval.h5), ``measurement`` (baseline h5) and
    ``panels``. A panel title is repeated below the first row only where it differs from the
    first row's, so columns of the same methods read as a table.
    """
    if not rows:
        raise FigureError("qualitative_figure: no rows")
    loaded = []
    for i, row in enumerate(rows):
        missing = [k for k in ("task", "gt", "measurement", "panels") if k not in row]
        if missing:
            raise FigureError(f"rows[{i}]: missing key(s) {', '.join(missing)}")
        gt = _image(row["gt"], IMAGES, index)
        shown, score = _measurement(row["measurement"], index, gt)
        cells = [("ground truth", gt, None), (measurement_label, shown, score)]
        for k, panel in enumerate(row["panels"]):
            if not isinstance(panel, (tuple, list)) or len(panel) != 2:
                raise FigureError(f"rows[{i}]['panels'][{k}]: expected (label, recon_h5)")
            label, path = panel
            img = _image(path, RECON, index, gt.shape)
            cells.append((str(label), img, float(psnr(img[None], gt[None])[0])))
        loaded.append((str(row["task"]), cells))
    ncols = max(len(cells) for _, cells in loaded)
    first = [title for title, _, _ in loaded[0][1]]
    with _figure(len(loaded), ncols, (2.0 * ncols, 2.1 * len(loaded)), "white") as (fig, axes):
        for i, (task, cells) in enumerate(loaded):
            for j, (title, img, score) in enumerate(cells):
                repeat = i > 0 and j < len(first) and first[j] == title
                note = None if score is None else f"{score:.2f} dB"
                _panel(axes[i, j], img, None if repeat else title, note)
            for ax in axes[i, len(cells) :]:
                ax.set_axis_off()
            axes[i, 0].set_ylabel(task, fontsize="large")
        return _save(fig, out_stem)


def padis_figure_command(
    cells: Sequence[str],
    *,
    labels: Sequence[str],
    baseline: str,
    gt: str,
    out_stem: str,
    title: str,
    index: int = 0,
) -> str:
    """``patchpnp padis-figure``: one task of snakemake padis: ground truth, the
    measurement's own reconstruction (FBP for CT), then each cell (``labels``)."""
    if len(labels) != len(cells):
        raise FigureError(f"{len(labels)} labels for {len(cells)} cells")
    row = {"task": title, "gt": gt, "measurement": baseline,
           "panels": list(zip(labels, cells, strict=True))}  # fmt: skip
    png, pdf = qualitative_figure([row], out_stem, index, measurement_label="baseline")
    return f"wrote {png} and {pdf}"


# -- multicoil MRI ---------------------------------------------------------------------------
def _magnitudes(path, key: str, index: int) -> np.ndarray:
    """``|x|`` of complex image ``index`` stored as (real, imaginary) channels ``[n, 2, H, W]``."""
    with _open(path) as f:
        ds = f.get(key)
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 4 or ds.shape[1] != 2:
            raise FigureError(f"{path}:{key}: expected complex images as [n, 2, H, W]")
        if not 0 <= index < ds.shape[0]:
            raise FigureError(f"{path}:{key}: index {index} out of range for {ds.shape[0]} images")
        return np.hypot(*ds[index].astype(np.float64))


def mri_figure(rows: Sequence[dict], out_stem, index: int = 0) -> tuple[Path, Path]:
    """Multicoil MRI: per acquisition (row pair), the target and each ``(label, recon_h5)``
    magnitude with its fastMRI PSNR (data range: the volume's maximum), and below each
    reconstruction its error map ``| |x_hat| - |x| |`` on a shared scale.

    ``rows``: dicts with ``label`` (e.g. ``4x equispaced``), ``gt`` (the MRI eval split)
    and ``panels``.
    """
    if not rows:
        raise FigureError("mri_figure: no rows")
    loaded = []
    for i, row in enumerate(rows):
        missing = [k for k in ("label", "gt", "panels") if k not in row]
        if missing:
            raise FigureError(f"rows[{i}]: missing key(s) {', '.join(missing)}")
        gt = _magnitudes(row["gt"], IMAGES, index)
        with _open(row["gt"]) as f:
            top = float(f[DATA_RANGE][index]) if DATA_RANGE in f else float(gt.max())
        cells = []
        for label, path in row["panels"]:
            img = _magnitudes(path, RECON, index)
            if img.shape != gt.shape:
                raise FigureError(f"{path}: image shape {img.shape} differs from {gt.shape}")
            cells.append((str(label), img, float(psnr(img[None], gt[None], top)[0])))
        loaded.append((str(row["label"]), gt / top, [(t, im / top, p) for t, im, p in cells]))
    ncols = 1 + max(len(c) for _, _, c in loaded)
    err_max = 0.25
    size = (1.8 * ncols, 1.9 * 2 * len(loaded))
    with _figure(2 * len(loaded), ncols, size, "white") as (fig, axes):
        for i, (label, gt, cells) in enumerate(loaded):
            top, bottom = axes[2 * i], axes[2 * i + 1]
            _panel(top[0], np.clip(gt, 0, 1), "target" if i == 0 else None)
            top[0].set_ylabel(label, fontsize="large")
            bottom[0].set_axis_off()
            for j, (title, img, score) in enumerate(cells, start=1):
                _panel(top[j], np.clip(img, 0, 1), title if i == 0 else None, f"{score:.2f} dB")
                bottom[j].imshow(np.abs(img - gt), cmap="magma", vmin=0, vmax=err_max)
                bottom[j].set_xticks([])
                bottom[j].set_yticks([])
            bottom[1].set_ylabel(f"|error|, 0-{err_max:g}", fontsize="small")
            for ax in (*top[len(cells) + 1 :], *bottom[len(cells) + 1 :]):
                ax.set_axis_off()
        return _save(fig, out_stem)


# -- Fig. 3: memory and time -------------------------------------------------------------------
def read_profiles(profile_csvs: str | os.PathLike | Iterable[str | os.PathLike]) -> pd.DataFrame:
    """Concatenate profile CSVs, checked per file so an error names the file and column.

    Adds ``config``: ``whole`` or ``patch, batch <patch_batch>``, the line style of Fig. 3.
    """
    if isinstance(profile_csvs, (str, os.PathLike)):
        profile_csvs = [profile_csvs]
    try:
        df = profile_table.read_profiles(list(profile_csvs))
    except FormatError as err:
        raise FigureError(str(err)) from err
    if df.empty:
        raise FigureError("no profile rows in the given CSVs")
    df[["inference_size", "image_size"]] = df[["inference_size", "image_size"]].astype(int)
    df["config"] = np.where(df["mode"] == WHOLE, WHOLE, "patch, batch " + df["patch_batch"])
    return df


def _sweep_x(part: pd.DataFrame, sweep: str):
    """x values, ticks, tick labels and axis label of one sweep's panels.

    Inference sizes are categorical (patch sizes ascending, then ``whole N``), since the
    whole image is not a patch size on the same scale; image sizes are a log2 axis.
    """
    if sweep == "image_size":
        sizes = sorted(part["image_size"].unique())
        return part["image_size"], sizes, [str(s) for s in sizes], "image size N (pixels)"
    n = sorted(part["image_size"].unique())
    if len(n) > 1:
        raise FigureError(f"inference_size sweep mixes image sizes {n}; expected one")
    patch = sorted(part.loc[part["mode"] == "patch", "inference_size"].unique())
    pos = {p: k for k, p in enumerate(patch)}
    pairs = zip(part["mode"], part["inference_size"], strict=True)
    x = [len(patch) if mode == WHOLE else pos[size] for mode, size in pairs]
    labels = [str(p) for p in patch] + [f"whole {n[0]}"] * bool((part["mode"] == WHOLE).any())
    return pd.Series(x, index=part.index), list(range(len(labels))), labels, "inference size P"


def memory_figure(profile_csvs, out_stem) -> tuple[Path, Path]:
    """Fig. 3: peak total memory (top: all the process or device holds, the paper's
    measure), peak working memory (middle: above the loaded model) and seconds per
    denoiser call (bottom), all log y, against inference size (left, fixed image size)
    and image size (right), one line per solver (hue) and whole / patch-batch
    configuration (style). Duplicate points raise instead of being averaged, since a
    mean of two runs would not be a measurement any row records."""
    df = read_profiles(profile_csvs)
    hue_order = sorted(df["solver"].unique())
    style_order = [WHOLE, *sorted(set(df["config"]) - {WHOLE})]
    with _figure(len(_METRICS), 2, (11.0, 10.0), "whitegrid", sharex="col") as (fig, axes):
        for j, sweep in enumerate(profile_table.PROFILE_SWEEPS):
            part = df[df["sweep"] == sweep]
            if part.empty:
                for ax in axes[:, j]:
                    ax.text(0.5, 0.5, f"no {sweep} rows", ha="center", transform=ax.transAxes)
                continue
            x, ticks, labels, xlabel = _sweep_x(part, sweep)
            part = part.assign(x=x)
            dup = part.duplicated(["solver", "config", "x"])
            if dup.any():
                r = part[dup].iloc[0]
                raise FigureError(f"duplicate {sweep} row: {r.solver} {r.config} at {r[sweep]}")
            devices = ", ".join(sorted(part["device"].astype(str).unique()))
            for i, (col, ylabel) in enumerate(_METRICS):
                ax = axes[i, j]
                sns.lineplot(
                    part, x="x", y=col, hue="solver", style="config", ax=ax, legend=i == 0,
                    hue_order=hue_order, style_order=style_order, markers=True, errorbar=None,
                )  # fmt: skip
                ax.set_yscale("log")
                if sweep == "image_size":
                    ax.set_xscale("log", base=2)
                ax.set_xticks(ticks, labels)
                ax.xaxis.set_minor_locator(NullLocator())
                ax.set(xlabel=xlabel if i == len(_METRICS) - 1 else "", ylabel=ylabel)
            axes[0, j].set_title(f"{sweep.replace('_', ' ')} sweep ({devices})")
        return _save(fig, out_stem)


def paper_scale_figure(csv: str | os.PathLike, out_stem) -> tuple[Path, Path]:
    """The paper-scale profile in the style of Fig. 3: total memory, working memory and
    seconds per call (rows, log y) against the patch size, one panel column per image
    size; one line per solver (hue) and micro-batch mode (style), the whole image's
    value a wide pale band in its solver's colour. Configurations not run (over the
    memory limit) have no point; the panel title lists them."""
    try:
        df = profile_table.read_paper_scale(csv)
    except FormatError as err:
        raise FigureError(str(err)) from err
    sizes = sorted(df["image_size"].unique())
    if not sizes:
        raise FigureError(f"{csv}: no rows")
    solvers = sorted(df["solver"].unique())
    colours = dict(zip(solvers, sns.color_palette(n_colors=len(solvers)), strict=True))
    modes = list(profile_table.PATCH_BATCH_MODES)
    with _figure(len(_METRICS), len(sizes), (4.5 * len(sizes) + 1, 10.0), "whitegrid",
                 sharex=True) as (fig, axes):  # fmt: skip
        for j, n in enumerate(sizes):
            part = df[df["image_size"] == n]
            patch = part[part["patch_batch_mode"] != WHOLE]
            for i, (col, ylabel) in enumerate(_METRICS):
                ax = axes[i, j]
                if patch[col].notna().any():
                    sns.lineplot(
                        patch, x="inference_size", y=col, hue="solver", style="patch_batch_mode",
                        hue_order=solvers, style_order=modes, palette=colours, markers=True,
                        errorbar=None, ax=ax, legend=i == 0 and j == 0,
                    )  # fmt: skip
                for solver, row in part[part["patch_batch_mode"] == WHOLE].groupby("solver"):
                    value = row[col].iloc[0]
                    if np.isfinite(value):
                        ax.axhline(value, color=colours[solver], linewidth=4, alpha=0.3)
                ax.set_yscale("log")
                ax.set_xscale("log", base=2)
                ticks = sorted(patch["inference_size"].unique())
                ax.set_xticks(ticks, [str(t) for t in ticks])
                ax.xaxis.set_minor_locator(NullLocator())
                ax.set(xlabel="patch size P" if i == len(_METRICS) - 1 else "", ylabel=ylabel)
            devices = ", ".join(sorted(part["device"].astype(str).unique()))
            skipped = part[part["status"] != "measured"]
            note = "".join(
                f"\nnot run: {r.solver} {r.patch_batch_mode}"
                + ("" if r.patch_batch_mode == WHOLE else f" P={r.inference_size}")
                for r in skipped.itertuples()
            )
            axes[0, j].set_title(f"N = {n} ({devices}); wide band: whole image{note}")
        return _save(fig, out_stem)


def figure_command(
    kind: str, inputs: Sequence[str], out_stem: str, index: int = 0, band: int = 4
) -> str:
    """``patchpnp figure``: draw Fig. 3 (``memory``: profile CSVs), Fig. 1 (``padding``:
    ground truth, zeros and reflect files) or Fig. 2 (``qualitative``: its rows as JSON)."""
    import json

    if kind == "memory":
        written = memory_figure(inputs, out_stem)
    elif kind == "paper-scale":
        if len(inputs) != 1:
            raise FigureError(f"figure paper-scale takes one paper_scale.csv, got {inputs}")
        written = paper_scale_figure(inputs[0], out_stem)
    elif kind == "padding":
        if len(inputs) != 3:
            raise FigureError(f"figure padding takes gt.h5 zeros.h5 reflect.h5, got {inputs}")
        written = padding_figure(*inputs, out_stem, index=index, band=band)
    elif kind == "qualitative":
        written = qualitative_figure(json.loads(inputs[0]), out_stem, index=index)
    elif kind == "mri":
        written = mri_figure(json.loads(inputs[0]), out_stem, index=index)
    else:
        raise FigureError(
            f"unknown figure {kind!r}: memory, paper-scale, padding, qualitative or mri"
        )
    return "\n".join(str(w) for w in written)
