"""Cross-check of our DiffPIR against an independent implementation: deepinv's.

deepinv (PyPI ``deepinv``, the optional extra ``crosscheck``) ships its own DiffPIR
(``deepinv.sampling.DiffPIR``). Here it runs with *our* frozen prior and *our* forward
model on the same slices and measurements as a grid cell, and the PSNRs are compared.

How deepinv's DiffPIR maps onto ours (read from ``deepinv/sampling/diffusion.py``, 0.5):

- **State and units.** deepinv keeps the DDPM (variance-preserving) state
  ``x_t = sqrt(abar_t) (2 u - 1 + 2 s eps)`` in [-1, 1] units, with ``u`` our [0, 1]
  image and ``s = sqrt(1 - abar_t) / (2 sqrt(abar_t))`` our [0, 1]-unit noise level. It
  calls the denoiser as ``model(x_t / (2 sqrt(abar_t)) + 1/2, 2 s / 2)``: a [0, 1] image
  and a [0, 1]-unit sigma, which is exactly our ``D01(x, s)`` (so
  :class:`DeepinvDenoiser` converts nothing; the test checks it against
  ``(D(2x - 1, 2s) + 1) / 2`` in network units). Its ``eps`` and re-noising steps, divided
  by ``sqrt(abar)``, are our steps 3 and 4 term for term.
- **lambda.** deepinv sets ``rho_t = lambda_ sigma_n^2 / sigma_k^2`` with ``sigma_n`` the
  physics' noise std in [0, 1] units and ``sigma_k = 2 s`` in [-1, 1] units, and takes the
  data step ``L2().prox(x0, y, physics, gamma = 1 / (2 rho_t))``, i.e.
  ``argmin ||A x - y||^2 / (4 rho_t) + ||x - x0||^2 / 2 = argmin ||A x - y||^2 + 2 rho_t
  ||x - x0||^2``. Our weight is ``lam sigma_n^2 / s^2``, so ``2 lambda_ sigma_n^2 /
  (4 s^2) = lam sigma_n^2 / s^2`` gives ``lambda_deepinv = 2 lam`` (:func:`to_deepinv_lambda`).
  The official code uses ``rho_t`` itself (no factor 2), so its lambda is ``4 lam``.
- **Schedule.** deepinv's levels are the 1000 DDPM levels (linear betas 1e-4..0.02):
  in [0, 1] units from 78.7 down to 0.005, ``max_iter`` of them picked by a quadratic
  rule, always starting from the top (t = 999). Ours are EDM's (rho = 7) from
  ``sigma_start`` down to 0.001. To start both at ``sigma_start``,
  :func:`make_deepinv_diffpir` starts deepinv at the DDPM step nearest ``sigma_start``,
  with deepinv's own quadratic rule over the remaining steps, and scales the initial
  state by that step's ``sqrt(abar)`` (deepinv hard-codes step 999 there). With
  ``start = 'top'`` deepinv runs unmodified (the test checks that the schedule is then
  deepinv's own) and ours starts at its ``sigma_max``.
- **What still differs, by design of the two codes**: deepinv clamps the denoiser output
  to [0, 1] before the data step; its initial noise is ``sqrt(s_0^2 - sigma_n^2)`` (it
  counts the noise already in ``y``), ours ``s_0``; it returns the *state* at its last
  level (0.005, i.e. the previous step's estimate plus that much noise) where ours
  returns the final denoiser output; and the levels themselves differ. The diagnostic
  run ``ours_ddpm_levels`` (our solver on deepinv's exact levels) separates the schedule
  from everything else.

Both outputs are clamped to [0, 1] before scoring (ours does it inside ``solve``); the
PSNR of deepinv's raw output is kept as ``psnr_unclamped``.

deepinv is imported inside the functions only, so the package works without it.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from patchpnp.formats import read_split  # the same slices, in the same order, as a cell
from patchpnp.inference.cell import InferenceError, measurement_generators
from patchpnp.metrics.quality import psnr
from patchpnp.params import (
    SOLVER_KEYS,
    STEPS,
    missing_solver_params,
    operator_params,
    unknown_solver_params,
)
from patchpnp.physics import Denoising, LinearOperator, SuperResolution, make_operator
from patchpnp.runtime import Runtime, keyed_rand
from patchpnp.solvers import DiffPIR, SolveStreams

log = logging.getLogger(__name__)

DDPM_STEPS = 1000
METHODS = ("ours", "deepinv", "ours_ddpm_levels")
INSTALL_HINT = "pip install -e . (deepinv is a main dependency of patchpnp)"


class CrosscheckError(InferenceError):
    """The cross-check cannot run (deepinv missing, bad settings); the message says why."""


@dataclass(frozen=True)
class CheckedCell:
    """The grid cell a cross-check reproduces: DiffPIR around ``prior`` on ``task``, with
    the settings of ``config`` (for the prior named ``prior_name`` there, by default the
    prior's folder name), which ``task_params`` / ``solver_params`` override; ``seed``:
    None takes the config's (else 0)."""

    prior: str
    task: str
    config: str | None = None
    prior_name: str | None = None
    task_params: dict | None = None
    solver_params: dict | None = None
    seed: int | None = None


def require_deepinv():
    """Import deepinv, or fail with the command that installs it."""
    try:
        import deepinv
    except ImportError as err:
        raise CrosscheckError(
            f"the cross-check needs deepinv, which is not installed: run `{INSTALL_HINT}` "
            f"(or `pip install deepinv`)"
        ) from err
    return deepinv


def to_deepinv_lambda(lam: float) -> float:
    """deepinv's ``lambda_`` that runs our ``lam`` (with its default ``L2()`` fidelity)."""
    return 2.0 * float(lam)


def from_deepinv_lambda(lambda_: float) -> float:
    """Our ``lam`` for deepinv's ``lambda_`` (the official code's lambda is ``4 lam``)."""
    return float(lambda_) / 2.0


# -- the denoiser ---------------------------------------------------------------------------
class DeepinvDenoiser(nn.Module):
    """Our [0, 1]-space denoiser as deepinv calls a denoiser: ``model(x, sigma)``.

    deepinv's DiffPIR passes a [0, 1] image and a [0, 1]-unit sigma (a 0-d tensor), the
    units of our ``D01``, so only the type of ``sigma`` is converted: a float for one
    level, a per-sample tensor otherwise. ``calls`` counts the network evaluations.
    """

    def __init__(self, denoiser: nn.Module):
        super().__init__()
        self.denoiser = denoiser
        self.calls = 0

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        sigma = torch.as_tensor(sigma)
        if sigma.numel() == 1:
            level = float(sigma)
        elif sigma.numel() == x.shape[0]:
            level = sigma.reshape(-1).to(device=x.device, dtype=x.dtype)
        else:
            raise ValueError(
                f"sigma must be one level or one per sample (batch {x.shape[0]}), "
                f"got shape {tuple(sigma.shape)}"
            )
        self.calls += 1
        with torch.no_grad():
            return self.denoiser(x, level)


# -- the forward model ----------------------------------------------------------------------
def operator_physics(operator: LinearOperator, sigma_n: float):
    """Our operator as deepinv physics (one home:
    :func:`patchpnp.solvers.deepinv_solvers.operator_physics`)."""
    require_deepinv()
    from patchpnp.solvers.deepinv_solvers import operator_physics as wrap

    return wrap(operator, sigma_n)


def native_physics(operator: LinearOperator, sigma_n: float, image_shape, device="cpu"):
    """deepinv's own physics for our operator where it has one, else None.

    ``Denoising`` is deepinv's ``Denoising``; bicubic ``SuperResolution`` is deepinv's
    ``Downsampling(filter='bicubic', padding='circular')``, the same Keys kernel with the
    same alignment (:func:`check_physics` verifies A, A^T and the prox, which deepinv
    computes with its own FFT formula).
    """
    dinv = require_deepinv()
    noise = dinv.physics.GaussianNoise(sigma=float(sigma_n))
    if type(operator) is Denoising:
        return dinv.physics.Denoising(noise_model=noise, device=device)
    if type(operator) is SuperResolution and operator.kernel_name == "bicubic":
        return dinv.physics.Downsampling(
            img_size=tuple(int(n) for n in image_shape),
            filter="bicubic",
            factor=operator.factor,
            padding="circular",
            noise_model=noise,
            device=device,
        )
    return None


def deepinv_physics(
    operator: LinearOperator, sigma_n: float, image_shape, kind: str = "native", device="cpu"
):
    """The physics deepinv's DiffPIR will use: ``native`` (deepinv's own, where it has one
    for this operator, else the wrapper) or ``wrapped`` (:func:`operator_physics`)."""
    if kind not in ("native", "wrapped"):
        raise CrosscheckError(f"physics must be 'native' or 'wrapped', got {kind!r}")
    physics = None
    if kind == "native":
        physics = native_physics(operator, sigma_n, image_shape, device)
    if physics is None:
        physics = operator_physics(operator, sigma_n)
    return physics.to(device)


def check_physics(
    operator: LinearOperator,
    physics,
    shape,
    rho: float = 0.3,
    seed: int = 0,
    device="cpu",
) -> dict[str, float]:
    """Largest relative differences between deepinv's ``physics`` and our ``operator``:
    ``A``, ``A_adjoint`` and the prox (deepinv's ``prox_l2(z, y, 1 / rho)``) on random
    float32 tensors of ``shape`` ``[B, C, H, W]``."""
    g = torch.Generator().manual_seed(seed)
    x = keyed_rand(shape, g, device)
    z = keyed_rand(shape, g, device)
    y = operator.A(keyed_rand(shape, g, device))

    def rel(a, b):
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))

    return {
        "A": rel(physics.A(x), operator.A(x)),
        "A_adjoint": rel(physics.A_adjoint(y), operator.A_adjoint(y)),
        "prox": rel(physics.prox_l2(z, y, 1.0 / rho), operator.prox(z, y, rho)),
    }


# -- the solver ------------------------------------------------------------------------------
def ddpm_step_for(sigma: float | None) -> int:
    """The DDPM step whose level (in [0, 1] units) is nearest ``sigma``; None: the top, 999."""
    if sigma is None:
        return DDPM_STEPS - 1
    betas = torch.linspace(0.1 / DDPM_STEPS, 20 / DDPM_STEPS, DDPM_STEPS, dtype=torch.float32)
    abar = torch.cumprod(1.0 - betas, dim=0)
    levels = torch.sqrt(1.0 - abar) / torch.sqrt(abar) / 2  # [0, 1] units
    return int(torch.abs(levels - float(sigma)).argmin())


def make_deepinv_diffpir(
    denoiser: nn.Module,
    *,
    steps: int,
    lam: float,
    zeta: float,
    sigma_n: float,
    sigma_start: float | None = None,
    device="cpu",
):
    """deepinv's ``DiffPIR`` running our ``lam`` (as ``lambda_ = 2 lam``) and ``zeta``.

    With ``sigma_start`` it starts at the DDPM step nearest it: the steps are deepinv's
    quadratic rule (``t = t_0 - floor(sqrt(linspace(0, (t_0 + 1)^2, N)))``, which is
    deepinv's own for ``t_0 = 999``) and the initial state is scaled by ``sqrt(abar_{t_0})``
    where deepinv writes ``sqrt(abar_999)``; everything else is deepinv's code. ``sigma``
    (its constructor argument, which its initial noise uses) is set to ``sigma_n``.
    """
    dinv = require_deepinv()
    top = DDPM_STEPS - 1
    t_start = ddpm_step_for(sigma_start)

    class StartedDiffPIR(dinv.sampling.DiffPIR):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)  # deepinv's own schedule (t_start unset)
            self.t_start = t_start
            self.rhos, self.sigmas, self.seq = self.get_noise_schedule(self.sigma)

        def _started(self) -> bool:
            return getattr(self, "t_start", top) != top

        def get_noise_schedule(self, sigma):
            rhos, sigmas, seq = super().get_noise_schedule(sigma)
            if not self._started():
                return rhos, sigmas, seq
            t0 = self.t_start
            ramp = torch.linspace(0.0, float((t0 + 1) ** 2), self.max_iter, device=self.device)
            seq = (top - t0) + torch.sqrt(ramp).type(torch.int32)
            seq[-1] = seq[-1] - 1
            if self.max_iter > 1 and not bool((seq[1:] > seq[:-1]).all()):
                raise CrosscheckError(
                    f"{self.max_iter} steps do not fit between DDPM step {t0} and 0 without "
                    f"repeating a step: start higher or take fewer steps"
                )
            return rhos, sigmas, seq

        def get_alpha_prod(self, *args, **kwargs):
            recip, recipm1 = super().get_alpha_prod(*args, **kwargs)
            if self._started():
                # deepinv scales the initial state by 1 / recip[-1] (step 999); step t_0 is
                # where the started schedule begins. recip[-1] is read nowhere else.
                recip = recip.clone()
                recip[-1] = recip[self.t_start]
            return recip, recipm1

    if not 0.0 <= zeta <= 1.0:
        raise CrosscheckError(f"zeta must lie in [0, 1], got {zeta}")
    if not lam > 0:
        raise CrosscheckError(f"lam must be > 0, got {lam}")
    return StartedDiffPIR(
        model=denoiser,
        data_fidelity=dinv.optim.data_fidelity.L2(),
        sigma=float(sigma_n),
        max_iter=int(steps),
        zeta=float(zeta),
        lambda_=to_deepinv_lambda(lam),
        device=str(device),
    )


def deepinv_levels(model) -> torch.Tensor:
    """The noise levels (in [0, 1] units, float64) deepinv's DiffPIR visits, in order."""
    return model.sigmas[model.seq.long()].double().cpu() / 2


def ours_on_levels(denoiser, operator, levels: torch.Tensor, lam: float, zeta: float) -> DiffPIR:
    """Our DiffPIR taking exactly the noise ``levels`` given (e.g. deepinv's)."""
    solver = DiffPIR(denoiser, operator, steps=len(levels), lam=lam, zeta=zeta)
    solver.sigmas = torch.cat([levels.double().cpu(), levels.new_zeros(1, dtype=torch.float64)])
    return solver


# -- the comparison -------------------------------------------------------------------------
def run_crosscheck(
    prior: str | Path,
    data: str | Path,
    *,
    task: str,
    task_params: dict,
    solver_params: dict,
    limit: int | None = 4,
    seed: int = 0,
    start: str = "config",
    physics: str = "native",
    runtime: Runtime | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run our DiffPIR and deepinv's on the first ``limit`` slices of ``data``.

    ``task_params`` holds ``sigma_n`` and the operator's settings; ``solver_params``
    ``steps``, ``lam`` (our convention), ``zeta`` and optionally ``sigma_start``.
    ``start='config'`` starts both at ``sigma_start``; ``'top'`` runs deepinv unmodified
    from its top level and ours from its ``sigma_max``. Measurements and our solver's
    noise come from the same generators as a grid cell's, so ``ours`` reproduces the
    ``infer`` cell of these settings. ``runtime``: the device (default the CPU) and the
    threads. Returns ``(per_image, summary)``.
    """
    from patchpnp.prior.loading import load_prior

    require_deepinv()
    if start not in ("config", "top"):
        raise CrosscheckError(f"start must be 'config' or 'top', got {start!r}")
    params = dict(solver_params)
    # The cross-check maps every DiffPIR parameter onto deepinv's, and nothing else.
    unknown = unknown_solver_params("diffpir", params)
    if unknown:
        raise CrosscheckError(
            f"solver settings {unknown} have no deepinv counterpart; the cross-check "
            f"takes {sorted(SOLVER_KEYS['diffpir'] | {STEPS})}"
        )
    missing = missing_solver_params("diffpir", params)
    if missing:
        raise CrosscheckError(f"solver settings lack {missing}")
    if "sigma_n" not in task_params or not float(task_params["sigma_n"]) > 0:
        raise CrosscheckError(f"task '{task}': sigma_n must be > 0, got {task_params}")
    sigma_n = float(task_params["sigma_n"])
    steps, lam, zeta = int(params["steps"]), float(params["lam"]), float(params["zeta"])
    sigma_start = params.get("sigma_start") if start == "config" else None
    if sigma_start is not None and not float(sigma_start) > sigma_n:
        raise CrosscheckError(
            f"sigma_start {sigma_start} must exceed sigma_n {sigma_n}: deepinv's initial noise "
            f"is sqrt(sigma_start^2 - sigma_n^2)"
        )
    dev = (runtime or Runtime(device="cpu")).start()
    try:
        operator = make_operator(task, **operator_params(task_params))
    except (ValueError, TypeError) as err:
        raise CrosscheckError(f"task '{task}': {err}") from err

    split = read_split(data, None if limit is None else int(limit))
    sources, slices = split.source, split.slice
    x = torch.from_numpy(split.images).to(dev)
    n = x.shape[0]
    names = split.names()
    y = operator.measure(x, sigma_n, measurement_generators(seed, task, names))
    denoiser, _ = load_prior(prior, dev)
    wrapped = DeepinvDenoiser(denoiser)

    phys = deepinv_physics(operator, sigma_n, tuple(x.shape[1:]), kind=physics, device=dev)
    errors = check_physics(operator, phys, tuple(x.shape), device=dev)
    if max(errors.values()) > 1e-4:
        raise CrosscheckError(f"deepinv's physics differs from our operator: {errors}")
    log.info("physics %s (%s) matches ours: %s", type(phys).__name__, physics, errors)

    engine = make_deepinv_diffpir(
        wrapped,
        steps=steps,
        lam=lam,
        zeta=zeta,
        sigma_n=sigma_n,
        sigma_start=sigma_start,
        device=dev,
    )
    # forward() rebuilds the schedule from the physics' sigma; this is the same one.
    engine.rhos, engine.sigmas, engine.seq = engine.get_noise_schedule(sigma=sigma_n)
    levels = deepinv_levels(engine)

    solvers = {
        "ours": DiffPIR(
            denoiser, operator, steps=steps, lam=lam, zeta=zeta, sigma_start=sigma_start
        ),
        "ours_ddpm_levels": ours_on_levels(denoiser, operator, levels, lam, zeta),
    }
    outputs, seconds, first_levels, last_levels = {}, {}, {}, {}
    for name in METHODS:
        t0 = time.perf_counter()
        if name == "deepinv":
            x_init = operator.init(y)
            x_init = (x_init.real if x_init.is_complex() else x_init).clamp(0.0, 1.0)
            torch.manual_seed(seed)
            calls = wrapped.calls
            with torch.no_grad():
                out = engine(y, phys, x_init=x_init)
            if wrapped.calls - calls != steps:
                raise CrosscheckError(
                    f"deepinv called the denoiser {wrapped.calls - calls} times, not {steps}"
                )
            first_levels[name], last_levels[name] = float(levels[0]), float(levels[-1])
        else:
            solver = solvers[name]
            out, _ = solver.solve(y, sigma_n, SolveStreams.for_names(seed, names))
            first_levels[name], last_levels[name] = (
                float(solver.sigmas[0]),
                float(solver.sigmas[-2]),
            )
        seconds[name] = time.perf_counter() - t0
        outputs[name] = out.detach()
        log.info("%s: %.1f s for %d images", name, seconds[name], n)

    rows = []
    for name, out in outputs.items():
        scores = psnr(out.clamp(0.0, 1.0).cpu(), x.cpu())
        raw = psnr(out.cpu(), x.cpu())
        for i in range(n):
            rows.append(
                {
                    "image": i,
                    "source": sources[i],
                    "slice": int(slices[i]),
                    "method": name,
                    "psnr": float(scores[i]),
                    "psnr_unclamped": float(raw[i]),
                    "seconds": seconds[name] / n,
                }
            )
    table = pd.DataFrame(rows).assign(
        task=task,
        sigma_n=sigma_n,
        steps=steps,
        lam=lam,
        lambda_deepinv=to_deepinv_lambda(lam),
        zeta=zeta,
        start=start,
        sigma_start=sigma_start if sigma_start is not None else math.nan,
        physics=type(phys).__name__,
        seed=seed,
    )
    summary = summarise(table, first_levels, last_levels, seconds)
    return table, summary


def summarise(table: pd.DataFrame, first: dict, last: dict, seconds: dict) -> pd.DataFrame:
    """Mean PSNR per method, its difference from ``ours`` and the levels it went through."""
    ours = table[table.method == "ours"].set_index("image")["psnr"]
    rows = []
    for name, part in table.groupby("method", sort=False):
        diff = part.set_index("image")["psnr"] - ours
        rows.append(
            {
                "method": name,
                "images": len(part),
                "psnr": part["psnr"].mean(),
                "psnr_std": part["psnr"].std(ddof=1) if len(part) > 1 else math.nan,
                "minus_ours": diff.mean(),
                "max_abs_minus_ours": diff.abs().max(),
                "first_sigma": first[name],
                "last_sigma": last[name],
                "seconds": seconds[name],
            }
        )
    return pd.DataFrame(rows)


def crosscheck_command(
    *,
    data: str,
    cell: CheckedCell,
    start: str = "config",
    physics: str = "native",
    limit: int | None = 4,
    output: str | None = None,
    runtime: Runtime | None = None,
) -> str:
    """``patchpnp crosscheck``: the settings come from the cell's ``config`` (as the grid
    cell's), then its ``task_params`` / ``solver_params`` override them; returns the
    summary as text."""
    require_deepinv()  # fail first, with the install command, if the extra is missing
    prior, task, config, seed = cell.prior, cell.task, cell.config, cell.seed
    task_settings, solver_settings = {}, {}
    if config:
        from patchpnp.pipeline.config import load_config
        from patchpnp.pipeline.plan import Plan

        loaded = load_config(config)
        if task not in loaded["inference"]["tasks"]:
            raise CrosscheckError(f"task '{task}' is not in {config}")
        name = cell.prior_name or Path(prior).parent.name
        task_settings = dict(loaded["inference"]["tasks"][task])
        solver_settings = Plan(loaded).solver_params("diffpir", task, name)
        seed = loaded["seed"] if seed is None else seed
    task_settings.update(cell.task_params or {})
    solver_settings.update(cell.solver_params or {})
    table, summary = run_crosscheck(
        prior, data, task=task, task_params=task_settings, solver_params=solver_settings,
        limit=limit, seed=0 if seed is None else seed, start=start, physics=physics,
        runtime=runtime or Runtime(),
    )  # fmt: skip
    if output:
        table.to_csv(output, index=False)
    return (
        f"DiffPIR cross-check, task {task}: {task_settings}, {solver_settings}\n"
        + summary.to_string(index=False, float_format=lambda v: f"{v:.3f}")
    )
