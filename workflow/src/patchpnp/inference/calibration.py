"""Measuring a network's memory model: the calls :mod:`patchpnp.patching.micro_batch` fits.

The ``gradient`` mode measures DPS's own data-gradient step, so this module imports the
solvers; it is kept apart from ``micro_batch`` (the model, the budget and the choice of
micro-batch), which config checking and prior loading import, so that a change to a
solver reruns the calibrations and the cells but not the training-stage jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from patchpnp.patching.micro_batch import MODES, Calibration, MicroBatchError, calibrate
from patchpnp.runtime import keyed_rand, keyed_randn


def measure_call(denoiser, side: int, batch: int, mode: str, device) -> float:
    """Working MiB of one call of ``denoiser(x, sigma)`` on ``batch`` images of ``side``
    pixels: without autograd (``forward``) or with the vector-Jacobian product the
    memory-bounded DPS gradient takes per micro-batch (``gradient``)."""
    import torch

    from patchpnp.metrics.memory import PeakMemory

    if mode not in MODES:
        raise MicroBatchError(f"mode must be one of {MODES}, got {mode!r}")
    g = torch.Generator().manual_seed(side * 1000 + batch)
    x = keyed_rand((batch, 1, side, side), g, device)
    v = keyed_randn(x.shape, g, device)
    meter = PeakMemory(device)
    meter.start()
    denoiser_call(denoiser, x, v, mode)
    return meter.stop().working_mib


def denoiser_call(denoiser, x, v, mode: str, sigma: float = 0.5) -> None:
    """One denoiser call at level ``sigma`` in a solver's mode
    (:func:`patchpnp.patching.micro_batch.call_mode`):
    ``forward`` without autograd (DiffPIR), or ``gradient``, DPS's data gradient on a
    denoising step with measurement ``v`` (:func:`patchpnp.solvers.dps.data_gradient`:
    one pass through the tiles). Memory and time do not depend on ``sigma``."""
    import torch

    from patchpnp.physics import make_operator
    from patchpnp.solvers import SolverDenoiser
    from patchpnp.solvers.dps import data_gradient

    level = torch.full((x.shape[0],), sigma, device=x.device)
    if mode == "forward":
        with torch.no_grad():
            denoiser(x, level)
        return
    grids = [torch.Generator().manual_seed(b) for b in range(x.shape[0])]
    data_gradient(SolverDenoiser(denoiser), make_operator("denoise"), x, v, level, grids)


def calibrate_denoiser(
    denoiser, multiple: int, device, scales: Sequence[int] = (1, 2, 4)
) -> Calibration:
    """A :class:`Calibration` of ``denoiser`` (a loaded prior) on ``device``, measured now.
    One untimed call first pays the libraries' first-call allocations."""
    import torch

    device = torch.device(device)
    with torch.no_grad():
        denoiser(torch.zeros(1, 1, multiple, multiple, device=device), torch.ones(1, device=device))
    autocast = getattr(getattr(denoiser, "precond", None), "autocast_dtype", None)
    dtype = str(autocast or next(denoiser.parameters()).dtype).removeprefix("torch.")
    return calibrate(
        lambda side, batch, mode: measure_call(denoiser, side, batch, mode, device),
        multiple,
        str(device),
        dtype,
        scales,
    )


def calibrate_command(
    prior: str,
    output: str,
    device: str = "auto",
    threads: int | None = None,
    precision: str = "float32",
) -> str:
    """``patchpnp calibrate``: the memory model of ``prior``'s network on this device, in
    the precision inference uses (bfloat16 autocast halves the activations)."""
    from patchpnp.atomic import atomic_path
    from patchpnp.prior.loading import load_prior, size_multiple
    from patchpnp.runtime import select_device, use_threads

    use_threads(threads)
    dev = select_device(device)
    denoiser, settings = load_prior(prior, dev, precision=precision)
    calibration = calibrate_denoiser(denoiser, size_multiple(settings["network"]), dev)
    with atomic_path(output) as tmp:
        Path(tmp).write_text(calibration.to_json())
    return "\n".join(f"{mode}: {model}" for mode, model in calibration.models.items())
