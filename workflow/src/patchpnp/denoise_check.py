"""One denoiser call on noisy evaluation slices: the prior's basic quality check.

For each sigma (in [0, 1] units), ``D01(x + sigma n, sigma)`` is compared with
the noisy input ``x + sigma n`` by PSNR against ``x`` (data range 1). A prior
worth using beats its input by several dB at every sigma; the ``tile`` option
runs the same call through the shifted-grid patch wrapper, which shows how a
prior copes with patches (a whole-image prior trained on centred, black-bordered
images does worse there).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from patchpnp.extract import read_images
from patchpnp.patches import ShiftedGridDenoiser
from patchpnp.training.schemes import step_generator
from patchpnp.training.settings import load_prior, select_device


def psnr(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB with data range 1 (images in [0, 1])."""
    mse = (x - ref).square().flatten(1).mean(1)
    return -10 * torch.log10(mse.clamp_min(1e-12))


@torch.no_grad()
def denoise_check(
    prior: str | Path,
    data: Sequence[str | Path],
    sigmas: Sequence[float] = (0.05, 0.1, 0.2),
    seed: int = 0,
    tile: int | None = None,
    padding: str = "reflect",
    batch: int = 16,
    device: str = "cpu",
    threads: int | None = None,
) -> pd.DataFrame:
    """Mean PSNR of the noisy input and of one denoiser call, per sigma.

    The noise is drawn on the CPU, so the numbers do not depend on ``device``
    (``auto``, ``cpu`` or ``cuda``, as in training).
    """
    if threads:
        torch.set_num_threads(threads)
    dev = select_device(device)
    denoiser, settings = load_prior(prior, device=dev)
    if tile:
        denoiser = ShiftedGridDenoiser(denoiser, tile, padding=padding, seed=seed)
    x = torch.cat([torch.from_numpy(read_images(p)) for p in data])
    rows = []
    for k, sigma in enumerate(sigmas):
        g = step_generator(seed, k, stream=7)
        noisy = x + sigma * torch.randn(x.shape, generator=g)
        out = torch.cat(
            [denoiser(noisy[i : i + batch].to(dev), sigma).cpu() for i in range(0, len(x), batch)]
        )
        p_in, p_out = psnr(noisy, x), psnr(out.clamp(0, 1), x)
        rows.append(
            {
                "prior": settings["name"],
                "inference": f"tile{tile}" if tile else "whole",
                "sigma": sigma,
                "images": len(x),
                "psnr_noisy": p_in.mean().item(),
                "psnr_denoised": p_out.mean().item(),
                "gain_db": (p_out - p_in).mean().item(),
            }
        )
    return pd.DataFrame(rows)
