"""Inference speed of a prior's network under each option that could make it faster.

A benchmark, not a test: ``python -m patchpnp.tools.bench_inference --config
config/config.yaml [--prior results/priors/patch/ema.pt]`` times denoiser calls as the
solvers make them (DiffPIR: forward calls without autograd; DPS: the vector-Jacobian
product), on the config's evaluation batch, whole and in shifted-grid patches, for:

- ``baseline``: float32, contiguous tensors, ``torch.no_grad``;
- ``bfloat16``: the U-Net under bfloat16 autocast (``inference.precision``);
- ``channels_last``: the U-Net's weights and inputs in channels-last memory format;
- ``inference_mode``: ``torch.inference_mode`` instead of ``no_grad`` (forward only).

Each option is changed alone against the baseline, in one process, the variants
interleaved round by round so that a slow spell of a shared machine hits them all
alike; the table gives the median seconds per call and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time

import pandas as pd

from patchpnp.layout import WHOLE
from patchpnp.runtime import keyed_rand, keyed_randn

VARIANTS = ("baseline", "bfloat16", "channels_last", "inference_mode")


def _networks(prior: str | None, network: dict):
    """The baseline network and its channels-last copy (same weights)."""
    import torch

    from patchpnp.prior.loading import build_network, load_prior

    if prior:
        den, _ = load_prior(prior, "cpu")
        net = den.precond
    else:
        net = build_network(network, seed=0).eval().requires_grad_(False)
    last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    last.memory_format = torch.channels_last
    return net, last


def _call(denoiser, x, v, grad: bool, no_grad) -> None:
    import torch

    sigma = torch.full((x.shape[0],), 0.2)
    if not grad:
        with no_grad():
            denoiser(x, sigma)
        return
    t = x.detach().requires_grad_(True)
    torch.autograd.grad(denoiser(t, sigma), t, v)


def bench(
    prior: str | None,
    network: dict,
    side: int,
    batch: int,
    patch: int | None,
    patch_batch: int | None,
    rounds: int = 5,
    threads: int | None = None,
) -> pd.DataFrame:
    """Median seconds per call of each variant, for DiffPIR's and DPS's calls."""
    import torch

    from patchpnp.patching.patches import ShiftedGridDenoiser
    from patchpnp.prior.precond import ImageSpaceDenoiser
    from patchpnp.runtime import use_threads

    use_threads(threads)
    base, last = _networks(prior, network)
    g = torch.Generator().manual_seed(0)
    x = keyed_rand((batch, network["img_channels"], side, side), g)
    v = keyed_randn(x.shape, g)

    def wrap(net):
        den = ImageSpaceDenoiser(net)
        return den if patch is None else ShiftedGridDenoiser(den, patch, patch_batch=patch_batch)

    def setup(variant: str):
        base.autocast_dtype = torch.bfloat16 if variant == "bfloat16" else None
        net = last if variant == "channels_last" else base
        ctx = torch.inference_mode if variant == "inference_mode" else torch.no_grad
        return wrap(net), ctx

    rows = []
    for grad in (False, True):
        variants = [w for w in VARIANTS if not (grad and w == "inference_mode")]
        times: dict[str, list[float]] = {w: [] for w in variants}
        for w in variants:  # warm-up: first-call costs of each variant
            den, ctx = setup(w)
            _call(den, x, v, grad, ctx)
        for _ in range(rounds):
            for w in variants:
                den, ctx = setup(w)
                t0 = time.perf_counter()
                _call(den, x, v, grad, ctx)
                times[w].append(time.perf_counter() - t0)
        ref = sorted(times["baseline"])[rounds // 2]
        for w in variants:
            med = sorted(times[w])[rounds // 2]
            rows.append({"call": "dps gradient" if grad else "diffpir forward", "variant": w,
                         "seconds_per_call": med, "ratio": med / ref})  # fmt: skip
    base.autocast_dtype = None
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--prior", help="ema.pt of a trained prior (default: random weights)")
    parser.add_argument("--patch", type=int, nargs="+", default=[0], help="0: whole image")
    parser.add_argument("--patch-batch", type=int, default=None, help="tiles per call (all)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", help="write the table as CSV")
    args = parser.parse_args(argv)

    from patchpnp.pipeline.config import load_config

    config = load_config(args.config)
    side = config["data"]["image_size"]
    batch = config["inference"]["batch_images"]
    tables = []
    for patch in args.patch:
        t = bench(args.prior, config["network"], side, batch, patch or None, args.patch_batch,
                  args.rounds, args.threads)  # fmt: skip
        tables.append(t.assign(size=patch or WHOLE))
    table = pd.concat(tables, ignore_index=True)
    if args.output:
        table.to_csv(args.output, index=False)
    with contextlib.suppress(ImportError):
        print(table.to_markdown(index=False, floatfmt=".3f"))


if __name__ == "__main__":
    main()
