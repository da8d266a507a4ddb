"""One cell of the experiment grid: a prior, a solver, a task and an inference size.

docs/methods.md sections 4-7. A cell reads the evaluation slices, simulates each
measurement ``y = A x + n`` (noise drawn from a generator keyed by the config
seed, the task and the image's identity, so every cell of a task sees the same
``y``), reconstructs with the solver around the whole-image or the
shifted-grid patch denoiser, and writes

- ``recon.h5``: the reconstructions (float32 ``[n, 1, H, W]``), the
  measurements, and the cell's settings as attributes, so metrics can be
  recomputed without rerunning inference;
- ``metrics.csv``: one row per image: PSNR (data range 1), SSIM, LPIPS (or
  missing: see :func:`patchpnp.metrics.quality.lpips_metric`), the RMSE in
  the outer band of ``band`` pixels and in the interior (the boundary-artifact
  score), data consistency, NFE, tiles, backward passes and seconds.

The solver's random draws are keyed by (seed, image identity, purpose, step)
(:class:`patchpnp.solvers.SolveStreams`): cells that differ only in the prior,
the inference size or the padding see the same solver noise for each image, so
their per-image differences are paired measurements of what differs.

A baseline cell (``solver = "baseline"``) records the measurement's own score:
the noisy image (denoising), bicubic upsampling (SR), zero filling (MRI), each
as it is, without clamping to [0, 1].
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import pandas as pd
import torch
from tqdm import tqdm

from patchpnp.atomic import atomic_path
from patchpnp.errors import PatchpnpError
from patchpnp.formats import read_split, write_recon
from patchpnp.inference.tuned import read_chosen
from patchpnp.layout import NO_PADDING, PADDINGS, WHOLE
from patchpnp.metrics.quality import (
    LPIPSMetric,
    Scoring,
    band_rmse,
    data_consistency,
    lpips_metric,
    psnr,
    ssim,
)
from patchpnp.params import SOLVER_KEYS, operator_name, operator_params
from patchpnp.patching.micro_batch import AUTO, auto_patch_batch, parse_budget, read_calibration
from patchpnp.patching.patches import ShiftedGridDenoiser
from patchpnp.physics import make_operator
from patchpnp.prior.loading import load_prior
from patchpnp.runtime import Runtime, keyed_generator
from patchpnp.solvers import SolveStreams, image_key, make_solver

log = logging.getLogger(__name__)
MEASURE_STREAM = 11
DEFAULT_BAND = 4  # pixels of the outer band of the boundary-artifact score


class InferenceError(PatchpnpError, ValueError):
    """A cell cannot run with these settings; the message says which and why."""


@dataclass(frozen=True)
class CellSpec:
    """What one cell computes: ``solver`` (its ``solver_params``; ``baseline``: the
    measurement's own score) around ``prior`` on ``task`` (its ``task_params``, ``sigma_n``
    among them), at inference ``size`` (``whole`` or the patch side P) with ``padding``.

    ``tuned``: a tuning table (:func:`patchpnp.inference.tuned.read_chosen`) whose chosen
    value replaces the solver's tuned parameter. ``seed`` keys the measurement noise and
    the solver's draws; ``sample``: the posterior-sample index, which keys every stream
    of the solve, grid included (:class:`~patchpnp.solvers.SolveStreams`); 0 is the grid's.
    """

    task: str
    task_params: dict
    solver: str
    solver_params: dict | None = None
    prior: str | Path | None = None
    size: str | int = WHOLE
    padding: str = "reflect"
    tuned: str | Path | None = None
    seed: int = 0
    sample: int = 0


def _task_stream(task: str) -> int:
    return zlib.crc32(task.encode())


def measurement_generators(seed: int, task: str, names: Sequence[str]) -> list[torch.Generator]:
    """One generator per image for its measurement noise: the same in every cell of a task."""
    return [keyed_generator(seed, image_key(n), MEASURE_STREAM, _task_stream(task)) for n in names]


def check_cell(task: str, task_params: dict, solver: str, size, padding: str) -> None:
    """Refuse a cell that cannot run, before any model is loaded."""
    try:
        make_operator(operator_name(task, task_params), **operator_params(task_params))
    except (ValueError, TypeError) as err:
        raise InferenceError(f"task '{task}': {err}") from err
    if solver != "baseline" and solver not in SOLVER_KEYS:
        raise InferenceError(f"unknown solver '{solver}'; expected one of {sorted(SOLVER_KEYS)}")
    if task_params.get("sigma_n", 0) <= 0:
        raise InferenceError(
            f"task '{task}': sigma_n must be > 0 (the solvers and the data "
            f"consistency divide by it), got {task_params.get('sigma_n')}"
        )
    if size != WHOLE and padding not in PADDINGS:
        raise InferenceError(f"unknown padding {padding!r}; expected one of {PADDINGS}")


def run_cell(
    data: str | Path,
    recon_path: str | Path,
    metrics_path: str | Path,
    *,
    cell: CellSpec,
    runtime: Runtime | None = None,
    scoring: Scoring | None = None,
    limit: int | None = None,
    lpips: LPIPSMetric | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run one grid cell (or a baseline with ``solver='baseline'``) on the first ``limit``
    images of ``data``; return its metrics.

    ``runtime`` (default :class:`~patchpnp.runtime.Runtime`'s): the device, threads,
    precision, images per batch and tiles per network call (``patch_batch``: ``auto``
    needs its ``calibration``). ``scoring`` (default
    :class:`~patchpnp.metrics.quality.Scoring`'s): the outer band of the
    boundary-artifact score (default :data:`DEFAULT_BAND`) and LPIPS: ``lpips`` when
    given (a metric shared by several cells), else
    :func:`~patchpnp.metrics.quality.lpips_metric` of the scoring's ``lpips_weights`` (the
    AlexNet checkpoint; the workflow passes its ``resources/`` copy) and ``lpips_mode``
    (``auto``, ``required``: fail before any work, or ``off``).
    """
    runtime, scoring = runtime or Runtime(), scoring or Scoring()
    task, task_params, solver, prior = cell.task, cell.task_params, cell.solver, cell.prior
    size, padding, seed, sample = cell.size, cell.padding, cell.seed, cell.sample
    solver_params, batch_images = cell.solver_params, runtime.batch_images
    patch_batch, memory_budget = runtime.patch_batch, runtime.memory_budget
    band = DEFAULT_BAND if scoring.band is None else int(scoring.band)
    if cell.tuned is not None:
        chosen = read_chosen(cell.tuned, solver)
        log.info("%s %s: %s from %s", solver, task, chosen, cell.tuned)
        solver_params = {**(solver_params or {}), **chosen}
    split = read_split(data, limit)
    x_all, sources, slices = torch.from_numpy(split.images), split.source, split.slice
    check_cell(task, task_params, solver, size, padding)
    auto = patch_batch == AUTO and size != WHOLE and solver != "baseline"
    if auto:
        parse_budget(memory_budget)
        cal = read_calibration(runtime.calibration) if runtime.calibration else None
        if cal is None:
            raise InferenceError("patch_batch auto needs a memory calibration (--calibration)")
    elif isinstance(patch_batch, str) and patch_batch != AUTO:
        raise InferenceError(f"patch_batch must be a number, null or 'auto', not {patch_batch!r}")
    dev = runtime.start()
    if lpips is None:
        lpips = lpips_metric(dev, scoring.lpips_weights, scoring.lpips_mode)
    sigma_n = float(task_params["sigma_n"])
    operator = make_operator(operator_name(task, task_params), **operator_params(task_params))
    denoiser = None
    if solver != "baseline":
        if prior is None:
            raise InferenceError(f"solver '{solver}' needs a prior")
        denoiser, _ = load_prior(prior, dev, precision=runtime.precision)
        if size != WHOLE:
            if auto:
                images = min(batch_images, len(x_all))
                patch_batch = auto_patch_batch(
                    cal, solver, int(size), images, *x_all.shape[-2:], memory_budget
                )
                log.info(
                    "patch_batch auto: %d tiles per call (budget %s)", patch_batch, memory_budget
                )
            denoiser = ShiftedGridDenoiser(
                denoiser, int(size), padding=padding, patch_batch=patch_batch
            )
        engine = make_solver(solver, denoiser, operator, **(solver_params or {}))
    n = len(x_all)
    names = split.names()
    recon = torch.empty_like(x_all)
    measurements, rows = [], []
    for start in tqdm(
        range(0, n, batch_images), desc=f"{solver} {task} {size}", disable=not progress
    ):
        idx = list(range(start, min(start + batch_images, n)))
        x = x_all[idx].to(dev)
        batch_names = [names[i] for i in idx]
        y = operator.measure(x, sigma_n, measurement_generators(seed, task, batch_names))
        t0 = time.perf_counter()
        if solver == "baseline":
            # The measurement as it comes, not clamped: clamping the noisy image to
            # [0, 1] is already a (crude) denoiser, worth ~1.5 dB at sigma_n 0.2.
            x_hat = operator.init(y)
            x_hat = x_hat.real if x_hat.is_complex() else x_hat
            info = {"nfe": 0, "backward_passes": 0, "tiles_evaluated": 0}
        else:
            streams = SolveStreams.for_names(seed, batch_names, sample)
            x_hat, info = engine.solve(y, sigma_n, streams, names=batch_names)
        seconds = (time.perf_counter() - t0) / len(idx)
        recon[idx] = x_hat.cpu()
        measurements.append(y.cpu())
        dc = data_consistency(operator, x_hat, y, sigma_n)
        rmse_band, rmse_interior = band_rmse(x_hat.cpu(), x.cpu(), band)
        scores = {
            "psnr": psnr(x_hat, x),
            "ssim": ssim(x_hat.cpu(), x.cpu()),
            "lpips": lpips(x_hat, x),
            "rmse_band": rmse_band,
            "rmse_interior": rmse_interior,
        }
        for j, i in enumerate(idx):
            rows.append(
                {
                    "image": i,
                    "source": sources[i],
                    "slice": int(slices[i]),
                    **{k: float(v[j]) for k, v in scores.items()},
                    "data_consistency": float(dc[j]),
                    "nfe": info["nfe"],
                    "backward_passes": info["backward_passes"],
                    "tiles_evaluated": info.get("tiles_evaluated"),
                    "seconds": seconds,
                }
            )
    table = pd.DataFrame(rows)
    _write(
        Path(recon_path),
        Path(metrics_path),
        recon,
        torch.cat(measurements),
        table,
        {
            "task": task,
            "solver": solver,
            "size": str(size),
            "padding": padding if size != WHOLE else NO_PADDING,
            "band": int(band),
            "sigma_n": sigma_n,
            "seed": seed,
            "sample": int(sample),
            "prior": str(prior or ""),
        },
    )
    log.info("%s %s %s: PSNR %.2f dB over %d images", solver, task, size, table["psnr"].mean(), n)
    return table


def _write(
    recon_path: Path, metrics_path: Path, recon, y, table: pd.DataFrame, attrs: dict
) -> None:
    with atomic_path(recon_path) as tmp, h5py.File(tmp, "w") as f:
        write_recon(f, recon.numpy(), y.numpy(), attrs)
    with atomic_path(metrics_path) as tmp:
        table.assign(**{k: v for k, v in attrs.items() if k != "prior"}).to_csv(tmp, index=False)
