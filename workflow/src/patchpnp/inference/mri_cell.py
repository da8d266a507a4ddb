"""One cell of the MRI grid: a multicoil acquisition and a reconstruction method.

docs/methods.md section 11. A cell reads an MRI split file (:mod:`patchpnp.formats`),
undersamples each slice's measured k-space retrospectively with the acquisition's
line mask (``y = M k``: the data's own noise, as an MRI reader expects, not noise we
add), reconstructs with one method and scores the magnitude images as fastMRI does
(:mod:`patchpnp.metrics.mri`). Methods:

- ``zero_filled``, ``sense``, ``cs_wavelet``: the classical baselines
  (:mod:`patchpnp.inference.mri_baselines`), their ``lam`` chosen by :func:`tune_mri`
  on the tuning slices;
- ``diffusion``: DPS or DiffPIR around a prior trained on complex images, whole or
  through the shifted-grid patch wrapper (channels ride along).

Every cell of an acquisition sees the same ``y`` (the mask is fixed by its seed), and
the solvers' draws are keyed by (seed, image, purpose, step), so whole and patch cells
are paired per image. Outputs: ``<cell>.h5`` (reconstructions ``[n, 2, S, S]`` and the
measurements) and ``<cell>.csv`` (one row per image, with the cell's keys).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from patchpnp.atomic import atomic_path
from patchpnp.errors import PatchpnpError
from patchpnp.formats import MRI_CELL_KEYS, MRISplit, read_mri_split, write_recon
from patchpnp.inference.mri_baselines import choose_interior, lambda_grid, reconstruct
from patchpnp.inference.tuned import TunedValueError, chosen_row
from patchpnp.layout import MRI_DIFFUSION as DIFFUSION
from patchpnp.layout import MRI_METHODS, NO_PADDING, WHOLE
from patchpnp.metrics.mri import kspace_noise_sigma, mri_scores, volume_data_range
from patchpnp.metrics.quality import data_consistency
from patchpnp.physics.multicoil import MulticoilMRI
from patchpnp.runtime import Runtime
from patchpnp.solvers.streams import image_key

log = logging.getLogger(__name__)

TUNED = ("sense", "cs_wavelet")  # the classical methods with a regularisation weight
NONE = "none"  # prior / solver of a classical cell
MRI_RUNTIME = Runtime(batch_images=12)  # an MRI cell's default: 12 slices per batch


class MRIError(PatchpnpError, ValueError):
    """An MRI cell cannot run with these settings; the message says which and why."""


@dataclass(frozen=True)
class Acquisition:
    """How the k-space of a cell is undersampled, and what the data step assumes."""

    acceleration: int
    center_fraction: float
    mask: str = "equispaced"
    mask_seed: int = 0
    sigma_n: float = 0.01
    cg_iters: int = 10

    def operator(self, maps: torch.Tensor, volumes: Sequence[str] | None = None) -> MulticoilMRI:
        """The operator of a batch. A random mask is drawn per volume (``volumes``: the
        volume of each image), keyed by (mask seed, volume) as fastMRI seeds its masks
        by file, so a slice's mask does not depend on its batch; an equispaced mask is
        one fixed mask."""
        seed = self.mask_seed
        if self.mask == "random" and volumes is not None:
            seed = [volume_mask_seed(self.mask_seed, v) for v in volumes]
        return MulticoilMRI(
            maps,
            self.acceleration,
            self.center_fraction,
            self.mask,
            seed,
            self.cg_iters,
        )


@dataclass(frozen=True)
class Reconstruction:
    """How a cell reconstructs: a classical ``method`` (``zero_filled``; ``sense`` and
    ``cs_wavelet`` with their weight ``lam`` and ``iters`` iterations) or ``diffusion``:
    ``solver`` (its ``solver_params``) around ``prior``, a prior trained on complex images,
    whole or through the shifted grid of ``size``-px tiles padded with ``padding``."""

    method: str
    lam: float | None = None
    iters: int | None = None
    solver: str | None = None
    solver_params: dict | None = None
    prior: str | Path | None = None
    size: str | int = WHOLE
    padding: str = "reflect"


def volume_mask_seed(seed: int, volume: str) -> int:
    """The random mask's seed of one volume: a function of (seed, volume name) only."""
    state = np.random.SeedSequence([int(seed), image_key(str(volume))]).generate_state(1)
    return int(state[0])


def _reconstructor(
    method: str,
    *,
    lam: float | None,
    iters: int | None,
    solver: str | None,
    solver_params: dict | None,
    denoiser,
    sigma_n: float = 0.0,
) -> Callable:
    """``f(op, y, names) -> (x_hat [B, 2, S, S], nfe)`` for one method."""
    if method == DIFFUSION:
        from patchpnp.solvers import SolveStreams, make_solver

        def diffusion(op, y, names, seed):
            engine = make_solver(solver, denoiser, op, **(solver_params or {}))
            streams = SolveStreams.for_names(seed, names)
            x_hat, info = engine.solve(y, sigma_n, streams, names=names)
            return x_hat, info["nfe"]

        return diffusion

    def classical(op, y, names, seed):
        return reconstruct(method, op, y, lam=lam, iters=iters), 0

    return classical


def check_method(method: str, solver: str | None, prior, lam) -> None:
    """Refuse a cell that cannot run, before anything is loaded."""
    if method not in MRI_METHODS:
        raise MRIError(f"unknown MRI method {method!r}; expected one of {MRI_METHODS}")
    if method == DIFFUSION:
        from patchpnp.solvers import SOLVERS

        if solver not in SOLVERS:
            raise MRIError(f"method diffusion needs a solver of {sorted(SOLVERS)}, got {solver!r}")
        if prior is None:
            raise MRIError("method diffusion needs a prior (--prior)")
    elif method in TUNED and (lam is None or not lam >= 0):
        raise MRIError(f"method {method} needs a regularisation weight lam >= 0, got {lam}")


def run_split(
    split: MRISplit,
    acquisition: Acquisition,
    recon_fn: Callable,
    *,
    batch_images: int,
    seed: int,
    device: torch.device,
    desc: str = "",
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, pd.DataFrame]:
    """Reconstruct every slice of ``split``; return ``(recon, y, per-image metrics)``.

    Scores use each volume's maximum of the target magnitude over its scored slices
    (fastMRI's data range); data consistency the noise level estimated from each
    slice's measured k-space (``noise_sigma``)."""
    n = len(split.images)
    names = split.names()
    data_range = volume_data_range(split.images, split.source)
    noise_sigma = kspace_noise_sigma(split.kspace)
    recon = torch.empty(split.images.shape, dtype=torch.float32)
    ys, rows = [], []
    for start in tqdm(range(0, n, batch_images), desc=desc, disable=not progress):
        idx = list(range(start, min(start + batch_images, n)))
        maps = torch.from_numpy(split.maps[idx]).to(device)
        op = acquisition.operator(maps, [split.source[i] for i in idx])
        y = op.undersample(torch.from_numpy(split.kspace[idx]).to(device))
        t0 = time.perf_counter()
        x_hat, nfe = recon_fn(op, y, [names[i] for i in idx], seed)
        seconds = (time.perf_counter() - t0) / len(idx)
        x_hat = x_hat.detach().float()
        recon[idx] = x_hat.cpu()
        ys.append(y.cpu())
        # ||A x - y|| / sqrt(m), over the estimated noise level of each slice
        dc = data_consistency(op, x_hat, y, 1.0).numpy() / noise_sigma[idx]
        scores = mri_scores(x_hat.cpu().numpy(), split.images[idx], data_range[idx])
        for j, i in enumerate(idx):
            rows.append(
                {
                    "image": i,
                    "source": split.source[i],
                    "slice": int(split.slice[i]),
                    **{k: float(v[j]) for k, v in scores.items()},
                    "data_consistency": float(dc[j]),
                    "noise_sigma": float(noise_sigma[i]),
                    "data_range": float(data_range[i]),
                    "cg_residual_max": float(op.worst_residual[j]),
                    "nfe": nfe,
                    "seconds": seconds,
                }
            )
        if op.worst_residual.numel() and float(op.worst_residual.max()) > 0:
            log.info(
                "%s images %d-%d: CG relative residual at most %.2e (%d iterations)",
                desc,
                idx[0],
                idx[-1],
                float(op.worst_residual.max()),
                acquisition.cg_iters,
            )
    return recon, torch.cat(ys), pd.DataFrame(rows)


def _load_denoiser(prior, size, padding, patch_batch, device, precision):
    from patchpnp.patching.patches import ShiftedGridDenoiser
    from patchpnp.prior.loading import load_prior

    denoiser, settings = load_prior(prior, device, precision=precision)
    if settings["network"]["img_channels"] != 2:
        raise MRIError(
            f"{prior}: the prior was trained on {settings['network']['img_channels']}-channel "
            f"images; MRI reconstruction needs one trained on complex (2-channel) images"
        )
    if str(size) != WHOLE:
        denoiser = ShiftedGridDenoiser(
            denoiser, int(size), padding=padding, patch_batch=patch_batch
        )
    return denoiser


def run_mri_cell(
    data: str | Path,
    recon_path: str | Path,
    metrics_path: str | Path,
    *,
    dataset: str,
    acquisition: Acquisition,
    reconstruction: Reconstruction,
    runtime: Runtime | None = None,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run one MRI cell on the first ``limit`` slices of ``data`` and write its
    reconstructions and per-image metrics. ``runtime`` (default: :data:`MRI_RUNTIME`):
    the device, threads, precision, ``batch_images`` and a number of tiles per network
    call (``patch_batch``; ``auto`` is the grid's only, which calibrates its priors)."""
    runtime = runtime or MRI_RUNTIME
    method, lam, solver = reconstruction.method, reconstruction.lam, reconstruction.solver
    prior, size, padding = reconstruction.prior, reconstruction.size, reconstruction.padding
    check_method(method, solver, prior, lam)
    if isinstance(runtime.patch_batch, str):
        raise MRIError(
            f"patch_batch {runtime.patch_batch!r}: an MRI cell takes a number of tiles per "
            "network call, or none for all at once"
        )
    split = read_mri_split(data, limit)
    dev = runtime.start()
    denoiser = None
    if method == DIFFUSION:
        denoiser = _load_denoiser(prior, size, padding, runtime.patch_batch, dev,
                                  runtime.precision)  # fmt: skip
    recon_fn = _reconstructor(
        method,
        lam=lam,
        iters=reconstruction.iters,
        solver=solver,
        solver_params=reconstruction.solver_params,
        denoiser=denoiser,
        sigma_n=acquisition.sigma_n,
    )
    keys = {
        "dataset": dataset,
        "acceleration": acquisition.acceleration,
        "mask": acquisition.mask,
        "method": method,
        "prior": NONE if method != DIFFUSION else Path(str(prior)).parent.name,
        "solver": NONE if method != DIFFUSION else solver,
        "size": str(size) if method == DIFFUSION else WHOLE,
    }
    desc = f"{method} {keys['solver']} {keys['size']} x{acquisition.acceleration}"
    recon, y, table = run_split(
        split,
        acquisition,
        recon_fn,
        batch_images=runtime.batch_images,
        seed=seed,
        device=dev,
        desc=desc,
        progress=progress,
    )
    table = table.assign(**keys, lam=np.nan if lam is None else float(lam))
    table = table[[*MRI_CELL_KEYS, *[c for c in table.columns if c not in MRI_CELL_KEYS]]]
    attrs = {**{k: str(v) for k, v in keys.items()}, **asdict(acquisition), "seed": seed}
    attrs["padding"] = padding if str(size) != WHOLE else NO_PADDING
    with atomic_path(recon_path) as tmp, h5py.File(tmp, "w") as f:
        write_recon(f, recon.numpy(), y.numpy(), attrs)
    with atomic_path(metrics_path) as tmp:
        table.to_csv(tmp, index=False)
    log.info(
        "%s: PSNR %.2f dB, SSIM %.4f over %d slices",
        desc,
        *table[["psnr", "ssim"]].mean(),
        len(table),
    )
    return table


def tune_mri(
    data: str | Path,
    output: str | Path,
    *,
    acquisition: Acquisition,
    reconstruction: Reconstruction,
    values: list[float],
    runtime: Runtime | None = None,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> float:
    """Sweep one parameter of ``reconstruction`` over ``values`` on the tuning slices: a
    classical method's ``lam``, or a diffusion solver's (:data:`patchpnp.params.TUNED`:
    DiffPIR's ``lam``, DPS's ``zeta``) with its prior at whole-image inference (its size
    and padding do not count). Writes the sweep (mean PSNR, SSIM, NMSE per value, the
    chosen row marked) and returns the value of best mean PSNR. A best value on the grid's
    edge is logged as a warning and marked ``interior = False``
    (:func:`~patchpnp.inference.mri_baselines.choose_interior`). ``runtime`` default:
    :data:`MRI_RUNTIME` on the CPU."""
    from patchpnp.params import TUNED as SOLVER_TUNED

    runtime = runtime or replace(MRI_RUNTIME, device="cpu")
    method, iters, solver = reconstruction.method, reconstruction.iters, reconstruction.solver
    solver_params, prior = reconstruction.solver_params, reconstruction.prior
    if method not in (*TUNED, DIFFUSION):
        raise MRIError(f"only {(*TUNED, DIFFUSION)} have a parameter to tune, not {method!r}")
    check_method(method, solver, prior, 0.0)
    param = SOLVER_TUNED[solver] if method == DIFFUSION else "lam"
    split = read_mri_split(data, limit)
    dev = runtime.start()
    denoiser = None
    if method == DIFFUSION:
        denoiser = _load_denoiser(prior, WHOLE, "reflect", None, dev, runtime.precision)
    rows = []
    desc = f"tune {solver or method} {param} x{acquisition.acceleration}"
    for value in tqdm(values, desc=desc, disable=not progress):
        fn = _reconstructor(
            method,
            lam=value if method != DIFFUSION else None,
            iters=iters,
            solver=solver,
            solver_params={**(solver_params or {}), param: value},
            denoiser=denoiser,
            sigma_n=acquisition.sigma_n,
        )
        _, _, table = run_split(
            split, acquisition, fn, batch_images=runtime.batch_images, seed=seed, device=dev,
            progress=False,
        )  # fmt: skip
        rows.append({param: value, **table[["psnr", "ssim", "nmse"]].mean().to_dict()})
    sweep = pd.DataFrame(rows)
    choice = choose_interior(values, sweep["psnr"].to_numpy())
    sweep["chosen"] = sweep.index == choice.index
    sweep["interior"] = choice.interior
    sweep = sweep.assign(
        method=method,
        solver=solver or NONE,
        prior=Path(str(prior)).parent.name if prior else NONE,
        acceleration=acquisition.acceleration,
        mask=acquisition.mask,
    )
    with atomic_path(output) as tmp:
        sweep.to_csv(tmp, index=False)
    log.info("%s: chose %s = %.4g (interior: %s)", desc, param, choice.value, choice.interior)
    return choice.value


def read_tuned(path: str | Path) -> float:
    """The chosen ``lam`` of a classical method's sweep written by :func:`tune_mri`
    (its one chosen row, read by :func:`patchpnp.inference.tuned.chosen_row`)."""
    try:
        lam = float(chosen_row(path, columns=("lam",))["lam"])
    except TunedValueError as err:
        raise MRIError(f"{err} (a classical method's lam sweep)") from None
    if not math.isfinite(lam):
        raise MRIError(f"{path}: the chosen lam is {lam}, not a number")
    return lam


def mri_cell_command(
    data: str,
    recon_path: str,
    metrics_path: str,
    *,
    dataset: str,
    acquisition: Acquisition,
    reconstruction: Reconstruction,
    lam_file: str | None = None,
    runtime: Runtime | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> str:
    """``patchpnp mri-cell``: one MRI cell (``--lam-file``: a tuning sweep's choice of the
    reconstruction's ``lam``). ``seed`` keys the solver's draws and a random mask."""
    if lam_file is not None:
        reconstruction = replace(reconstruction, lam=read_tuned(lam_file))
    table = run_mri_cell(
        data,
        recon_path,
        metrics_path,
        dataset=dataset,
        acquisition=replace(acquisition, mask_seed=seed),
        reconstruction=reconstruction,
        runtime=runtime,
        seed=seed,
        limit=limit,
    )
    return f"{metrics_path}: PSNR {table['psnr'].mean():.2f} dB over {len(table)} slices"


def mri_tune_command(
    data: str,
    output: str,
    *,
    acquisition: Acquisition,
    reconstruction: Reconstruction,
    lam_center: float,
    decades: float,
    points: int,
    runtime: Runtime | None = None,
    seed: int = 0,
    limit: int | None = None,
) -> str:
    """``patchpnp mri-tune``: a classical method's lam, or a diffusion solver's lam / zeta,
    swept on a log grid over the tuning slices. ``seed`` keys the solver's draws and a
    random mask."""
    best = tune_mri(
        data,
        output,
        acquisition=replace(acquisition, mask_seed=seed),
        reconstruction=reconstruction,
        values=[float(v) for v in lambda_grid(lam_center, decades, points)],
        runtime=runtime,
        seed=seed,
        limit=limit,
    )
    what = reconstruction.solver or reconstruction.method
    return f"{output}: {what} x{acquisition.acceleration} chose {best:.4g}"
