"""The paper's Fig. 3 at the paper's scale, with no data and no trained prior.

Time and memory of a denoiser call do not depend on the weights, so the U-Net of a
config's ``network`` section (by default ``config/paper.yaml``'s) is built with random
weights and profiled on random images: whole against shifted-grid tiles of each patch
size, at each image size, for each solver's call mode (DiffPIR: a forward call
without autograd; DPS: its data gradient on a denoising step, the vector-Jacobian
product through the denoiser, in one pass through the tiles). Each patch
size runs with three micro-batches (``patch_batch_mode``):

- ``auto``: the largest micro-batch within ``memory_budget`` (docs/methods.md section 4),
  chosen from a memory calibration of this network measured first, as the grid does;
- ``one``: one tile per network call;
- ``all``: every tile in one call (PaDIS's way).

Every configuration is measured in a fresh process (as :mod:`patchpnp.evaluation.profiling`
does): a warm-up call on a tiny image, one call measured for memory
(:class:`patchpnp.metrics.memory.PeakMemory`), then the call timed without the
memory profiler, which slows every operator down.

Sampled micro-batches. With small tiles one at a time, a call is hundreds of identical
network calls (289 for 32-px tiles at N = 512): on a CPU the full grid would take
hours. The micro-batches of a call all have the same shape (but the last), so their
memory peaks are equal and their times add up. :class:`SampledNetwork` therefore runs
the network for the first ``sampled_chunks`` micro-batches of each pass (forward, or
the recorded pass of a gradient) and answers the rest with a zero tensor of the network's
output shape, which holds the same memory as the real output. The memory peak is the
full call's; the time is extrapolated from two timed calls, one with the sampled
micro-batches real (``W_r``) and one with none (``W_0``: the tiling, padding, stand-in
outputs and blending): ``W_0 + tiles x (W_r - W_0) / timed_tiles``. Rows record
``timed_tiles`` (tiles run for real in the timing); a call of at most ``sampled_chunks``
micro-batches (whole images, all tiles, most auto choices) is timed in full.

A configuration whose predicted working memory is over ``memory_limit`` (MiB, or a
share of the machine's memory: RAM on a CPU, the device's on a GPU) is not run; its
row says so and keeps the prediction, as the paper's Fig. 3 stops where memory runs
out.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from patchpnp.atomic import atomic_path
from patchpnp.evaluation.profile_table import PAPER_SCALE_COLUMNS, PATCH_BATCH_MODES
from patchpnp.inference.calibration import denoiser_call
from patchpnp.layout import WHOLE
from patchpnp.metrics.fresh_process import run_fresh
from patchpnp.patching.micro_batch import (
    Calibration,
    MicroBatchError,
    as_budget,
    auto_patch_batch,
    call_mode,
    parse_budget,
    read_calibration,
)
from patchpnp.patching.tiling import AxisGrid
from patchpnp.runtime import Runtime, keyed_rand, keyed_randn
from patchpnp.startup import freeze_imported

log = logging.getLogger(__name__)

NETWORK_KEYS = ("img_channels", "model_channels", "channel_mult", "num_blocks", "attn_levels",
                "channels_per_head")  # fmt: skip
# Calibration sides up to 8x the smallest: a paper-size network's scratch space (~55 MiB)
# dominates every call up to 64 x 64 x 4 pixels, where the default sizes stop.
CALIBRATION_SCALES = (1, 2, 4, 8)


class PaperScaleError(MicroBatchError):
    """A network config or a limit the paper-scale profile cannot use; the message names it."""


@dataclass(frozen=True)
class ScaleGrid:
    """What the paper-scale profile measures (:func:`scale_plan`): each of ``solvers`` at
    each of ``image_sizes`` (at least one), whole and at each patch side of ``sizes``
    smaller than the image."""

    solvers: Sequence[str]
    image_sizes: Sequence[int]
    sizes: Sequence[int]

    def __post_init__(self):
        if not self.image_sizes:
            raise PaperScaleError("paper-scale profile: no image size (--image-sizes)")
        sides = [s for s in self.sizes if isinstance(s, str) or int(s) < 1]
        if sides:
            raise PaperScaleError(
                f"paper-scale profile: sizes are patch sides, not {sides} (whole images "
                "are profiled at every image size)"
            )


def read_network(path: str | os.PathLike) -> dict:
    """The ``network`` section of a config file, checked for the keys the U-Net needs."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise PaperScaleError(f"{path}: network config not found")
    try:
        network = (yaml.safe_load(path.read_text()) or {}).get("network")
    except (yaml.YAMLError, AttributeError) as err:
        raise PaperScaleError(f"{path}: not a YAML config with a network section ({err})") from err
    if not isinstance(network, dict):
        raise PaperScaleError(f"{path}: no 'network' section")
    missing = [k for k in NETWORK_KEYS if k not in network]
    if missing:
        raise PaperScaleError(f"{path}: network section lacks {', '.join(missing)}")
    return network


def scale_plan(
    solvers: Sequence[str], image_sizes: Sequence[int], sizes: Sequence[int]
) -> list[dict]:
    """Every configuration, in the order it is run: per solver and image size, whole,
    then each patch size (smaller than the image) with each micro-batch mode."""
    jobs = []
    for solver in solvers:
        for n in image_sizes:
            jobs.append(dict(solver=solver, image_size=int(n), inference_size=int(n),
                             patch_batch_mode=WHOLE))  # fmt: skip
            for p in sizes:
                if int(p) >= int(n):
                    continue
                for mode in PATCH_BATCH_MODES:
                    jobs.append(dict(solver=solver, image_size=int(n), inference_size=int(p),
                                     patch_batch_mode=mode))  # fmt: skip
    return jobs


def grid_tiles(image_size: int, patch: int) -> int:
    """Tiles of one call on an ``image_size``-square image (shifted grid)."""
    return AxisGrid.for_axis(image_size, patch).count ** 2


def micro_batch_for(job: dict, calibration: Calibration, budget) -> int | None:
    """Tiles per network call of a job (None for whole images)."""
    mode, n, p = job["patch_batch_mode"], job["image_size"], job["inference_size"]
    if mode == WHOLE:
        return None
    tiles = grid_tiles(n, p)
    if mode == "all":
        return tiles
    if mode == "one":
        return 1
    return auto_patch_batch(calibration, job["solver"], p, 1, n, n, budget)


def predicted_working(job: dict, calibration: Calibration, micro_batch: int | None) -> float:
    """The calibration's working MiB of the job's largest network call."""
    model = calibration.models[call_mode(job["solver"])]
    if micro_batch is None:
        side = job["image_size"]
        return model.predict(side * side, side * side)
    p = job["inference_size"]
    return model.predict(micro_batch * p * p, p * p)


def machine_memory_mib(device) -> float:
    """All the memory the work could use: the GPU's, or the machine's RAM."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory / 2**20
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20


def limit_mib(limit, machine_mib: float) -> float:
    """``paper_profile.memory_limit`` in MiB: a number of MiB or a share like ``"50%"``."""
    kind, value = parse_budget(limit, key="paper_profile.memory_limit", of="the machine's memory")
    return value if kind == "mib" else value * machine_mib


def extrapolated_seconds(w_all: float, w_none: float, timed_tiles: int, tiles: int) -> float:
    """A call's time from a call with ``timed_tiles`` tiles run for real (``w_all``) and
    one with none (``w_none``): what the network adds per tile, times every tile."""
    if timed_tiles <= 0:
        raise ValueError("timed_tiles must be positive")
    return w_none + tiles * max(w_all - w_none, 0.0) / timed_tiles


# -- the worker (one configuration, in a fresh process) ----------------------------------------
def _sampled_network_class():
    import torch
    from torch import nn

    class SampledNetwork(nn.Module):
        """The network for the first ``real`` calls of each pass, a zero stand-in after.

        A pass is the calls made without autograd (a forward call, or the first pass of
        a recomputing backward) or with it (the recomputation, or DPS's one-pass
        gradient on denoising); :meth:`new_call` starts counting again. ``real=None``
        runs the network on every call.
        """

        def __init__(self, inner, real: int | None):
            super().__init__()
            self.inner = inner
            self.real = real
            self.coord_channels = getattr(inner, "coord_channels", 0)
            self.new_call()

        def new_call(self, real: int | None = None) -> None:
            self.real = real
            self.counts = {False: 0, True: 0}
            self.real_per_pass = {False: 0, True: 0}

        @property
        def real_tiles(self) -> int:
            """Tiles run for real in a pass: the passes of a call run the same tiles."""
            return max(self.real_per_pass.values())

        def forward(self, x, sigma, **kw):
            recording = torch.is_grad_enabled() and x.requires_grad
            k = self.counts[recording]
            self.counts[recording] += 1
            if self.real is None or k < self.real:
                self.real_per_pass[recording] += x.shape[0]
                return self.inner(x, sigma, **kw)
            # Same shape, dtype and memory as the network's output; in a recorded pass
            # it keeps the graph (a cheap multiply) so the backward runs as usual.
            return x * 0 if recording else torch.zeros_like(x)

    return SampledNetwork


def measure_job(
    job: dict,
    network: dict,
    calibration: str | os.PathLike,
    budget,
    limit,
    sampled_chunks: int,
    device: str = "auto",
    seed: int = 0,
    precision: str = "float32",
) -> dict:
    """Measure one configuration in this process (meant to be a fresh one)."""
    import torch

    from patchpnp.metrics.memory import PeakMemory
    from patchpnp.patching.patches import ShiftedGridDenoiser
    from patchpnp.prior.loading import size_multiple
    from patchpnp.prior.precond import ImageSpaceDenoiser
    from patchpnp.runtime import select_device

    dev = select_device(device)
    cal = read_calibration(calibration)
    micro_batch = micro_batch_for(job, cal, budget)
    predicted = predicted_working(job, cal, micro_batch)
    n, p = job["image_size"], job["inference_size"]
    whole = job["patch_batch_mode"] == WHOLE
    tiles = 1 if whole else grid_tiles(n, p)
    row = {**job, "patch_batch": micro_batch, "tiles_per_call": tiles,
           "predicted_working_mib": predicted,
           "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}  # fmt: skip
    cap = limit_mib(limit, machine_memory_mib(dev))
    if predicted > cap:
        return {**row, "status": f"not run: predicted {predicted:.0f} MiB > limit {cap:.0f} MiB"}

    net = _network(network, dev, seed, precision)
    sampled = _sampled_network_class()(ImageSpaceDenoiser(net), sampled_chunks)
    den = sampled if whole else ShiftedGridDenoiser(sampled, p, "reflect", patch_batch=micro_batch)
    mode = call_mode(job["solver"])
    g = torch.Generator().manual_seed(seed)
    channels = network["img_channels"]
    x = keyed_rand((1, channels, n, n), g, dev)
    v = keyed_randn(x.shape, g, dev)

    def call(real: int | None) -> float:
        sampled.new_call(real)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        denoiser_call(den, x, v, mode)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0

    # Warm-up on a tiny image: library initialisation and first-call costs, before the
    # baseline is taken; tiny, so the heap it leaves adds little to the resident total.
    side = size_multiple(network)
    denoiser_call(
        sampled, x[..., :side, :side].contiguous(), v[..., :side, :side].contiguous(), mode
    )

    meter = PeakMemory(dev)
    meter.start()
    call(sampled_chunks)
    peak = meter.stop()
    chunks = 1 if micro_batch is None else -(-tiles // micro_batch)
    if chunks <= sampled_chunks:
        seconds, timed = call(None), tiles
    else:
        w_none = call(0)
        w_all = call(sampled_chunks)
        timed = sampled.real_tiles
        seconds = extrapolated_seconds(w_all, w_none, timed, tiles)
    return {**row, "peak_total_mib": peak.total_mib, "peak_working_mib": peak.working_mib,
            "seconds_per_call": seconds, "timed_tiles": timed, "how": peak.how,
            "status": "measured"}  # fmt: skip


def _network(network: dict, dev, seed: int, precision: str):
    """The random-weight preconditioned U-Net, set up as inference runs a prior."""
    from patchpnp.prior.loading import build_network, for_inference

    return for_inference(build_network(network, seed=seed), dev, precision)


def calibrate_network(
    network: dict, device: str = "auto", seed: int = 0, precision: str = "float32"
) -> Calibration:
    """The memory calibration of the random-weight network (in this process)."""
    from patchpnp.inference.calibration import calibrate_denoiser
    from patchpnp.prior.loading import size_multiple
    from patchpnp.prior.precond import ImageSpaceDenoiser
    from patchpnp.runtime import select_device

    dev = select_device(device)
    net = _network(network, dev, seed, precision)
    multiple = size_multiple(network)
    return calibrate_denoiser(ImageSpaceDenoiser(net), multiple, dev, CALIBRATION_SCALES)


# -- the table ---------------------------------------------------------------------------------
def add_ratios(table: pd.DataFrame) -> pd.DataFrame:
    """``pixel_ratio`` (pixels the network sees over the image's), and each row's working
    memory and time against the whole image's of the same solver and image size
    (``time_vs_pixel_ratio``: time over pixel ratio x whole time; 1 is perfect scaling)."""
    t = table.copy()
    side = t["image_size"].astype(float)
    t["pixel_ratio"] = t["tiles_per_call"] * t["inference_size"] ** 2 / side**2
    t.loc[t["patch_batch_mode"] == WHOLE, "pixel_ratio"] = 1.0
    whole = t[t["patch_batch_mode"] == WHOLE].set_index(["solver", "image_size"])
    key = pd.MultiIndex.from_frame(t[["solver", "image_size"]])
    w_mem = whole["peak_working_mib"].reindex(key).to_numpy()
    w_sec = whole["seconds_per_call"].reindex(key).to_numpy()
    t["working_vs_whole"] = t["peak_working_mib"] / w_mem
    t["time_vs_pixel_ratio"] = t["seconds_per_call"] / (t["pixel_ratio"] * w_sec)
    return t


def target_check(
    table: pd.DataFrame, image_size: int, budget_share: float, time_factor: float = 1.3
) -> pd.DataFrame:
    """The paper-scale targets of the auto micro-batch at ``image_size``: working
    memory at most ``budget_share`` of whole, time at most ``time_factor`` x pixel ratio x
    whole."""
    auto = table[(table["patch_batch_mode"] == "auto") & (table["image_size"] == image_size)]
    out = auto[["solver", "image_size", "inference_size", "patch_batch", "working_vs_whole",
                "time_vs_pixel_ratio"]].copy()  # fmt: skip
    out["memory_ok"] = out["working_vs_whole"] <= budget_share
    out["time_ok"] = out["time_vs_pixel_ratio"] <= time_factor
    return out.reset_index(drop=True)


def write_summary(table: pd.DataFrame, path: str | os.PathLike, budget) -> None:
    """A Markdown page: the table and, where the budget is a share of whole, the targets."""
    cols = ["solver", "image_size", "inference_size", "patch_batch_mode", "patch_batch",
            "tiles_per_call", "pixel_ratio", "peak_total_mib", "peak_working_mib",
            "seconds_per_call", "working_vs_whole", "time_vs_pixel_ratio", "timed_tiles",
            "status"]  # fmt: skip
    digits = {"pixel_ratio": 2, "peak_total_mib": 0, "peak_working_mib": 0, "seconds_per_call": 2,
              "working_vs_whole": 3, "time_vs_pixel_ratio": 3, "patch_batch": 0}  # fmt: skip
    shown = table[cols].round(digits).astype({"patch_batch": "Int64", "timed_tiles": "Int64"})
    parts = ["# Patch inference at the paper's scale (random weights)", "",
             shown.to_markdown(index=False), ""]  # fmt: skip
    kind, share = parse_budget(budget)
    if kind == "fraction":
        n = int(table["image_size"].min())
        check = target_check(table, n, share)
        parts += [f"## Targets at N = {n}: working <= {share:.0%} of whole, "
                  "time <= 1.3 x pixel ratio x whole", "",
                  check.round(3).to_markdown(index=False), ""]  # fmt: skip
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(parts))


def paper_profile_command(
    *,
    output: str,
    network_config: str,
    calibration: str,
    grid: ScaleGrid,
    memory_limit: str = "50%",
    sampled_chunks: int = 4,
    summary: str | None = None,
    seed: int = 0,
    runtime: Runtime | None = None,
) -> str:
    """``patchpnp paper-profile``: calibrate the random-weight network (written to
    ``calibration``), then run every configuration of ``grid`` in its own process; write
    the table (CSV) and its summary atomically. ``runtime``: the device, threads,
    precision and ``patch_batch: auto``'s memory budget."""
    from tqdm import tqdm

    runtime = runtime or Runtime()
    device, threads, precision = runtime.device, runtime.threads, runtime.precision
    network = read_network(network_config)  # bad input fails before any measurement
    budget = as_budget(runtime.memory_budget)
    parse_budget(budget)
    limit_mib(as_budget(memory_limit), 1.0)
    if sampled_chunks < 1:
        raise PaperScaleError(f"sampled_chunks must be at least 1, got {sampled_chunks}")
    common = ["--network", json.dumps(network), "--device", device, "--seed", seed,
              "--precision", precision,
              *(["--threads", threads] if threads else [])]  # fmt: skip
    t0 = time.perf_counter()
    cal = run_fresh(__name__, ["--calibrate", *common], "calibration of the network")
    with atomic_path(calibration) as tmp:
        Path(tmp).write_text(json.dumps(cal, indent=2, sort_keys=True))
    log.info("calibration: %s (%.0f s)", cal["models"], time.perf_counter() - t0)
    rows = []
    jobs = scale_plan(grid.solvers, grid.image_sizes, grid.sizes)
    for job in tqdm(jobs, desc="paper-scale profiles"):
        args = ["--worker", json.dumps(job), "--calibration", calibration,
                "--memory-budget", budget, "--memory-limit", memory_limit,
                "--sampled-chunks", sampled_chunks, *common]  # fmt: skip
        row = run_fresh(__name__, args, f"paper-scale profile {job}")
        log.info("%s", {k: row.get(k) for k in PAPER_SCALE_COLUMNS})
        rows.append(row)
    table = add_ratios(pd.DataFrame(rows).reindex(columns=PAPER_SCALE_COLUMNS))
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False)
    if summary:
        write_summary(table, summary, budget)
    log.info("paper-scale profile: %d configurations in %.0f s", len(rows),
             time.perf_counter() - t0)  # fmt: skip
    return table.to_string(index=False)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="one paper-scale measurement (internal)")
    p.add_argument("--calibrate", action="store_true")
    p.add_argument("--worker", help="the job as JSON")
    p.add_argument("--network", required=True, help="the network section as JSON")
    p.add_argument("--calibration")
    p.add_argument("--memory-budget", default="25%")
    p.add_argument("--memory-limit", default="50%")
    p.add_argument("--sampled-chunks", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="float32")
    args = p.parse_args(argv)
    freeze_imported()  # a short process: its imports need no collection (patchpnp.startup)
    from patchpnp.runtime import use_threads

    use_threads(args.threads)
    network = json.loads(args.network)
    if args.calibrate:
        cal = calibrate_network(network, args.device, args.seed, args.precision)
        print(cal.to_json().replace("\n", " "))
        return
    row = measure_job(
        json.loads(args.worker), network, args.calibration, as_budget(args.memory_budget),
        as_budget(args.memory_limit), args.sampled_chunks, args.device, args.seed,
        args.precision,
    )  # fmt: skip
    print(json.dumps(row))


if __name__ == "__main__":
    main()
