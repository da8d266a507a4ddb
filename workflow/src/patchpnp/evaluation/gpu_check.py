"""``snakemake gpu_check``: every kind of GPU job once, at the paper's sizes, on this GPU.

What a user runs on one GPU before sending the paper config to a cluster: in a
few minutes it shows whether each kind of job runs on CUDA, how long it takes and
how much GPU memory it needs, without data or trained priors.

- The data: the demo's MNI152 head at the paper's shapes (fastMRI's 320 x 320
  reconstructions cropped to ``data.image_size``; multicoil k-space with a 2x
  oversampled readout, compressed to ``mri.coils``), ``images`` slices of each.
- The priors: two training steps of each of the config's priors at its per-GPU
  batch (``training.batch_size / training.processes``), which makes near-random
  networks of the config's architecture. Training is a kind of job checked too.
- One cell of each kind with ``steps`` solver steps: every solver at every
  inference size (whole with the whole-image prior, patches with the patch prior),
  the zero padding once, every deepinv solver once, a posterior cell, a multicoil
  MRI cell whole and patched, and the memory calibration ``patch_batch: auto`` uses.
- Seconds and peak CUDA memory per job (``torch.cuda.max_memory_allocated``).
- The same whole-image DiffPIR cell on CUDA and on the CPU, with the same keyed
  noise and float32 without TF32 on both: their PSNRs must agree within
  ``tolerance_db`` (0.05 dB), or the command fails after writing its report.

On a machine without a CUDA GPU it stops before any work and says what it found.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from patchpnp.atomic import atomic_path
from patchpnp.errors import PatchpnpError
from patchpnp.layout import WHOLE

log = logging.getLogger(__name__)

GPU_CHECK_COLUMNS = [
    "kind",
    "job",
    "image_size",
    "size",
    "device",
    "seconds",
    "peak_cuda_mib",
    "psnr",
    "note",
]


class GpuCheckError(PatchpnpError, RuntimeError):
    """The GPU check cannot run here, or CUDA and the CPU disagree."""


def require_cuda():
    """The CUDA device the check runs on; :class:`GpuCheckError` at once without one."""
    import torch

    from patchpnp.runtime import cuda_found

    if not torch.cuda.is_available():
        raise GpuCheckError(
            f"gpu_check runs every kind of job on a CUDA GPU, but {cuda_found()}; "
            "run it where the paper config's jobs will run (on a SLURM cluster, e.g. "
            "`srun --gpus 1 snakemake gpu_check --cores 4`)"
        )
    return torch.device("cuda", 0)


def _measure(device, work: Callable[[], object]) -> tuple[object, float, float]:
    """``work()``'s result, its seconds and its peak CUDA memory (MiB; NaN off CUDA)."""
    from patchpnp.metrics.memory import PeakMemory

    meter = PeakMemory(device) if device.type == "cuda" else None
    if meter:
        meter.start()
    t0 = time.perf_counter()
    out = work()
    peak = meter.stop().working_mib if meter else float("nan")  # stop() synchronises
    return out, time.perf_counter() - t0, peak


class _Check:
    """The rows of the report, one per job, measured as they run."""

    def __init__(self, device, scratch: Path):
        self.device, self.scratch, self.rows = device, scratch, []

    def run(self, kind: str, job: str, image_size: int, size, work, note: str = "", device=None):
        device = self.device if device is None else device
        log.info("%s %s ...", kind, job)
        table, seconds, peak = _measure(device, work)
        scored = isinstance(table, pd.DataFrame) and "psnr" in table
        psnr = float(table["psnr"].mean()) if scored else float("nan")
        self.rows.append(
            {
                "kind": kind,
                "job": job,
                "image_size": image_size,
                "size": str(size),
                "device": str(device),
                "seconds": round(seconds, 2),
                "peak_cuda_mib": round(peak, 1),
                "psnr": psnr,
                "note": note,
            }
        )
        log.info("%s %s: %.1f s, peak %.0f MiB", kind, job, seconds, peak)
        return table


def _paper_data(config: dict, scratch: Path, images: int) -> tuple[Path, Path | None]:
    """The grid's evaluation split and the MRI one (None without an MRI task), built
    from the demo head at the config's shapes."""
    from patchpnp.data.demo import DemoSimulation, build_demo_folder
    from patchpnp.data.extract import extract_volumes
    from patchpnp.data.mri_extract import extract_mri_volumes

    data = config["data"]
    crop = int(data.get("crop_size", data["image_size"]))
    vols = build_demo_folder(
        scratch / "singlecoil", n_eval=1, progress=False,
        simulation=DemoSimulation("singlecoil", recon_size=crop, eval_slices=images),
    )  # fmt: skip
    grid = scratch / "eval.h5"
    extract_volumes(
        vols, "eval", grid, image_size=data["image_size"], crop_size=crop, progress=False
    )
    mri = config.get("mri", {})
    if not mri.get("in_all") and not mri.get("datasets"):
        return grid, None
    coils = int(mri.get("coils") or 8)
    simulation = DemoSimulation("multicoil", recon_size=mri["image_size"], eval_slices=images,
                                coils=2 * coils, readout_oversampling=2)  # fmt: skip
    vols = build_demo_folder(scratch / "multicoil", simulation=simulation, n_eval=1,
                             progress=False)  # fmt: skip
    mri_split = scratch / "mri_eval.h5"
    extract_mri_volumes(
        vols, "eval", mri_split, image_size=mri["image_size"], calib_width=mri["calib_width"],
        coils=coils, progress=False,
    )  # fmt: skip
    return grid, mri_split


def _per_gpu(settings: dict, steps: int = 2) -> dict:
    """``settings`` trained for ``steps`` steps on one GPU at its per-GPU batch."""
    s = copy.deepcopy(settings)
    tr = s["training"]
    tr["batch_size"] = max(1, tr["batch_size"] // max(1, tr.get("processes", 1)))
    s["scheme"]["batch_size"] = tr["batch_size"]  # the batch one process draws per step
    tr.update(steps=steps, processes=1, warmup_steps=1, checkpoint_every=steps)
    return s


def _cell_kinds(config: dict) -> list[tuple[str, str, object, str]]:
    """``(kind, solver, size, padding)`` of the grid's cells to run: every solver at every
    inference size (reflect), the smallest patch once more with zero padding."""
    inf = config["inference"]
    sizes = list(inf["sizes"])
    cells = [("grid", solver, size, "reflect") for solver in inf["solvers"] for size in sizes]
    patches = [s for s in sizes if s != WHOLE]
    if patches and "zeros" in inf.get("paddings", []):
        cells.append(("grid", next(iter(inf["solvers"])), min(patches), "zeros"))
    return cells


def _solver_params(config: dict, solver: str, task: str, steps: int) -> dict:
    """``solver``'s parameters for ``task`` (the grid's, or the deepinv comparison's)."""
    spec = config["inference"]["solvers"].get(solver) or config["solvers"]["deepinv"][solver]
    return {**spec["tasks"][task], "steps": steps}


def run_gpu_check(
    config: dict,
    out_csv: str | Path,
    out_md: str | Path,
    *,
    steps: int = 4,
    images: int = 2,
    tolerance_db: float = 0.05,
    threads: int | None = None,
    device=None,
) -> pd.DataFrame:
    """Run the check (module docstring) for a validated ``config``; write the CSV and
    the Markdown report; raise :class:`GpuCheckError` if CUDA and the CPU disagree.

    ``device``: where the jobs run, by default this machine's CUDA GPU
    (:func:`require_cuda`); the tests pass the CPU to run the same logic there."""
    import torch

    from patchpnp.inference.calibration import calibrate_command
    from patchpnp.inference.cell import CellSpec, run_cell
    from patchpnp.inference.mri_cell import run_mri_cell
    from patchpnp.inference.posterior import run_posterior_cell
    from patchpnp.metrics.quality import Scoring
    from patchpnp.prior.spec import resolve_mri_prior, resolve_prior
    from patchpnp.runtime import Runtime, use_threads
    from patchpnp.training.loop import train_prior

    device = require_cuda() if device is None else torch.device(device)
    on = str(device)
    use_threads(threads)
    inf, n = config["inference"], config["data"]["image_size"]
    task = "sr" if "sr" in inf["tasks"] else next(iter(inf["tasks"]))
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        scratch = Path(tmp)
        check = _Check(device, scratch)
        grid, mri_split = _paper_data(config, scratch, images)

        priors = {}
        for name in config["priors"]:
            settings = _per_gpu(resolve_prior(config, name))
            batch = settings["training"]["batch_size"]
            check.run(
                "train", name, n, settings["scheme"].get("train_patch") or WHOLE,
                lambda s=settings, name=name, batch=batch: train_prior(
                    s, [grid] * -(-batch // images), scratch / "priors" / name, device=on,
                    progress=False,
                ),
                note=f"2 steps, {batch} images per GPU",
            )  # fmt: skip
            priors[name] = scratch / "priors" / name / "ema.pt"
        patch_prior = priors.get("patch", next(iter(priors.values())))
        whole_prior = priors.get(WHOLE, patch_prior)

        calibration = scratch / "calibration.json"
        if inf.get("patch_batch") == "auto":  # the memory model auto micro-batches use
            check.run(
                "calibrate", "patch prior", n, "-",
                lambda: calibrate_command(str(patch_prior), str(calibration), on, threads,
                                          inf["precision"]),
            )  # fmt: skip
        runtime = Runtime(
            device=on, precision=inf["precision"], batch_images=inf["batch_images"],
            patch_batch=inf.get("patch_batch"), memory_budget=inf.get("memory_budget", "25%"),
            calibration=calibration if calibration.exists() else None,
        )  # fmt: skip
        common = {"runtime": runtime, "scoring": Scoring(lpips_mode="off"), "progress": False}

        def spec(solver, size, padding, prior) -> CellSpec:
            params = _solver_params(config, solver, task, steps)
            return CellSpec(task, inf["tasks"][task], solver, params, prior, size, padding,
                            seed=config["seed"])  # fmt: skip

        def cell(solver, size, padding, prior, **over):
            out = scratch / f"{solver}-{size}-{padding}-{len(check.rows)}"
            return lambda: run_cell(
                grid, f"{out}.h5", f"{out}.csv", cell=spec(solver, size, padding, prior),
                **{**common, "runtime": replace(runtime, **over)},
            )  # fmt: skip

        for kind, solver, size, padding in _cell_kinds(config):
            prior = whole_prior if size == WHOLE else patch_prior
            job = f"{solver} {task} {padding}"
            check.run(kind, job, n, size, cell(solver, size, padding, prior))
        patches = [s for s in inf["sizes"] if s != WHOLE]
        largest = max(patches) if patches else WHOLE
        for solver in config.get("solvers", {}).get("deepinv", {}):
            check.run("deepinv", f"{solver} {task}", n, largest,
                      cell(solver, largest, "reflect", patch_prior))  # fmt: skip
        samples = 2
        check.run(
            "posterior", f"dps {task}, {samples} samples", n, largest,
            lambda: run_posterior_cell(
                grid, scratch / "post.h5", scratch / "post.csv", samples=samples,
                cell=spec("dps", largest, "reflect", patch_prior), **common,
            ),
        )  # fmt: skip

        if mri_split is not None:
            _mri_cells(config, check, scratch, mri_split, images, steps, threads,
                       run_mri_cell, resolve_mri_prior, train_prior, on)  # fmt: skip

        # CUDA against the CPU: one whole-image DiffPIR cell, the same keyed noise, with
        # a prior whose network shapes the estimate (gains 1: see _active_network).
        active = _active_network(whole_prior, scratch / "active.pt")
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            pair = {}
            for dev in (on, "cpu"):
                pair[dev] = check.run(
                    "cuda vs cpu", f"diffpir {task} whole", n, WHOLE,
                    cell("diffpir", WHOLE, "reflect", active, device=dev,
                         precision="float32"),
                    note="float32, no TF32", device=torch.device(dev),
                )  # fmt: skip
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    table = pd.DataFrame(check.rows, columns=GPU_CHECK_COLUMNS)
    gap = float(np.max(np.abs(pair[on]["psnr"].to_numpy() - pair["cpu"]["psnr"].to_numpy())))
    verdict = (
        f"CUDA against CPU, whole-image DiffPIR ({len(pair['cpu'])} images, {steps} steps): "
        f"largest |PSNR difference| {gap:.4f} dB, tolerance {tolerance_db} dB: "
        + ("agree" if gap <= tolerance_db else "DISAGREE")
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "the CPU"
    _write(table, verdict, out_csv, out_md, name)
    if gap > tolerance_db:
        raise GpuCheckError(verdict)
    return table


def _active_network(prior: Path, out: Path) -> Path:
    """A copy of ``prior`` with every gain EDM2 starts at zero set to 1.

    At initialisation EDM2's output gain is 0 (the denoiser returns ``c_skip x``) and
    two training steps barely move it, so CUDA and the CPU would agree whatever the
    network computed. With the gains at 1 the random network's output is the estimate.
    """
    import torch

    payload = torch.load(prior, map_location="cpu", weights_only=False)
    for key, value in payload["ema"].items():
        if key.endswith(("out_gain", "emb_gain")):
            payload["ema"][key] = torch.ones_like(value)
    with atomic_path(out) as tmp:
        torch.save(payload, tmp)
    return out


def _mri_cells(config, check, scratch, split, images, steps, threads,
               run_mri_cell, resolve_mri_prior, train_prior, on):  # fmt: skip
    """Train the MRI prior two steps, then a DiffPIR cell whole and at the smallest patch."""
    from patchpnp.inference.mri_cell import Acquisition, Reconstruction
    from patchpnp.runtime import Runtime

    mri = config["mri"]
    name = WHOLE if WHOLE in mri["priors"] else mri["priors"][0]
    settings = _per_gpu(resolve_mri_prior(config, name))
    batch = settings["training"]["batch_size"]
    prior_dir = scratch / "mri_prior"
    check.run(
        "train", f"mri {name}", mri["image_size"], WHOLE,
        lambda: train_prior(settings, [split] * -(-batch // images), prior_dir, device=on,
                            progress=False),
        note=f"2 steps, {batch} images per GPU",
    )  # fmt: skip
    acc, fraction = next(iter(mri["accelerations"].items()))
    acquisition = Acquisition(
        acceleration=int(acc), center_fraction=float(fraction), mask=mri["masks"][0],
        sigma_n=mri["sigma_n"], cg_iters=mri["cg_iters"],
    )  # fmt: skip
    solver = "diffpir" if "diffpir" in mri["solvers"] else next(iter(mri["solvers"]))
    params = {**mri["solvers"][solver], "steps": steps}
    sizes = list(mri["sizes"])
    patches = [s for s in sizes if s != WHOLE]
    for size in [WHOLE] + ([min(patches)] if patches else []):
        out = scratch / f"mri-{size}"
        check.run(
            "mri", f"{solver} {acc}x {mri['masks'][0]}", mri["image_size"], size,
            lambda size=size, out=out: run_mri_cell(
                split, f"{out}.h5", f"{out}.csv", dataset="check", acquisition=acquisition,
                reconstruction=Reconstruction(
                    "diffusion", solver=solver, solver_params=params, prior=prior_dir / "ema.pt",
                    size=size, padding=mri.get("padding", "reflect"),
                ),
                runtime=Runtime(
                    device=on, threads=threads, precision=mri.get("precision", "float32"),
                    batch_images=mri["batch_images"], patch_batch=mri.get("patch_batch"),
                ),
                seed=config["seed"], progress=False,
            ),
        )  # fmt: skip


def _write(table: pd.DataFrame, verdict: str, out_csv, out_md, gpu: str) -> None:
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False)
    text = "\n".join(
        [
            f"# GPU check on {gpu}",
            "",
            "Every kind of job once at the paper's sizes, random-weight networks "
            "(two training steps); seconds and peak CUDA memory per job.",
            "",
            table.to_markdown(index=False, floatfmt=".2f"),
            "",
            verdict,
            "",
        ]
    )
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text(text)
    print(text)


def gpu_check_command(
    config: str,
    output: str,
    summary: str,
    steps: int = 4,
    images: int = 2,
    tolerance_db: float = 0.05,
    threads: int | None = None,
) -> None:
    """``patchpnp gpu-check``: stop at once without a GPU, validate ``config``, run."""
    require_cuda()
    from patchpnp.pipeline.config import validate_config

    with open(config) as f:
        settings = yaml.safe_load(f)
    # The check reads no data set: a fastMRI config validates without its location.
    settings["fastmri_root"] = settings.get("fastmri_root") or "(not read by gpu_check)"
    validate_config(settings)
    run_gpu_check(
        settings, output, summary, steps=steps, images=images, tolerance_db=tolerance_db,
        threads=threads,
    )  # fmt: skip
