"""Peak memory of the denoiser's gradient path: whole image vs tiled (plain / memory-bounded).

Run ``python -m patchpnp.tools.bench_patch_memory``. For each image size it measures the
memory of one DPS-style step, ``x0 = D(x)`` then ``J_D(x)^T g``, for

- ``whole``:   the inner network on the whole image, plain autograd;
- ``plain``:   the shifted-grid wrapper with plain autograd through every tile;
- ``bounded``: the shifted-grid wrapper with its memory-bounded recomputing backward;
- ``one_pass``: the wrapper's one-pass product for a pixel-local cotangent, as DPS takes
  its data gradient on denoising (:func:`patchpnp.solvers.dps.data_gradient`).

Patch size and ``patch_batch`` are fixed, so the memory-bounded peak should stay flat
while the other two grow with the image (plain autograd keeps every tile's activations);
``one_pass`` should keep ``bounded``'s memory at one forward pass less per tile.

Each configuration runs in a fresh subprocess; after set-up and warm-up the step is run
once measured by :class:`patchpnp.metrics.memory.PeakMemory` and once timed (the CPU
measurement's profiler slows operators down). The table shows the working peak: memory
allocated above the set-up (CPU: at the allocator level, from the torch profiler's memory
events; CUDA: ``torch.cuda.max_memory_allocated``); each row's JSON also has the total.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from torch import nn

from patchpnp.metrics.fresh_process import run_fresh
from patchpnp.metrics.memory import PeakMemory

MODES = ("whole", "plain", "bounded", "one_pass")


class ConvDenoiser(nn.Module):
    """A small stand-in prior: ``depth`` 3x3 convolutions of ``width`` channels with SiLU."""

    def __init__(self, channels: int = 1, width: int = 32, depth: int = 4):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = channels + 1  # image + a constant sigma channel
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c_in, width, 3, padding=1), nn.SiLU()]
            c_in = width
        layers.append(nn.Conv2d(c_in, channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
        s = s.expand(x.shape[0], 1, *x.shape[2:])
        return x + self.net(torch.cat([x, s], dim=1))


def _worker(mode: str, size: int, patch: int, patch_batch: int, device: str) -> dict:
    """One configuration, meant to run in a fresh process; returns the measurements."""
    from patchpnp.patching.patches import ShiftedGridDenoiser
    from patchpnp.physics.denoising import Denoising
    from patchpnp.solvers import SolverDenoiser
    from patchpnp.solvers.dps import data_gradient

    torch.manual_seed(0)
    dev = torch.device(device)
    inner = ConvDenoiser().to(dev).requires_grad_(False)
    if mode == "whole":
        den = inner
    else:
        den = ShiftedGridDenoiser(
            inner,
            patch,
            padding="reflect",
            patch_batch=patch_batch,
            memory_bounded_grad=(mode == "bounded"),
        )
    x = torch.rand(1, 1, size, size, device=dev)
    g = torch.randn(1, 1, size, size, device=dev)

    def step() -> torch.Tensor:
        if mode == "one_pass":
            grids = [torch.Generator().manual_seed(0)]
            return data_gradient(SolverDenoiser(den), Denoising(), x, g, 0.2, grids)[1]
        xg = x.clone().requires_grad_(True)
        out = den(xg, 0.2)
        # DPS-like: the residual's norm, differentiated with respect to the input.
        loss = (out - g).flatten(1).norm(dim=1).sum()
        (grad,) = torch.autograd.grad(loss, xg)
        return grad

    # Warm-up on a small image so one-time library initialisation is not counted.
    small = torch.rand(1, 1, 2 * patch, 2 * patch, device=dev, requires_grad=True)
    torch.autograd.grad(den(small, 0.2).sum(), small)
    if mode != "whole":
        den.reset_counters()

    meter = PeakMemory(dev)
    meter.start()
    step()
    peak = meter.stop()
    t0 = time.perf_counter()
    step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    tiles = 1 if mode == "whole" else den.tiles_evaluated
    return {
        "mode": mode,
        "size": size,
        "tiles": tiles,
        "working_mib": peak.working_mib,
        "total_mib": peak.total_mib,
        "seconds": seconds,
        "how": peak.how,
    }


def _run_isolated(mode: str, size: int, patch: int, patch_batch: int, device: str, threads: int):
    args = ["--worker", mode, "--sizes", size, "--patch", patch, "--patch-batch", patch_batch,
            "--device", device, "--threads", threads]  # fmt: skip
    return run_fresh("patchpnp.tools.bench_patch_memory", args, f"{mode} N={size}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="64,128,192,256,384,512")
    p.add_argument("--patch", type=int, default=32)
    p.add_argument("--patch-batch", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]

    if args.worker:
        print(json.dumps(_worker(args.worker, sizes[0], args.patch, args.patch_batch, args.device)))
        return

    print(
        f"gradient of ||D(x) - g|| w.r.t. x; inner: 4 conv3x3 layers, 32 channels; "
        f"P={args.patch}, patch_batch={args.patch_batch}, reflect padding, device={args.device}, "
        f"{args.threads} threads; one fresh process per row"
    )
    header = f"{'N':>5} {'tiles':>6} " + " ".join(f"{m + ' MiB':>12} {m + ' s':>9}" for m in MODES)
    print(header)
    print("-" * len(header))
    how = set()
    for size in sizes:
        row = {}
        for mode in MODES:
            row[mode] = _run_isolated(
                mode, size, args.patch, args.patch_batch, args.device, args.threads
            )
            how.add(row[mode]["how"])
        cells = " ".join(f"{row[m]['working_mib']:12.1f} {row[m]['seconds']:9.3f}" for m in MODES)
        print(f"{size:5d} {row['bounded']['tiles']:6d} {cells}")
    print(f"memory: working peak above the post-set-up baseline ({', '.join(sorted(how))})")


if __name__ == "__main__":
    main()
