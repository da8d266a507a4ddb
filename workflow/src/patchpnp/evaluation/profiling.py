"""Memory and time profiles of patch versus whole-image inference (the paper's Fig. 3).

Two sweeps, for each solver:

- ``inference_size``: a fixed image of side ``image_size`` (the paper: 320), solved
  whole and with shifted-grid patches of each configured size, the patches once with
  every tile in one network call (``patch_batch`` = all) and once one tile at a time
  (``patch_batch`` = 1);
- ``image_size``: whole versus patch inference (one tile at a time) as the image
  grows, beyond the paper, to show that patch memory stays bounded by the patch size.

Every configuration runs in a fresh Python process (``python -m patchpnp.evaluation.profiling
--worker``), so one measurement's allocations and caches cannot leak into the next.
Inside it the prior is loaded and warmed up on a tiny image, then a short solve is
run twice with the same random streams:

- measured for memory (:class:`patchpnp.metrics.memory.PeakMemory`): ``peak_total_mib``,
  everything the process (CPU) or this process on the device (CUDA) holds at the
  peak (weights, interpreter / libraries / CUDA context, working memory: the
  paper's Fig. 3 measure), and ``peak_working_mib``, the peak the solve allocated
  above the loaded model and inputs; ``how`` names the mechanism;
- timed, unmeasured, for ``seconds_per_call`` (wall seconds per denoiser call),
  since the CPU measurement's profiler slows every operator down.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from patchpnp.atomic import atomic_path
from patchpnp.evaluation.profile_table import PROFILE_COLUMNS
from patchpnp.formats import read_split
from patchpnp.layout import WHOLE
from patchpnp.metrics.fresh_process import run_fresh
from patchpnp.metrics.memory import PeakMemory
from patchpnp.patching.micro_batch import as_budget, auto_patch_batch, call_mode, read_calibration
from patchpnp.patching.patches import ShiftedGridDenoiser
from patchpnp.physics import make_operator
from patchpnp.runtime import Runtime, keyed_randn
from patchpnp.solvers import make_solver
from patchpnp.solvers.streams import SolveStreams
from patchpnp.startup import freeze_imported

log = logging.getLogger(__name__)


def profile_plan(
    solvers: Sequence[str],
    image_size: int,
    sizes: Sequence,
    image_sizes: Sequence[int],
    sweep_patch: int,
    auto: bool = False,
) -> list[dict]:
    """Every configuration of both sweeps, in the order they are run; ``auto`` adds, per
    patch size, the micro-batch ``patch_batch: auto`` chooses."""
    jobs = []
    for solver in solvers:
        for size in sizes:
            if size == WHOLE or int(size) >= image_size:
                jobs.append(
                    dict(
                        solver=solver,
                        mode=WHOLE,
                        patch_batch="none",
                        inference_size=image_size,
                        image_size=image_size,
                        sweep="inference_size",
                    )
                )
                continue
            for batch in ("all", "1", "auto") if auto else ("all", "1"):
                jobs.append(
                    dict(
                        solver=solver,
                        mode="patch",
                        patch_batch=batch,
                        inference_size=int(size),
                        image_size=image_size,
                        sweep="inference_size",
                    )
                )
        for n in image_sizes:
            jobs.append(
                dict(
                    solver=solver,
                    mode=WHOLE,
                    patch_batch="none",
                    inference_size=n,
                    image_size=n,
                    sweep="image_size",
                )
            )
            jobs.append(
                dict(
                    solver=solver,
                    mode="patch",
                    patch_batch="1",
                    inference_size=sweep_patch,
                    image_size=n,
                    sweep="image_size",
                )
            )
    return jobs  # fmt: skip


def _test_image(eval_h5: str | Path, side: int) -> torch.Tensor:
    """The first evaluation slice resized to ``side``: memory and time do not depend on
    the content, but a real slice keeps the solver's arithmetic realistic."""
    x = torch.from_numpy(read_split(eval_h5, limit=1).images)
    if x.shape[-1] != side or x.shape[-2] != side:
        x = F.interpolate(x, size=(side, side), mode="bicubic", align_corners=False)
    return x.clamp(0, 1)


def _build(prior, job: dict, steps: int, micro_batch: int | None = None):
    """The denoiser (whole, or tiled as the job says) and its solver."""
    den = prior
    if job["mode"] == "patch":
        batch = {"all": None, "auto": micro_batch}.get(job["patch_batch"])
        batch = int(job["patch_batch"]) if batch is None and job["patch_batch"] != "all" else batch
        den = ShiftedGridDenoiser(prior, int(job["inference_size"]), "reflect", patch_batch=batch)
    operator = make_operator("denoise")
    params = {"dps": {"zeta": 0.3}, "diffpir": {"lam": 1.0, "zeta": 0.3}}[job["solver"]]
    return den, make_solver(job["solver"], den, operator, steps=steps, sigma_start=0.5, **params)


def profile_one(
    job: dict,
    prior_path: str | Path,
    eval_h5: str | Path,
    steps: int,
    device: str,
    memory_budget: float | str = "25%",
    calibration: str | Path | None = None,
    precision: str = "float32",
) -> dict:
    """Measure one configuration in this process (meant to be a fresh one)."""
    from patchpnp.prior.loading import load_prior
    from patchpnp.runtime import select_device

    dev = select_device(device)
    prior, _ = load_prior(prior_path, dev, precision=precision)
    micro_batch = predicted = None
    if job["patch_batch"] == "auto":
        # The grid's own choice, from the grid's calibration of this network (measured
        # in a process of its own: here it would inflate the resident baseline).
        cal = read_calibration(calibration)
        side, patch = int(job["image_size"]), int(job["inference_size"])
        micro_batch = auto_patch_batch(cal, job["solver"], patch, 1, side, side, memory_budget)
        predicted = cal.models[call_mode(job["solver"])].predict(
            micro_batch * patch * patch, patch * patch
        )
    sigma_n = 0.1
    # Warm-up: one whole-image step on a tiny image pays library initialisation and
    # first-call costs before the baseline is taken. It stays tiny so the heap it leaves
    # behind adds little to the CPU total's resident baseline.
    _, engine = _build(prior, {**job, "mode": WHOLE, "image_size": 16}, 1)
    x = _test_image(eval_h5, 16).to(dev)
    engine.solve(x, sigma_n, SolveStreams(0, [0]))

    _, engine = _build(prior, job, steps, micro_batch)
    x = _test_image(eval_h5, int(job["image_size"])).to(dev)
    y = x + sigma_n * keyed_randn(x.shape, torch.Generator().manual_seed(1), dev)
    # Memory first, so the CPU total's resident baseline holds no heap of a solve.
    meter = PeakMemory(dev)
    meter.start()
    engine.solve(y, sigma_n, SolveStreams(0, [0]))
    peak = meter.stop()
    t0 = time.perf_counter()
    _, info = engine.solve(y, sigma_n, SolveStreams(0, [0]))
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    tiles = info["tiles_evaluated"]
    return {
        **job,
        "tiles_per_call": 1 if tiles is None else tiles // info["nfe"],
        "peak_total_mib": peak.total_mib,
        "peak_working_mib": peak.working_mib,
        "seconds_per_call": seconds / info["nfe"],
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "how": peak.how,
        "micro_batch": micro_batch,
        "predicted_working_mib": predicted,
    }


def run_profiles(
    jobs: Sequence[dict],
    output: str | Path,
    *,
    prior: str | Path,
    eval_h5: str | Path,
    steps: int = 3,
    runtime: Runtime | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every job in its own process and write the table (CSV) atomically. ``runtime``
    (default: one thread): the device, threads, precision, and for ``patch_batch: auto``
    jobs the memory budget and calibration."""
    from tqdm import tqdm

    rt = runtime or Runtime(threads=1)
    rows = []
    measured: dict[str, dict] = {}
    for job in tqdm(jobs, desc="profiles", disable=not progress):
        # The two sweeps meet where the image-size sweep reaches the fixed image size
        # (whole, and the sweep's patch side): that configuration is measured once and
        # its row serves both sweeps.
        same = json.dumps({k: v for k, v in job.items() if k != "sweep"}, sort_keys=True)
        if same in measured:
            rows.append({**measured[same], "sweep": job["sweep"]})
            continue
        args = ["--worker", json.dumps(job), "--prior", prior, "--eval", eval_h5,
                "--steps", steps, "--device", rt.device, "--threads", rt.threads,
                "--memory-budget", rt.memory_budget, "--precision", rt.precision,
                *(["--calibration", rt.calibration] if rt.calibration else [])]  # fmt: skip
        row = run_fresh("patchpnp.evaluation.profiling", args, f"profile {job}")
        log.info(
            "%s %s P=%s batch=%s N=%s: %.1f MiB total, %.1f MiB working, %.4f s/call",
            row["solver"], row["mode"], row["inference_size"], row["patch_batch"],
            row["image_size"], row["peak_total_mib"], row["peak_working_mib"],
            row["seconds_per_call"],
        )  # fmt: skip
        rows.append(row)
        measured[same] = row
    table = pd.DataFrame(rows, columns=PROFILE_COLUMNS)
    with atomic_path(output) as tmp:
        table.to_csv(tmp, index=False)
    return table


def profile_command(
    *,
    output: str,
    prior: str,
    eval_h5: str,
    solvers: Sequence[str],
    image_size: int,
    sizes: Sequence,
    image_sizes: Sequence[int] = (),
    sweep_patch: int,
    steps: int = 3,
    runtime: Runtime | None = None,
) -> str:
    """``patchpnp profile``: every configuration of the plan, one fresh process each;
    with the runtime's ``memory_budget`` and ``calibration``, also the micro-batch
    ``patch_batch: auto`` chooses. ``runtime`` default: one thread, no budget."""
    runtime = runtime or Runtime(threads=1, memory_budget=None)
    auto = bool(runtime.memory_budget and runtime.calibration)
    jobs = profile_plan(solvers, image_size, sizes, image_sizes, sweep_patch, auto=auto)
    budget = as_budget(runtime.memory_budget or "25%")
    table = run_profiles(
        jobs, output, prior=prior, eval_h5=eval_h5, steps=steps,
        runtime=replace(runtime, memory_budget=budget),
    )  # fmt: skip
    return table.to_string(index=False)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="one profile configuration (internal)")
    p.add_argument("--worker", required=True, help="the job as JSON")
    p.add_argument("--prior", required=True)
    p.add_argument("--eval", required=True)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--memory-budget", default="25%")
    p.add_argument("--calibration")
    p.add_argument("--precision", default="float32")
    args = p.parse_args(argv)
    freeze_imported()  # a short process: its imports need no collection (patchpnp.startup)
    torch.set_num_threads(args.threads)
    row = profile_one(
        json.loads(args.worker), args.prior, args.eval, args.steps, args.device,
        as_budget(args.memory_budget), args.calibration, args.precision,
    )  # fmt: skip
    print(json.dumps(row))


if __name__ == "__main__":
    main()
