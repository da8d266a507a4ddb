"""One denoiser call on noisy evaluation slices: the prior's basic quality check.

For each sigma (in [0, 1] units), ``D01(x + sigma n, sigma)`` is compared with
the noisy input ``x + sigma n`` by PSNR against ``x`` (data range 1,
:func:`patchpnp.metrics.quality.psnr`). A prior
worth using beats its input by several dB at every sigma; the ``tile`` option
runs the same call through the shifted-grid patch wrapper, which shows how a
prior copes with patches (a whole-image prior trained on centred, black-bordered
images does worse there).

The noise of each image comes from its own generator, seeded by the split file
(``<dataset>/<file>``), the image's index in it, the sigma and the draw, so the
numbers do not depend on the order the files are given in. With 16 demo slices
one noise draw moves the mean gain by a few hundredths of a dB (0.08 dB between
two file orders at sigma 0.05), so the check averages ``draws`` draws and
reports the standard error of that mean over the draws.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from patchpnp.atomic import atomic_path
from patchpnp.formats import read_split
from patchpnp.layout import WHOLE
from patchpnp.metrics.quality import psnr
from patchpnp.patching.patches import ShiftedGridDenoiser
from patchpnp.prior.loading import load_prior
from patchpnp.runtime import (
    Runtime,
    keyed_generator,
    keyed_randn_per_sample,
    select_device,
    use_threads,
)


def noise_generator(seed: int, split: str | Path, index: int, sigma_index: int, draw: int):
    """The generator of one image's noise: it depends on the split file's name
    (``<dataset>/<file>``), the image's index in it, the sigma's index and the draw."""
    split = Path(split)
    name = zlib.crc32(f"{split.parent.name}/{split.name}".encode())
    return keyed_generator(seed, 7, name, index, sigma_index, draw)


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
    draws: int = 4,
) -> pd.DataFrame:
    """Mean PSNR of the noisy input and of one denoiser call, per sigma, over every
    image and ``draws`` noise draws; ``gain_db_se`` is the standard error of the mean
    gain over the draws (0 for one draw).

    The noise is drawn on the CPU, so the numbers do not depend on ``device``
    (``auto``, ``cpu`` or ``cuda``, as in training).
    """
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    use_threads(threads)
    dev = select_device(device)
    denoiser, settings = load_prior(prior, device=dev)
    if tile:
        denoiser = ShiftedGridDenoiser(denoiser, tile, padding=padding, seed=seed)
    images = [torch.from_numpy(read_split(p).images) for p in data]
    x = torch.cat(images)
    keys = [(p, i) for p, imgs in zip(data, images, strict=True) for i in range(len(imgs))]
    rows = []
    for k, sigma in enumerate(sigmas):
        p_in, p_out = [], []
        for r in range(draws):
            gens = [noise_generator(seed, p, i, k, r) for p, i in keys]
            noise = keyed_randn_per_sample(x.shape[1:], gens)
            noisy = x + sigma * noise
            out = torch.cat(
                [
                    denoiser(noisy[i : i + batch].to(dev), sigma).cpu()
                    for i in range(0, len(x), batch)
                ]
            )
            p_in.append(psnr(noisy, x))
            p_out.append(psnr(out.clamp(0, 1), x))
        p_in, p_out = torch.stack(p_in), torch.stack(p_out)  # [draws, images]
        per_draw = (p_out - p_in).mean(dim=1)
        se = per_draw.std().item() / draws**0.5 if draws > 1 else 0.0
        rows.append(
            {
                "prior": settings["name"],
                "inference": f"tile{tile}" if tile else WHOLE,
                "sigma": sigma,
                "images": len(x),
                "draws": draws,
                "psnr_noisy": p_in.mean().item(),
                "psnr_denoised": p_out.mean().item(),
                "gain_db": per_draw.mean().item(),
                "gain_db_se": se,
            }
        )
    return pd.DataFrame(rows)


def denoise_check_command(
    data: Sequence[str],
    *,
    prior: str,
    sigmas: Sequence[float],
    seed: int = 0,
    tile: int | None = None,
    padding: str = "reflect",
    draws: int = 4,
    batch: int = 16,
    output: str | None = None,
    runtime: Runtime | None = None,
) -> str:
    """``patchpnp denoise-check``: the table (written to ``output`` as CSV if given), as
    text; ``runtime``: the device and threads."""
    runtime = runtime or Runtime()
    table = denoise_check(
        prior, data, sigmas, seed=seed, tile=tile, padding=padding, device=runtime.device,
        threads=runtime.threads, draws=draws, batch=batch,
    )  # fmt: skip
    if output:
        with atomic_path(output) as tmp:
            table.to_csv(tmp, index=False)
    return table.to_string(index=False, float_format=lambda v: f"{v:.2f}")
