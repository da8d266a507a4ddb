"""The ``patchpnp`` command: every workflow step, runnable without Snakemake.

Snakemake's rules call these subcommands and hold no science themselves; neither does
this module. Each subcommand names the function that does its work (``module:function``);
the function is imported only when its command runs, so ``patchpnp check-config`` and
``patchpnp tables`` never load torch, and it receives the parsed options as keyword
arguments of the same names (``tests/test_cli.py`` checks that every option is a
parameter). A returned string is printed.

Errors in the input (bad files, bad settings) end the command with exit status 2 and
one line naming the file or key; nothing partial is left behind.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Callable

from patchpnp.layout import SPLITS
from patchpnp.params import PRECISIONS, TUNED

log = logging.getLogger("patchpnp")

DEVICES = ("auto", "cpu", "cuda")
PADDINGS = ("zeros", "reflect", "replicate")  # patchpnp.layout.PADDINGS, without its import
LPIPS_MODES = ("auto", "required", "off")  # patchpnp.metrics.lpips_weights.LPIPS_MODES
MRI_METHODS = ("zero_filled", "sense", "cs_wavelet", "diffusion")  # inference.mri_cell.METHODS


# -- option types and groups shared by several commands -----------------------------------------
def inference_size(text: str):
    """``whole`` or a patch side P (``--size``, ``--sizes``)."""
    if text == "whole":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'whole' or a patch size, got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"a patch size is a positive integer, got {value}")
    return value


def patch_batch(text: str):
    """``auto`` or a positive number of tiles per network call (``--patch-batch``)."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"tiles per call must be positive, got {value}")
    return value


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def add_compute(
    p: argparse.ArgumentParser, threads: int | None = None, precision: bool = False
) -> None:
    """Where the command computes: ``--device``, ``--threads`` and, for commands that
    run a prior, ``--precision`` (config ``inference.precision``)."""
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--threads", type=int, default=threads, help="torch CPU threads")
    if precision:
        p.add_argument(
            "--precision",
            choices=PRECISIONS,
            default="float32",
            help="the U-Net's autocast: auto (bfloat16 where native), float32 or bfloat16",
        )


def add_seed(p: argparse.ArgumentParser, default: int | None = 0, help: str | None = None) -> None:
    p.add_argument("--seed", type=int, default=default, help=help)


def add_params(p: argparse.ArgumentParser, required_solver: bool = False) -> None:
    """``--task-params`` and ``--solver-params`` as JSON objects."""
    p.add_argument("--task-params", type=json_object, default={}, help='e.g. {"sigma_n": 0.1}')
    p.add_argument(
        "--solver-params",
        type=json_object,
        required=required_solver,
        default=None if required_solver else {},
        help='e.g. {"steps": 100, "lam": 1}',
    )


def add_lpips(p: argparse.ArgumentParser) -> None:
    """``--lpips-weights`` and ``--lpips-mode`` (config ``metrics.lpips``)."""
    p.add_argument(
        "--lpips-weights",
        help="torchvision's AlexNet checkpoint (default: torch hub's cache)",
    )
    p.add_argument(
        "--lpips-mode",
        choices=LPIPS_MODES,
        default="auto",
        help="auto: LPIPS n/a without the weights; required: fail; off: not computed",
    )


def command(sub, name: str, target: str, help: str, **kw) -> argparse.ArgumentParser:
    """A subcommand whose work is done by ``target`` (``module:function``)."""
    p = sub.add_parser(name, help=help, description=help, **kw)
    p.set_defaults(target=target)
    return p


# -- the commands -------------------------------------------------------------------------------
def add_cell_arguments(p: argparse.ArgumentParser) -> None:
    """What one grid cell takes (``infer`` and ``posterior``)."""
    p.add_argument("data", help="extracted evaluation split (eval.h5 or tune.h5)")
    p.add_argument("--recon", dest="recon_path", required=True, help="output reconstructions")
    p.add_argument("--metrics", dest="metrics_path", required=True, help="output metrics CSV")
    p.add_argument("--task", required=True, help="denoise, sr, deblur or mri")
    p.add_argument("--solver", required=True, help="dps, diffpir, dinv_* or baseline")
    add_params(p)
    p.add_argument("--prior", help="ema.pt of a trained prior (not for baseline)")
    p.add_argument("--size", type=inference_size, default="whole", help="whole, or the patch size")
    p.add_argument("--padding", choices=PADDINGS, default="reflect")
    p.add_argument(
        "--patch-batch", type=patch_batch, default=None, help="tiles per network call, or auto"
    )
    p.add_argument("--memory-budget", default="25%", help="auto: MiB, or %% of the whole image's")
    p.add_argument("--calibration", help="auto: the memory model (patchpnp calibrate)")
    p.add_argument("--batch-images", type=int, default=8)
    add_seed(p)
    add_compute(p, precision=True)
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--band", type=int, default=None, help="outer band (px) of the boundary score")
    p.add_argument("--tuned", help="a tuning table (patchpnp tune): its choice replaces the value")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="patchpnp", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = command(
        sub,
        "demo",
        "patchpnp.data.demo:build_demo_folder",
        "build fastMRI-layout demo volumes from the MNI152 template",
    )
    d.add_argument("out_dir", help="folder to write file_mni_NNNN.h5 volumes into")
    d.add_argument("--layout", choices=["singlecoil", "multicoil"], required=True)
    d.add_argument("--train", dest="n_train", type=int, default=0, help="training volumes")
    d.add_argument("--eval", dest="n_eval", type=int, default=0, help="evaluation volumes")
    d.add_argument("--tune", dest="n_tune", type=int, default=0, help="tuning volumes")
    d.add_argument(
        "--more-eval",
        dest="n_more",
        type=int,
        default=0,
        help="evaluation volumes after the tuning ones (snakemake resolution's extra slices)",
    )
    d.add_argument(
        "--first-file",
        dest="first",
        type=int,
        default=0,
        help="write only the volumes from this file number on (the others are another job's)",
    )
    add_seed(d)
    d.add_argument("--recon-size", type=int, default=96)
    d.add_argument("--train-slices", type=int, default=16)
    d.add_argument("--eval-slices", type=int, default=7)
    d.add_argument("--edge-slices", type=int, default=2)
    d.add_argument("--coils", type=int, default=4)
    d.add_argument("--readout-oversampling", type=int, default=1)
    d.add_argument("--noise", type=float, default=0.01)

    e = command(
        sub,
        "extract",
        "patchpnp.data.extract:extract_volumes",
        "extract [0, 1] slices from fastMRI volumes into one split file",
    )
    e.add_argument("volumes", nargs="+", help="fastMRI .h5 volumes")
    e.add_argument("--split", choices=SPLITS, required=True)
    e.add_argument("--output", required=True)
    e.add_argument("--image-size", type=int, required=True)
    e.add_argument("--crop-size", type=int, required=True)
    e.add_argument("--edge-slices", type=int, default=0)
    e.add_argument("--scale-percentile", type=float, default=99.5)
    e.add_argument("--layout", choices=["singlecoil", "multicoil", "any"], default="any")
    e.add_argument("--root", help="record volume paths relative to this folder")

    r = command(
        sub,
        "mri-extract",
        "patchpnp.data.mri_extract:extract_mri_volumes",
        "extract complex coil-combined targets, k-space and ESPIRiT maps from multicoil volumes",
    )
    r.add_argument("volumes", nargs="+", help="multicoil fastMRI .h5 volumes")
    r.add_argument("--split", choices=["train", "eval", "tune"], required=True)
    r.add_argument("--output", required=True)
    r.add_argument("--image-size", type=int, required=True)
    r.add_argument("--calib-width", type=int, required=True, help="ESPIRiT calibration width")
    r.add_argument("--coils", type=int, help="compress (or zero-pad) every volume to N coils")
    r.add_argument("--edge-slices", type=int, default=0)
    r.add_argument("--scale-percentile", type=float, default=99.5)
    r.add_argument("--root", help="record volume paths relative to this folder")

    m = command(
        sub,
        "merge",
        "patchpnp.data.extract:merge_shards",
        "join extraction shards (magnitude or MRI) into one split file",
    )
    m.add_argument("shards", nargs="+")
    m.add_argument("--output", required=True)

    t = command(
        sub,
        "train",
        "patchpnp.training.loop:train_command",
        "train one diffusion prior (torchrun for several processes)",
    )
    t.add_argument("data", nargs="+", help="extracted training split files (train.h5)")
    t.add_argument("--out-dir", required=True, help="folder for ema.pt, logs and checkpoints")
    t.add_argument("--settings", help="resolved prior settings as JSON (what the workflow passes)")
    t.add_argument("--settings-file", help="resolved prior settings as a YAML file")
    t.add_argument("--config", help="a workflow config file, with --prior")
    t.add_argument("--prior", help="the prior's name in --config")
    add_compute(t)
    t.add_argument(
        "--resume",
        default="auto",
        help="auto (continue this folder's checkpoint), never, or a checkpoint path",
    )
    t.add_argument(
        "--stop-after",
        type=int,
        default=None,
        help="stop after this many steps of this run (to test resuming)",
    )

    q = command(
        sub,
        "denoise-check",
        "patchpnp.training.denoise_check:denoise_check_command",
        "PSNR of one denoiser call at several noise levels",
    )
    q.add_argument("data", nargs="+", help="extracted evaluation split files")
    q.add_argument("--prior", required=True, help="ema.pt of a trained prior")
    q.add_argument(
        "--sigmas",
        type=float,
        nargs="+",
        default=[0.05, 0.1, 0.2],
        help="noise levels in [0, 1] units",
    )
    add_seed(q)
    q.add_argument("--tile", type=int, default=None, help="run through P x P shifted-grid tiles")
    q.add_argument("--padding", choices=PADDINGS, default="reflect")
    q.add_argument("--draws", type=int, default=4, help="noise draws per image and sigma")
    q.add_argument("--batch", type=int, default=16, help="images per denoiser call")
    q.add_argument("--output", help="write the table as CSV")
    add_compute(q)

    i = command(
        sub,
        "infer",
        "patchpnp.inference.cell:run_cell",
        "one grid cell: solve a task on evaluation slices",
    )
    add_cell_arguments(i)
    add_lpips(i)

    pc = command(
        sub,
        "posterior",
        "patchpnp.inference.posterior:run_posterior_cell",
        "K posterior samples of one grid cell: their mean, spread and coverage",
    )
    add_cell_arguments(pc)
    pc.add_argument("--samples", type=int, required=True, help="posterior samples per image (>= 2)")

    w = command(
        sub,
        "lpips-weights",
        "patchpnp.metrics.lpips_weights:lpips_weights_command",
        "fetch torchvision's AlexNet weights for LPIPS (hash-checked) and write their status",
    )
    w.add_argument("--output", required=True, help="where the weights go (name with hash prefix)")
    w.add_argument("--mode", choices=LPIPS_MODES, default="auto")
    w.add_argument("--source", help="URL to download from (default: torchvision's)")
    w.add_argument("--status", help="the status JSON (default: status.json beside --output)")
    w.add_argument("--generation", type=int, default=0, help="recorded in the status")

    x = command(
        sub,
        "crosscheck",
        "patchpnp.tools.crosscheck:crosscheck_command",
        "our DiffPIR against deepinv's (needs the crosscheck extra), PSNR per method",
    )
    x.add_argument("--prior", required=True, help="ema.pt of a trained prior")
    x.add_argument("--data", required=True, help="extracted evaluation split (eval.h5)")
    x.add_argument("--task", required=True, help="denoise or sr")
    x.add_argument("--config", help="take sigma_n and the DiffPIR settings from this config")
    x.add_argument("--prior-name", help="the prior's name in --config (default: its folder)")
    add_params(x)
    x.add_argument(
        "--start",
        choices=["config", "top"],
        default="config",
        help="config: both start at sigma_start; top: deepinv unmodified, ours from sigma_max",
    )
    x.add_argument(
        "--physics",
        choices=["native", "wrapped"],
        default="native",
        help="deepinv's own operator (checked equal to ours) or ours wrapped",
    )
    x.add_argument("--limit", type=int, default=4, help="use only the first N images")
    add_seed(x, None, "default: the config's seed (as infer), else 0")
    x.add_argument("--output", help="write the per-image table as CSV")
    add_compute(x)

    u = command(
        sub,
        "tune",
        "patchpnp.inference.tune:tune_command",
        "sweep lambda (DiffPIR) or zeta (DPS) on tuning slices",
    )
    u.add_argument("data", nargs="+", help="extracted tuning splits (tune.h5)")
    u.add_argument("--output", required=True, help="CSV of PSNR per value, the choice marked")
    u.add_argument("--prior", required=True)
    u.add_argument("--solver", required=True, choices=sorted(TUNED))
    u.add_argument("--task", required=True)
    add_params(u, required_solver=True)
    u.add_argument("--per-decade", type=int, default=3, help="grid points per decade")
    u.add_argument("--decades", type=float, default=1.0, help="half-width of the first grid")
    add_seed(u)
    u.add_argument("--batch-images", type=int, default=8)
    add_compute(u, precision=True)

    st = command(
        sub,
        "solvers-table",
        "patchpnp.evaluation.solvers_table:solvers_table_command",
        "claim (b) across solvers: the comparison table and the per-solver verdicts",
    )
    st.add_argument("metrics", nargs="+", help="metrics CSVs of the comparison's cells")
    st.add_argument("--table", required=True, help="output stem (.csv and .md)")
    st.add_argument("--claims", required=True, help="output stem of the verdicts (.csv, .md)")
    st.add_argument("--tuned", nargs="*", default=(), help="the tuning tables of the weights")
    st.add_argument("--image-shape", type=int, nargs=2, required=True, metavar=("H", "W"))
    st.add_argument("--margin-db", type=float, default=0.5)
    add_seed(st, help="bootstrap seed")

    ut = command(
        sub,
        "uncertainty-table",
        "patchpnp.evaluation.uncertainty:uncertainty_command",
        "posterior cells: spread and coverage per cell",
    )
    ut.add_argument("cells", nargs="+", help="per-image tables of posterior cells (.csv)")
    ut.add_argument("--table", required=True, help="output stem (.csv and .md)")

    sd = command(
        sub,
        "seeds-table",
        "patchpnp.evaluation.seeds:seeds_command",
        "the claims and cells across training runs (snakemake seeds)",
    )
    sd.add_argument(
        "--metrics",
        action="append",
        nargs="+",
        required=True,
        help="one run's cell metrics CSVs; once per run, run 0 (the grid) first",
    )
    sd.add_argument(
        "--training-seeds", type=int, nargs="+", required=True, help="each run's training seed"
    )
    sd.add_argument("--out-claims", required=True, help="output stem (.csv and .md)")
    sd.add_argument("--out-cells", required=True, help="output stem (.csv and .md)")
    sd.add_argument("--margin-db", type=float, default=0.5, help="equivalence margin of claims")
    sd.add_argument("--whole-prior", default="whole", help="the whole-image-trained prior")
    sd.add_argument("--patch-prior", default="patch", help="the patch-trained prior")
    add_seed(sd, help="bootstrap seed")

    uf = command(
        sub,
        "uncertainty-figure",
        "patchpnp.evaluation.uncertainty:uncertainty_figure_command",
        "truth, sample mean, |error| and standard deviation, one row per posterior cell",
    )
    uf.add_argument("cells", nargs="+", help="posterior cells (.h5)")
    uf.add_argument("--labels", nargs="+", required=True, help="one row label per cell")
    uf.add_argument("--gt", required=True, help="the evaluation split")
    uf.add_argument("--out-stem", required=True)
    uf.add_argument("--index", type=int, default=0)

    us = command(
        sub,
        "tune-summary",
        "patchpnp.inference.tune:summary_command",
        "collect tuned values into a config fragment",
    )
    us.add_argument("tables", nargs="+")
    us.add_argument("--output", required=True)

    a = command(
        sub,
        "tables",
        "patchpnp.evaluation.tables:tables_command",
        "Table 1, the extended table, the claim verdicts and the resolution check",
    )
    a.add_argument("metrics", nargs="+", help="metrics CSVs (results/metrics/... layout)")
    a.add_argument("--out-dir", required=True)
    a.add_argument("--claims-metrics", nargs="*", default=(), help="more cells for the claims only")
    add_seed(a, help="bootstrap seed")
    a.add_argument("--image-shape", type=int, nargs=2, required=True, metavar=("H", "W"))
    a.add_argument("--profiles", nargs="*", default=[], help="profile CSVs, for claim (d)")
    a.add_argument(
        "--paper-scale", help="the paper-scale profile CSV: claim (d) is judged on it if given"
    )
    a.add_argument(
        "--plateau-fraction", type=float, default=0.1, help="claim (d): the last step's bar"
    )
    a.add_argument("--margin-db", type=float, default=0.5, help="equivalence margin of claims")
    a.add_argument("--whole-prior", default="whole", help="the whole-image-trained prior")
    a.add_argument("--patch-prior", default="patch", help="the patch-trained prior")
    a.add_argument("--profile-prior", default="n/a", help="the profiled prior (a label)")
    a.add_argument(
        "--bars",
        type=float,
        nargs=2,
        metavar=("CELL_DB", "POOLED_DB"),
        help="half-width bars of resolution.{csv,md}: per reflect cell, per pooled claim row",
    )

    r = command(
        sub,
        "profile",
        "patchpnp.evaluation.profiling:profile_command",
        "memory and time per denoiser call (fresh processes)",
    )
    r.add_argument("--output", required=True, help="CSV, one row per configuration")
    r.add_argument("--prior", required=True, help="ema.pt of the profiled prior")
    r.add_argument("--eval", dest="eval_h5", required=True, help="eval.h5; its first slice")
    r.add_argument("--solvers", nargs="+", choices=["dps", "diffpir"], required=True)
    r.add_argument("--image-size", type=int, required=True)
    r.add_argument(
        "--sizes", type=inference_size, nargs="+", required=True, help="patch sides and/or whole"
    )
    r.add_argument("--image-sizes", type=int, nargs="*", default=[])
    r.add_argument("--sweep-patch", type=int, required=True)
    r.add_argument("--memory-budget", help="also profile patch_batch auto within this budget")
    r.add_argument("--calibration", help="the prior's memory model (patchpnp calibrate), for auto")
    r.add_argument("--steps", type=int, default=3)
    add_compute(r, threads=1, precision=True)

    ps = command(
        sub,
        "paper-profile",
        "patchpnp.evaluation.paper_scale:paper_profile_command",
        "memory and time at the paper's scale with a random-weight network (no data)",
    )
    ps.add_argument("--output", required=True, help="CSV, one row per configuration")
    ps.add_argument("--network-config", required=True, help="a config whose network is built")
    ps.add_argument("--calibration", required=True, help="writes the network's memory model")
    ps.add_argument("--summary", help="writes the table and the targets as Markdown")
    ps.add_argument("--solvers", nargs="+", choices=["dps", "diffpir"], required=True)
    ps.add_argument("--image-sizes", type=int, nargs="+", required=True)
    ps.add_argument("--sizes", type=int, nargs="+", required=True, help="patch sides")
    ps.add_argument("--memory-budget", default="25%", help="patch_batch auto: MiB or '25%%'")
    ps.add_argument(
        "--memory-limit", default="50%", help="skip calls predicted above (MiB or '50%%')"
    )
    ps.add_argument(
        "--sampled-chunks", type=int, default=4, help="micro-batches run per pass; time scaled"
    )
    add_seed(ps)
    add_compute(ps, precision=True)

    gc = command(
        sub,
        "gpu-check",
        "patchpnp.evaluation.gpu_check:gpu_check_command",
        "every kind of GPU job once at a config's sizes, random weights; CUDA against CPU",
    )
    gc.add_argument("--config", required=True, help="the config whose sizes are checked")
    gc.add_argument("--output", required=True, help="CSV, one row per job")
    gc.add_argument("--summary", required=True, help="the table and the verdict as Markdown")
    gc.add_argument("--steps", type=int, default=4, help="solver steps per cell")
    gc.add_argument("--images", type=int, default=2, help="slices per cell")
    gc.add_argument("--tolerance-db", type=float, default=0.05, help="CUDA against CPU PSNR")
    gc.add_argument("--threads", type=int, default=None, help="CPU threads for torch")

    f = command(
        sub, "figure", "patchpnp.evaluation.figures:figure_command", "draw a figure (PNG and PDF)"
    )
    f.add_argument("kind", choices=["memory", "paper-scale", "padding", "qualitative", "mri"])
    f.add_argument(
        "inputs",
        nargs="+",
        help="memory: profile CSVs; paper-scale: paper_scale.csv; padding: gt.h5 zeros.h5 "
        "reflect.h5; "
        "qualitative, mri: the rows as JSON (see patchpnp.evaluation.figures)",
    )
    f.add_argument("--out-stem", required=True, help="writes <stem>.png and <stem>.pdf")
    f.add_argument("--index", type=int, default=0, help="evaluation slice shown")
    f.add_argument(
        "--band", type=int, default=4, help="padding: outer band (px) of the boundary score"
    )

    # -- multicoil MRI (snakemake mri) --
    def add_acquisition(p: argparse.ArgumentParser) -> None:
        p.add_argument("--method", choices=MRI_METHODS, required=True)
        p.add_argument("--mask", choices=["equispaced", "random"], default="equispaced")
        p.add_argument("--acceleration", type=int, required=True)
        p.add_argument("--center-fraction", type=float, required=True)
        p.add_argument("--sigma-n", type=float, required=True, help="k-space noise std assumed")
        p.add_argument("--cg-iters", type=int, default=10, help="CG iterations of a data step")
        p.add_argument("--iters", type=int, help="sense / cs_wavelet iterations")
        p.add_argument("--batch-images", type=int, default=12)
        p.add_argument("--limit", type=int, help="only the first N slices")
        add_seed(p)

    r = command(
        sub,
        "mri-cell",
        "patchpnp.inference.mri_cell:mri_cell_command",
        "one multicoil MRI cell: a classical baseline or a diffusion solver",
    )
    r.add_argument("data", help="MRI eval split (mri-extract)")
    r.add_argument("--recon", required=True)
    r.add_argument("--metrics", required=True)
    r.add_argument("--dataset", required=True)
    add_acquisition(r)
    r.add_argument("--lam", type=float, help="sense / cs_wavelet regularisation weight")
    r.add_argument("--lam-file", help="or the chosen lam of an mri-tune sweep")
    r.add_argument("--solver", choices=["dps", "diffpir"])
    r.add_argument("--solver-params", type=json_object, default=None)
    r.add_argument("--prior", help="ema.pt of a prior trained on complex images")
    r.add_argument("--size", type=inference_size, default="whole")
    r.add_argument("--padding", choices=PADDINGS, default="reflect")
    r.add_argument("--patch-batch", type=int, help="tiles per network call (all: omit)")
    add_compute(r, precision=True)

    r = command(
        sub,
        "mri-tune",
        "patchpnp.inference.mri_cell:mri_tune_command",
        "a classical MRI method's lam, or a solver's lam / zeta, over the tuning slices",
    )
    r.add_argument("data", help="MRI tune split (mri-extract)")
    r.add_argument("--output", required=True, help="the sweep (CSV)")
    add_acquisition(r)
    r.add_argument("--lam-center", type=float, required=True, help="centre of the log grid")
    r.add_argument("--decades", type=float, default=2.0, help="half-width of the grid")
    r.add_argument("--points", type=int, default=9)
    r.add_argument("--solver", choices=["dps", "diffpir"], help="diffusion: tunes lam / zeta")
    r.add_argument("--solver-params", type=json_object, default=None)
    r.add_argument("--prior", help="diffusion: ema.pt of a prior trained on complex images")
    add_compute(r, precision=True)

    r = command(
        sub,
        "mri-table",
        "patchpnp.evaluation.mri_table:mri_table_command",
        "the MRI table (CSV and Markdown with its checks) from the cells' metrics",
    )
    r.add_argument("metrics", nargs="+")
    r.add_argument("--output", required=True, help="writes <output>.csv and <output>.md")
    add_seed(r)

    k = command(
        sub,
        "calibrate",
        "patchpnp.inference.calibration:calibrate_command",
        "memory model of a prior's network on this device (patch_batch: auto)",
    )
    k.add_argument("--prior", required=True, help="ema.pt of a trained prior")
    k.add_argument("--output", required=True, help="the calibration (JSON)")
    add_compute(k, precision=True)

    c = command(
        sub,
        "check-config",
        "patchpnp.pipeline.config:check_config_command",
        "validate a config file against the schema",
    )
    c.add_argument("config")
    return p


GLOBAL_DESTS = ("verbose", "command", "target")


def resolve(target: str) -> Callable:
    """The function ``module:function`` names (imported now, not at parse time)."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def call(fn: Callable, args: argparse.Namespace):
    """``fn`` with the command's options as keyword arguments of the same names."""
    return fn(**{k: v for k, v in vars(args).items() if k not in GLOBAL_DESTS})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One torch-free base class: catching it imports nothing the command does not need.
    from patchpnp.errors import PatchpnpError
    from patchpnp.pipeline.faults import InjectedFault, maybe_fail

    try:
        maybe_fail(" ".join(sys.argv[1:] if argv is None else argv))
        out = call(resolve(args.target), args)
    except (PatchpnpError, FileNotFoundError) as err:
        print(f"patchpnp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except InjectedFault as err:
        print(f"patchpnp {args.command}: {err}", file=sys.stderr)
        return 3
    except Exception as err:
        from patchpnp.pipeline.out_of_memory import is_out_of_memory, out_of_memory_message

        if not is_out_of_memory(err):
            raise
        # Outputs are written atomically, so a job stopped here leaves none behind.
        print(f"patchpnp {args.command}: error: {out_of_memory_message(args.command, err)}",
              file=sys.stderr)  # fmt: skip
        return 2
    if isinstance(out, str):
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
