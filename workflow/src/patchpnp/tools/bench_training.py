"""Training speed of a prior's network under the options that decide it on a CPU.

A benchmark, not a test: ``python -m patchpnp.tools.bench_training --config config/config.yaml``
times optimiser steps (EDM2 loss, forward, backward, Adam) of each configured prior's
network on random images of its training size, for every combination asked for:
torch threads, channels_last memory format, bfloat16 autocast, ``torch.compile`` and
batch size. Each combination runs in a fresh process (thread pools and compiled
graphs do not carry over) and reports images per second after warm-up steps.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import pandas as pd

from patchpnp.metrics.fresh_process import run_fresh


def _worker(settings: dict, threads: int, channels_last: bool, bf16: bool, compiled: bool,
            batch: int, steps: int, warmup: int) -> dict:  # fmt: skip
    import torch

    from patchpnp.prior.loading import build_network
    from patchpnp.prior.loss import EDM2Loss
    from patchpnp.runtime import autocast_dtype

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = build_network(settings["network"], seed=0).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    # The same choice the training loop makes from training.precision.
    net.autocast_dtype = autocast_dtype("bfloat16" if bf16 else "float32", torch.device("cpu"))
    model = torch.compile(net) if compiled else net
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = EDM2Loss(settings["training"]["P_mean"], settings["training"]["P_std"])
    side = settings["scheme"].get("train_patch", settings["scheme"]["image_size"])
    x = (torch.rand(batch, settings["network"]["img_channels"], side, side) * 2 - 1).contiguous(
        memory_format=fmt
    )
    g = torch.Generator().manual_seed(1)
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        loss = loss_fn(model, x, generator=g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    per_step = sorted(times)[len(times) // 2]  # median: robust to a stray slow step
    return {"seconds_per_step": per_step, "images_per_s": batch / per_step, "side": side}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--priors", nargs="+", help="default: every prior of the config")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--channels-last", choices=["on", "off", "both"], default="both")
    parser.add_argument("--bf16", choices=["on", "off", "both"], default="both")
    parser.add_argument("--compile", choices=["on", "off", "both"], default="off")
    parser.add_argument("--batch", type=int, nargs="+", default=None, help="default: config's")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output", help="write the table as CSV")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        job = json.loads(args.worker)
        print(json.dumps(_worker(**job)))
        return

    from patchpnp.pipeline.config import load_config
    from patchpnp.prior.spec import resolve_prior

    config = load_config(args.config)
    choice = {"on": [True], "off": [False], "both": [True, False]}
    rows = []
    for name in args.priors or list(config["priors"]):
        settings = resolve_prior(config, name)
        batches = args.batch or [settings["training"]["batch_size"]]
        for threads, cl, bf16, compiled, batch in itertools.product(
            args.threads,
            choice[args.channels_last],
            choice[args.bf16],
            choice[args.compile],
            batches,
        ):
            job = {"settings": settings, "threads": threads, "channels_last": cl, "bf16": bf16,
                   "compiled": compiled, "batch": batch, "steps": args.steps,
                   "warmup": args.warmup}  # fmt: skip
            out = run_fresh(
                "patchpnp.tools.bench_training", ["--worker", json.dumps(job)], f"{name} {job}"
            )
            rows.append({"prior": name, "threads": threads, "channels_last": cl,
                         "bf16": bf16, "compile": compiled, "batch": batch, **out})  # fmt: skip
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    if args.output:
        table.to_csv(args.output, index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
