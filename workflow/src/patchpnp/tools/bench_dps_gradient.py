"""DPS's data gradient through shifted-grid tiles: one pass against the recomputing backward.

A benchmark, not a test: ``python -m patchpnp.tools.bench_dps_gradient
[--network-config config/paper.yaml] [--image-size 320] [--sizes 32 64 128]`` builds the
config's U-Net with random weights (time does not depend on them) under the inference
precision and times, in one process, one DPS data gradient on a denoising step
(:func:`patchpnp.solvers.dps.data_gradient`) for

- ``whole``: the whole image, plain autograd;
- ``one_pass``: shifted-grid tiles, each micro-batch denoised with autograd and
  differentiated at once (denoising's cotangent is pixel-local);
- ``recompute``: the same tiles with the operator declared not pixel-local, as for
  super-resolution: the wrapper runs every tile without autograd first, then recomputes
  each micro-batch for the backward.

The micro-batch is ``patch_batch: auto``'s at ``--memory-budget``, from a calibration of
this network measured first. The variants are interleaved round by round, so a slow
spell of a shared machine hits them all alike; the table gives the fastest round and
the time over ``pixel ratio x whole``, the paper-scale profile's time target.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from patchpnp.params import PRECISIONS
from patchpnp.runtime import keyed_rand

VARIANTS = ("whole", "one_pass", "recompute")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network-config", default="config/paper.yaml")
    p.add_argument("--image-size", type=int, default=320)
    p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--memory-budget", default="25%")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--precision", default="auto", choices=PRECISIONS)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    from patchpnp.evaluation.paper_scale import _network, read_network
    from patchpnp.inference.calibration import calibrate_denoiser
    from patchpnp.patching.micro_batch import auto_patch_batch
    from patchpnp.patching.patches import ShiftedGridDenoiser
    from patchpnp.patching.tiling import AxisGrid
    from patchpnp.physics.denoising import Denoising
    from patchpnp.prior.loading import size_multiple
    from patchpnp.prior.precond import ImageSpaceDenoiser
    from patchpnp.solvers import SolverDenoiser
    from patchpnp.solvers.dps import data_gradient

    class NotPixelLocal(Denoising):
        """Denoising declared non-local: the gradient path of super-resolution."""

        pixel_local = False

    torch.set_num_threads(args.threads)
    network = read_network(args.network_config)
    net = ImageSpaceDenoiser(_network(network, torch.device("cpu"), 0, args.precision))
    calibration = calibrate_denoiser(net, size_multiple(network), "cpu", (1, 2, 4, 8))
    n = args.image_size
    g = torch.Generator().manual_seed(0)
    x, y = keyed_rand((1, 1, n, n), g), keyed_rand((1, 1, n, n), g)
    operators = {"whole": Denoising(), "one_pass": Denoising(), "recompute": NotPixelLocal()}

    def seconds(den, variant: str) -> float:
        t0 = time.perf_counter()
        data_gradient(den, operators[variant], x, y, 0.5, [torch.Generator().manual_seed(1)])
        return time.perf_counter() - t0

    whole = SolverDenoiser(net)
    seconds(whole, "whole")  # warm-up: first-call allocations
    rows = []
    for size in args.sizes:
        batch = auto_patch_batch(calibration, "dps", size, 1, n, n, args.memory_budget)
        tiled = SolverDenoiser(ShiftedGridDenoiser(net, size, "reflect", patch_batch=batch))
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                times[variant].append(seconds(whole if variant == "whole" else tiled, variant))
        best = {v: min(t) for v, t in times.items()}
        tiles = AxisGrid.for_axis(n, size).count ** 2
        ratio = tiles * size * size / (n * n)
        for variant in VARIANTS[1:]:
            rows.append({"image_size": n, "inference_size": size, "patch_batch": batch,
                         "tiles": tiles, "variant": variant, "seconds": best[variant],
                         "whole_seconds": best["whole"], "pixel_ratio": ratio,
                         "time_vs_pixel_ratio": best[variant] / (ratio * best["whole"]),
                         "vs_recompute": best[variant] / best["recompute"]})  # fmt: skip
        print(f"P = {size}: {best}", flush=True)
    print(pd.DataFrame(rows).to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
