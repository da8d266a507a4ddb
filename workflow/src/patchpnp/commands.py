"""Every ``patchpnp`` subcommand, declared once: its name, the function that does its
work (``module:function``), its help and its option groups; every option declared once.

:data:`OPTIONS` holds each option's declaration (:class:`Option`): its flag, the keyword
it is passed as (``dest``), how it parses (type, ``nargs``, action), its choices, default
and help. A flag has one declaration, except the :data:`HOMONYMS`, flags that name
different things in different commands. A command refers to options by name, and its
use of one (:func:`use`) may set what differs between commands: the default, whether it
is required, a subset of the choices and the help, never how it parses.

:data:`GROUPS` holds the option groups several commands share. A group with ``into``
(``module:Class``) reaches the command's function as one object of that class (a
frozen dataclass whose fields are the options' ``dest``), under the keyword ``param``;
the other options arrive as keywords of their own ``dest``.

:data:`COMMANDS` is the table: :mod:`patchpnp.cli` builds argparse from it,
:mod:`patchpnp.pipeline.provenance` reads which modules each command runs from it
(:meth:`Command.modules`), and ``tests/test_cli.py`` checks every command's function
and classes against the options it gives them. Torch-free: functions and classes are
named here, and imported only when their command runs.
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from patchpnp.formats import FASTMRI_LAYOUTS
from patchpnp.layout import (
    DEMO_CONTRASTS,
    MRI_METHODS,
    PADDINGS,
    RESOLUTION_SPLIT,
    SPLITS,
    WHOLE,
)
from patchpnp.params import DEVICES, LPIPS_MODES, MASK_TYPES, OUR_SOLVERS, PRECISIONS, TUNED


# -- how option values parse ---------------------------------------------------------------------
def inference_size(text: str):
    """``whole`` or a patch side P (``--size``, ``--sizes``)."""
    if text == WHOLE:
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


# -- the declarations -----------------------------------------------------------------------------
class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()  # a use that leaves the declaration's value as it is


@dataclass(frozen=True)
class Option:
    """One option: ``flags`` (none: a positional argument named ``dest``) and the keyword
    ``dest`` it is passed as; ``type``, ``nargs``, ``action`` and ``metavar`` (how it
    parses) and ``choices``, ``default``, ``required``, ``help`` (argparse's meanings)."""

    flags: tuple[str, ...]
    dest: str
    type: Callable | None = None
    nargs: str | int | None = None
    action: str | None = None
    metavar: str | tuple[str, ...] | None = None
    choices: tuple | None = None
    default: Any = None
    required: bool = False
    help: str | None = None

    def parsing(self) -> tuple:
        """What decides the value a command receives, the same wherever the flag is used."""
        return self.dest, self.type, self.nargs, self.action, self.metavar

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        kw = {
            key: value
            for key, value in (
                ("type", self.type),
                ("nargs", self.nargs),
                ("action", self.action),
                ("metavar", self.metavar),
                ("choices", self.choices),
                ("help", self.help),
            )
            if value is not None
        }
        if self.default is not None:  # a fresh copy per parser: defaults may be lists
            kw["default"] = copy.deepcopy(self.default)
        if self.flags:
            parser.add_argument(*self.flags, dest=self.dest, required=self.required, **kw)
        else:
            parser.add_argument(self.dest, **kw)


@dataclass(frozen=True)
class Use:
    """A command's use of the option ``name``: its own default, requiredness, choices (a
    subset of the declared ones) or help; :data:`KEEP` leaves the declaration's."""

    name: str
    default: Any = KEEP
    required: Any = KEEP
    choices: Any = KEEP
    help: Any = KEEP

    def changes(self) -> dict:
        return {k: v for k in _USED if (v := getattr(self, k)) is not KEEP}

    def merged(self, later: Use) -> Use:
        """This use with ``later``'s changes on top."""
        return replace(self, **later.changes())

    def apply(self) -> Option:
        option, changes = OPTIONS[self.name], self.changes()
        if option.choices and changes.get("choices"):
            extra = set(changes["choices"]) - set(option.choices)
            if extra:
                raise ValueError(f"option {self.name}: choices {sorted(extra)} not declared")
        return replace(option, **changes)


_USED = ("default", "required", "choices", "help")  # what a use may change


def use(name: str, **changes) -> Use:
    """The option ``name`` with this command's ``default``, ``required``, ``choices`` or
    ``help``."""
    return Use(name, **changes)


def _use(item: str | Use) -> Use:
    return item if isinstance(item, Use) else Use(item)


@dataclass(frozen=True)
class Group:
    """Options that travel together: with ``into`` (``module:Class``) the command's
    function receives them as one ``Class(**{dest: value})`` under the keyword ``param``."""

    options: tuple[str | Use, ...]
    into: str | None = None
    param: str | None = None

    def uses(self) -> tuple[Use, ...]:
        return tuple(_use(item) for item in self.options)

    def resolved(self) -> tuple[Option, ...]:
        return tuple(u.apply() for u in self.uses())

    def plus(self, *items: str | Use) -> Group:
        """This group with ``items`` added, or changed where the group has them already."""
        uses = list(self.uses())
        for item in map(_use, items):
            names = [u.name for u in uses]
            if item.name in names:
                uses[names.index(item.name)] = uses[names.index(item.name)].merged(item)
            else:
                uses.append(item)
        return replace(self, options=tuple(uses))


def group(name: str, *items: str | Use) -> Group:
    """The registered group ``name``, with ``items`` added or changed for one command."""
    return GROUPS[name].plus(*items)


def options(*items: str | Use) -> Group:
    """A command's own options, each passed as a keyword."""
    return Group(items)


@dataclass(frozen=True)
class Command:
    """``patchpnp <name>``: its ``help``, the ``target`` (``module:function``) that does the
    work and the option ``groups`` whose values it receives."""

    name: str
    target: str
    help: str
    groups: tuple[Group, ...] = ()

    def options(self) -> tuple[Option, ...]:
        return tuple(o for g in self.groups for o in g.resolved())

    def modules(self) -> tuple[str, ...]:
        """The module of the function, then those of the classes its groups become."""
        found = [self.target.split(":")[0]]
        found += [g.into.split(":")[0] for g in self.groups if g.into]
        return tuple(dict.fromkeys(found))


def _flag(flag: str, dest: str | None = None, **kw) -> Option:
    return Option((flag,), dest or flag.lstrip("-").replace("-", "_"), **kw)


def _positional(dest: str, **kw) -> Option:
    return Option((), dest, **kw)


# -- every option, by name ------------------------------------------------------------------------
_LAYOUTS = (*FASTMRI_LAYOUTS, "any")  # extract: "any" takes either
_MRI_SPLITS = tuple(s for s in SPLITS if s != RESOLUTION_SPLIT)  # no resolution split
_SOLVER_PARAMS = 'e.g. {"steps": 100, "lam": 1}'
_CLAIMS_MARGIN = "equivalence margin of claims"

OPTIONS: dict[str, Option] = {
    # inputs and outputs
    "data": _positional("data", help="extracted evaluation split (eval.h5 or tune.h5)"),
    "data_files": _positional("data", nargs="+", help="extracted split files"),
    "data_option": _flag("--data", required=True, help="extracted evaluation split (eval.h5)"),
    "volumes": _positional("volumes", nargs="+", help="fastMRI .h5 volumes"),
    "shards": _positional("shards", nargs="+"),
    "train_split": _positional("train_split", help="a training split file (train.h5)"),
    "subset_n": _flag("--n", "n", type=int, required=True, help="slices to keep"),
    "metrics": _positional("metrics", nargs="+"),
    "cells": _positional("cells", nargs="+"),
    "tables": _positional("tables", nargs="+"),
    "config_file": _positional("config"),
    "demo_dir": _positional("out_dir", help="folder to write file_mni_NNNN.h5 volumes into"),
    "output": _flag("--output"),
    "out_dir": _flag("--out-dir", required=True),
    "out_stem": _flag("--out-stem", required=True, help="writes <stem>.png and <stem>.pdf"),
    "recon_path": _flag("--recon", "recon_path", required=True, help="output reconstructions"),
    "metrics_path": _flag("--metrics", "metrics_path", required=True, help="output metrics CSV"),
    "run_metrics": _flag(
        "--metrics",
        "metrics",
        action="append",
        nargs="+",
        required=True,
        help="one run's cell metrics CSVs; once per run, run 0 (the grid) first",
    ),
    "table": _flag("--table", required=True, help="output stem (.csv and .md)"),
    "summary": _flag("--summary"),
    "config": _flag("--config"),
    "results_dir": _positional(
        "results_dir", nargs="?", default="results", help="the workflow's results/ folder"
    ),
    "doc_configs": _flag(
        "--configs", "configs", nargs="*", default=[], help="config files whose digests to record"
    ),
    "root": _flag("--root", help="record volume paths relative to this folder"),
    "prior": _flag("--prior", help="ema.pt of a trained prior"),
    "calibration": _flag("--calibration", help="auto: the memory model (patchpnp calibrate)"),
    # the runtime (patchpnp.runtime.Runtime)
    "device": _flag("--device", choices=DEVICES, default="auto"),
    "threads": _flag("--threads", type=int, help="torch CPU threads"),
    "precision": _flag(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="the U-Net's autocast: auto (bfloat16 where native), float32 or bfloat16",
    ),
    "batch_images": _flag("--batch-images", type=int, default=8),
    "patch_batch": _flag("--patch-batch", type=patch_batch, help="tiles per network call, or auto"),
    "memory_budget": _flag(
        "--memory-budget", default="25%", help="auto: MiB, or %% of the whole image's"
    ),
    # a grid cell (patchpnp.inference.cell.CellSpec) and its scoring
    "task": _flag("--task", help="denoise, sr, deblur or mri"),
    "task_params": _flag(
        "--task-params", type=json_object, default={}, help='e.g. {"sigma_n": 0.1}'
    ),
    "solver": _flag("--solver", help="dps, diffpir, dinv_* or baseline"),
    "solver_params": _flag("--solver-params", type=json_object, default={}, help=_SOLVER_PARAMS),
    "size": _flag("--size", type=inference_size, default=WHOLE, help="whole, or the patch size"),
    "padding": _flag("--padding", choices=PADDINGS, default="reflect"),
    "seed": _flag("--seed", type=int, default=0),
    "tuned": _flag("--tuned", help="a tuning table (patchpnp tune): its choice replaces the value"),
    "limit": _flag("--limit", type=int, help="use only the first N images"),
    "band": _flag("--band", type=int, help="outer band (px) of the boundary score"),
    "lpips_weights": _flag(
        "--lpips-weights", help="torchvision's AlexNet checkpoint (default: torch hub's cache)"
    ),
    "lpips_mode": _flag(
        "--lpips-mode",
        choices=LPIPS_MODES,
        default="auto",
        help="auto: LPIPS n/a without the weights; required: fail; off: not computed",
    ),
    "samples": _flag(
        "--samples", type=int, required=True, help="posterior samples per image (>= 2)"
    ),
    # the demo data (patchpnp.data.demo.DemoSimulation) and extraction
    "layout": _flag("--layout", choices=_LAYOUTS, default="any"),
    "n_train": _flag("--train", "n_train", type=int, default=0, help="training volumes"),
    "n_eval": _flag("--eval", "n_eval", type=int, default=0, help="evaluation volumes"),
    "n_tune": _flag("--tune", "n_tune", type=int, default=0, help="tuning volumes"),
    "n_more": _flag(
        "--more-eval",
        "n_more",
        type=int,
        default=0,
        help="evaluation volumes after the tuning ones (snakemake resolution's extra slices)",
    ),
    "first": _flag(
        "--first-file",
        "first",
        type=int,
        default=0,
        help="write only the volumes from this file number on (the others are another job's)",
    ),
    "recon_size": _flag("--recon-size", type=int, default=96),
    "train_slices": _flag("--train-slices", type=int, default=16),
    "eval_slices": _flag("--eval-slices", type=int, default=7),
    "edge_slices": _flag("--edge-slices", type=int, default=0),
    "coils": _flag("--coils", type=int),
    "readout_oversampling": _flag("--readout-oversampling", type=int, default=1),
    "noise": _flag("--noise", type=float, default=0.01),
    "contrast": _flag(
        "--contrast",
        choices=DEMO_CONTRASTS,
        default="mixed",
        help="mixed: T1 or T2-like per volume; flair: every volume FLAIR-like (a contrast "
        "no mixed volume has: the distribution-shift evaluation)",
    ),
    "split": _flag("--split", choices=SPLITS, required=True),
    # snakemake padis's CT dataset (patchpnp.data.ct)
    "ct_source": _flag("--ct-source", choices=("synthetic", "dicom"), required=True),
    "first_image": _flag("--first-image", type=int, default=0, help="index of the first one"),
    "folder": _flag("--folder", help="dicom: the folder of patient folders"),
    "hu_max": _flag("--hu-max", type=float, default=1000.0, help="dicom: the HU that maps to 1"),
    "synthetic": _flag(
        "--synthetic", nargs="+", default=["none"], help="datasets of synthetic images"
    ),
    "title": _flag("--title", required=True, help="the figure's row label"),
    "baseline": _flag("--baseline", required=True, help="the measurement baseline's recon (.h5)"),
    "image_size": _flag("--image-size", type=int, required=True),
    "crop_size": _flag("--crop-size", type=int, required=True),
    "calib_width": _flag(
        "--calib-width", type=int, required=True, help="ESPIRiT calibration width"
    ),
    "scale_percentile": _flag("--scale-percentile", type=float, default=99.5),
    # training and the denoiser check
    "settings": _flag(
        "--settings", help="resolved prior settings as JSON (what the workflow passes)"
    ),
    "settings_file": _flag("--settings-file", help="resolved prior settings as a YAML file"),
    "resume": _flag(
        "--resume",
        default="auto",
        help="auto (continue this folder's checkpoint), never, or a checkpoint path",
    ),
    "stop_after": _flag(
        "--stop-after", type=int, help="stop after this many steps of this run (to test resuming)"
    ),
    "sigmas": _flag(
        "--sigmas",
        type=float,
        nargs="+",
        default=[0.05, 0.1, 0.2],
        help="noise levels in [0, 1] units",
    ),
    "tile": _flag("--tile", type=int, help="run through P x P shifted-grid tiles"),
    "draws": _flag("--draws", type=int, default=4, help="noise draws per image and sigma"),
    "batch": _flag("--batch", type=int, default=16, help="images per denoiser call"),
    # LPIPS weights, the cross-check, tuning
    "mode": _flag("--mode", choices=LPIPS_MODES, default="auto"),
    "source": _flag("--source", help="URL to download from (default: torchvision's)"),
    "status": _flag("--status", help="the status JSON (default: status.json beside --output)"),
    "generation": _flag("--generation", type=int, default=0, help="recorded in the status"),
    "prior_name": _flag("--prior-name", help="the prior's name in --config (default: its folder)"),
    "start": _flag(
        "--start",
        choices=("config", "top"),
        default="config",
        help="config: both start at sigma_start; top: deepinv unmodified, ours from sigma_max",
    ),
    "physics": _flag(
        "--physics",
        choices=("native", "wrapped"),
        default="native",
        help="deepinv's own operator (checked equal to ours) or ours wrapped",
    ),
    "per_decade": _flag("--per-decade", type=int, default=3, help="grid points per decade"),
    "decades": _flag("--decades", type=float, default=1.0, help="half-width of the first grid"),
    # tables and figures
    "claims": _flag("--claims", required=True, help="output stem of the verdicts (.csv, .md)"),
    "groups": _flag(
        "--group",
        "groups",
        action="append",
        nargs="+",
        required=True,
        metavar=("DOMAIN N_TRAIN N_TRAIN_SLICES SHIFT_DATASET METRICS.csv", "METRICS.csv"),
        help="the cells of one training domain's priors trained on N_TRAIN slices per "
        "dataset (a number or all; N_TRAIN_SLICES in all), evaluated in distribution and on "
        "SHIFT_DATASET; once per (domain, n_train)",
    ),
    "figure": _flag("--figure", required=True, help="output stem of the figure (.png, .pdf)"),
    "tuned_tables": _flag(
        "--tuned", "tuned", nargs="*", default=(), help="the tuning tables of the weights"
    ),
    "image_shape": _flag("--image-shape", type=int, nargs=2, required=True, metavar=("H", "W")),
    "margin_db": _flag("--margin-db", type=float, default=0.5, help=_CLAIMS_MARGIN),
    "training_seeds": _flag(
        "--training-seeds", type=int, nargs="+", required=True, help="each run's training seed"
    ),
    "out_claims": _flag("--out-claims", required=True, help="output stem (.csv and .md)"),
    "out_cells": _flag("--out-cells", required=True, help="output stem (.csv and .md)"),
    "whole_prior": _flag("--whole-prior", default=WHOLE, help="the whole-image-trained prior"),
    "patch_prior": _flag("--patch-prior", default="patch", help="the patch-trained prior"),
    "profile_prior": _flag("--profile-prior", default="n/a", help="the profiled prior (a label)"),
    "plateau_fraction": _flag(
        "--plateau-fraction", type=float, default=0.1, help="claim (d): the last step's bar"
    ),
    "claims_metrics": _flag(
        "--claims-metrics", nargs="*", default=(), help="more cells for the claims only"
    ),
    "profiles": _flag("--profiles", nargs="*", default=[], help="profile CSVs, for claim (d)"),
    "paper_scale": _flag(
        "--paper-scale", help="the paper-scale profile CSV: claim (d) is judged on it if given"
    ),
    "bars": _flag(
        "--bars",
        type=float,
        nargs=2,
        metavar=("CELL_DB", "POOLED_DB"),
        help="half-width bars of resolution.{csv,md}: per reflect cell, per pooled claim row",
    ),
    "labels": _flag("--labels", nargs="+", required=True, help="one row label per cell"),
    "gt": _flag("--gt", required=True, help="the evaluation split"),
    "index": _flag("--index", type=int, default=0, help="evaluation slice shown"),
    "kind": _positional("kind", choices=("memory", "paper-scale", "padding", "qualitative", "mri")),
    "inputs": _positional(
        "inputs",
        nargs="+",
        help="memory: profile CSVs; paper-scale: paper_scale.csv; padding: "
        "gt.h5 zeros.h5 reflect.h5; qualitative, mri: the rows as JSON (see "
        "patchpnp.evaluation.figures)",
    ),
    # profiles
    "eval_h5": _flag("--eval", "eval_h5", required=True, help="eval.h5; its first slice"),
    "solvers": _flag("--solvers", nargs="+", choices=OUR_SOLVERS, required=True),
    "sizes": _flag("--sizes", type=inference_size, nargs="+", required=True),
    "image_sizes": _flag("--image-sizes", type=int, nargs="*", default=[]),
    "sweep_patch": _flag("--sweep-patch", type=int, required=True),
    "steps": _flag("--steps", type=int, default=3),
    "network_config": _flag(
        "--network-config", required=True, help="a config whose network is built"
    ),
    "memory_limit": _flag(
        "--memory-limit", default="50%", help="skip calls predicted above (MiB or '50%%')"
    ),
    "sampled_chunks": _flag(
        "--sampled-chunks", type=int, default=4, help="micro-batches run per pass; time scaled"
    ),
    "images": _flag("--images", type=int, default=2, help="slices per cell"),
    "tolerance_db": _flag("--tolerance-db", type=float, default=0.05, help="CUDA against CPU PSNR"),
    # multicoil MRI (patchpnp.inference.mri_cell: Acquisition, Reconstruction)
    "dataset": _flag("--dataset", required=True),
    "method": _flag("--method", choices=MRI_METHODS, required=True),
    "mask": _flag("--mask", choices=MASK_TYPES, default="equispaced"),
    "acceleration": _flag("--acceleration", type=int, required=True),
    "center_fraction": _flag("--center-fraction", type=float, required=True),
    "sigma_n": _flag("--sigma-n", type=float, required=True, help="k-space noise std assumed"),
    "cg_iters": _flag("--cg-iters", type=int, default=10, help="CG iterations of a data step"),
    "iters": _flag("--iters", type=int, help="sense / cs_wavelet iterations"),
    "lam": _flag("--lam", type=float, help="sense / cs_wavelet regularisation weight"),
    "lam_file": _flag("--lam-file", help="or the chosen lam of an mri-tune sweep"),
    "lam_center": _flag("--lam-center", type=float, required=True, help="centre of the log grid"),
    "points": _flag("--points", type=int, default=9),
}

# Flags that name different things in different commands (the workflow's rules pass
# them all): demo's volume count and profile's split; a cell's metrics file and
# seeds-table's runs of metrics files; a cell's tuning table and solvers-table's tables.
HOMONYMS = {
    "--eval": ("n_eval", "eval_h5"),
    "--metrics": ("metrics_path", "run_metrics"),
    "--tuned": ("tuned", "tuned_tables"),
}

# -- the groups several commands share ------------------------------------------------------------
RUNTIME = "patchpnp.runtime:Runtime"
_RUNTIME = Group(("device", "threads"), into=RUNTIME, param="runtime")
_PRIOR_RUNTIME = _RUNTIME.plus("precision")  # commands that run a prior's network

GROUPS: dict[str, Group] = {
    "runtime": _RUNTIME,
    "prior_runtime": _PRIOR_RUNTIME,
    "cell_runtime": _PRIOR_RUNTIME.plus(
        "batch_images", "patch_batch", "memory_budget", "calibration"
    ),
    "cell": Group(
        (
            use("task", required=True),
            use("solver", required=True),
            "task_params",
            "solver_params",
            use("prior", help="ema.pt of a trained prior (not for baseline)"),
            "size",
            "padding",
            "seed",
            "tuned",
        ),
        into="patchpnp.inference.cell:CellSpec",
        param="cell",
    ),
    "scoring": Group(
        ("band", "lpips_weights", "lpips_mode"),
        into="patchpnp.metrics.quality:Scoring",
        param="scoring",
    ),
    "acquisition": Group(
        ("mask", "acceleration", "center_fraction", "sigma_n", "cg_iters"),
        into="patchpnp.inference.mri_cell:Acquisition",
        param="acquisition",
    ),
    "reconstruction": Group(
        (
            "method",
            "iters",
            use("solver", choices=OUR_SOLVERS, help=None),
            use("solver_params", default=None, help=None),
            use("prior", help="ema.pt of a prior trained on complex images"),
        ),
        into="patchpnp.inference.mri_cell:Reconstruction",
        param="reconstruction",
    ),
    "claims": Group(
        ("margin_db", "whole_prior", "patch_prior", "profile_prior", "plateau_fraction"),
        into="patchpnp.evaluation.claims:ClaimSettings",
        param="claims",
    ),
}

# -- the commands ---------------------------------------------------------------------------------
_MRI_SLICES = dict(help="only the first N slices")
_CSV_ROWS = "CSV, one row per configuration"

_COMMANDS = (
    Command(
        "demo",
        "patchpnp.data.demo:build_demo_folder",
        "build fastMRI-layout demo volumes from the MNI152 template",
        (
            options("demo_dir", "n_train", "n_eval", "n_tune", "n_more", "first"),
            Group(
                (
                    use("layout", choices=FASTMRI_LAYOUTS, required=True, default=None),
                    "seed",
                    "recon_size",
                    "train_slices",
                    "eval_slices",
                    use("edge_slices", default=2),
                    use("coils", default=4),
                    "readout_oversampling",
                    "noise",
                    "contrast",
                ),
                into="patchpnp.data.demo:DemoSimulation",
                param="simulation",
            ),
        ),
    ),
    Command(
        "extract",
        "patchpnp.data.extract:extract_volumes",
        "extract [0, 1] slices from fastMRI volumes into one split file",
        (
            options(
                "volumes",
                "split",
                use("output", required=True),
                "image_size",
                "crop_size",
                "edge_slices",
                "scale_percentile",
                "layout",
                "root",
            ),
        ),
    ),
    Command(
        "mri-extract",
        "patchpnp.data.mri_extract:extract_mri_volumes",
        "extract complex coil-combined targets, k-space and ESPIRiT maps from multicoil volumes",
        (
            options(
                use("volumes", help="multicoil fastMRI .h5 volumes"),
                use("split", choices=_MRI_SPLITS),
                use("output", required=True),
                "image_size",
                "calib_width",
                use("coils", help="compress (or zero-pad) every volume to N coils"),
                "edge_slices",
                "scale_percentile",
                "root",
            ),
        ),
    ),
    Command(
        "merge",
        "patchpnp.data.extract:merge_shards",
        "join extraction shards (magnitude or MRI) into one split file",
        (options("shards", use("output", required=True)),),
    ),
    Command(
        "train-subset",
        "patchpnp.data.subset:write_train_subset",
        "the first n slices of a training split's fixed permutation (snakemake generalization)",
        (
            options(
                "train_split",
                use("output", required=True),
                "subset_n",
                use("seed", help="permutation seed"),
                "dataset",
            ),
        ),
    ),
    Command(
        "train",
        "patchpnp.training.loop:train_command",
        "train one diffusion prior (torchrun for several processes)",
        (
            options(
                use("data_files", help="extracted training split files (train.h5)"),
                use("out_dir", help="folder for ema.pt, logs and checkpoints"),
                "settings",
                "settings_file",
                use("config", help="a workflow config file, with --prior"),
                use("prior", help="the prior's name in --config"),
                "device",
                "threads",
                "resume",
                "stop_after",
            ),
        ),
    ),
    Command(
        "denoise-check",
        "patchpnp.training.denoise_check:denoise_check_command",
        "PSNR of one denoiser call at several noise levels",
        (
            options(
                use("data_files", help="extracted evaluation split files"),
                use("prior", required=True),
                "sigmas",
                "seed",
                "tile",
                "padding",
                "draws",
                "batch",
                use("output", help="write the table as CSV"),
            ),
            group("runtime"),
        ),
    ),
    Command(
        "infer",
        "patchpnp.inference.cell:run_cell",
        "one grid cell: solve a task on evaluation slices",
        (
            options("data", "recon_path", "metrics_path", "limit"),
            group("cell"),
            group("cell_runtime"),
            group("scoring"),
        ),
    ),
    Command(
        "posterior",
        "patchpnp.inference.posterior:run_posterior_cell",
        "K posterior samples of one grid cell: their mean, spread and coverage",
        (
            options("data", "recon_path", "metrics_path", "limit", "samples"),
            group("cell"),
            group("cell_runtime"),
            Group(("band",), into="patchpnp.metrics.quality:Scoring", param="scoring"),
        ),
    ),
    Command(
        "lpips-weights",
        "patchpnp.metrics.lpips_weights:lpips_weights_command",
        "fetch torchvision's AlexNet weights for LPIPS (hash-checked) and write their status",
        (
            options(
                use("output", required=True, help="where the weights go (name with hash prefix)"),
                "mode",
                "source",
                "status",
                "generation",
            ),
        ),
    ),
    Command(
        "crosscheck",
        "patchpnp.tools.crosscheck:crosscheck_command",
        "our DiffPIR against deepinv's (needs the crosscheck extra), PSNR per method",
        (
            options(
                "data_option",
                "start",
                "physics",
                use("limit", default=4),
                use("output", help="write the per-image table as CSV"),
            ),
            Group(
                (
                    use("prior", required=True),
                    use("task", required=True, help="denoise or sr"),
                    use("config", help="take sigma_n and the DiffPIR settings from this config"),
                    "prior_name",
                    "task_params",
                    "solver_params",
                    use("seed", default=None, help="default: the config's seed (as infer), else 0"),
                ),
                into="patchpnp.tools.crosscheck:CheckedCell",
                param="cell",
            ),
            group("runtime"),
        ),
    ),
    Command(
        "tune",
        "patchpnp.inference.tune:tune_command",
        "sweep lambda (DiffPIR) or zeta (DPS) on tuning slices",
        (
            options(
                use("data_files", help="extracted tuning splits (tune.h5)"),
                use("output", required=True, help="CSV of PSNR per value, the choice marked"),
                "per_decade",
                "decades",
            ),
            Group(
                (
                    use("prior", required=True),
                    use("solver", required=True, choices=tuple(sorted(TUNED)), help=None),
                    use("task", required=True),
                    "task_params",
                    use("solver_params", required=True, default=None),
                    "seed",
                ),
                into="patchpnp.inference.cell:CellSpec",
                param="cell",
            ),
            group("prior_runtime", "batch_images"),
        ),
    ),
    Command(
        "solvers-table",
        "patchpnp.evaluation.solvers_table:solvers_table_command",
        "claim (b) across solvers: the comparison table and the per-solver verdicts",
        (
            options(
                use("metrics", help="metrics CSVs of the comparison's cells"),
                "table",
                "claims",
                "tuned_tables",
                "image_shape",
                "margin_db",
                use("seed", help="bootstrap seed"),
            ),
        ),
    ),
    Command(
        "ct-split",
        "patchpnp.data.ct:ct_split_command",
        "one split of snakemake padis's CT dataset: synthetic phantoms or DICOM",
        (
            options(
                use("output", required=True),
                "split",
                "ct_source",
                "image_size",
                use("images", default=0, help="images (phantoms / patients; 0: all)"),
                "first_image",
                use("seed", help="phantom seed"),
                "folder",
                "hu_max",
            ),
        ),
    ),
    Command(
        "padis-table",
        "patchpnp.evaluation.padis_table:padis_table_command",
        "snakemake padis: its table and the g_position / h_padis_vs_whole verdicts",
        (
            options(
                use("metrics", help="metrics CSVs of the padis cells and baselines"),
                "table",
                "claims",
                use("seed", help="bootstrap seed"),
                "synthetic",
            ),
        ),
    ),
    Command(
        "generalization-table",
        "patchpnp.evaluation.generalization:generalization_table_command",
        "snakemake generalization: its table, the e / f verdicts and its figure",
        (
            options(
                "groups",
                "table",
                "claims",
                "figure",
                use("seed", help="bootstrap seed"),
                "whole_prior",
                "patch_prior",
            ),
        ),
    ),
    Command(
        "padis-figure",
        "patchpnp.evaluation.figures:padis_figure_command",
        "one task of snakemake padis: truth, baseline, then each cell",
        (
            options(
                use("cells", help="cells (.h5)"),
                "labels",
                "baseline",
                "gt",
                "out_stem",
                "title",
                "index",
            ),
        ),
    ),
    Command(
        "uncertainty-table",
        "patchpnp.evaluation.uncertainty:uncertainty_command",
        "posterior cells: spread and coverage per cell",
        (options(use("cells", help="per-image tables of posterior cells (.csv)"), "table"),),
    ),
    Command(
        "seeds-table",
        "patchpnp.evaluation.seeds:seeds_command",
        "the claims and cells across training runs (snakemake seeds)",
        (
            options(
                "run_metrics",
                "training_seeds",
                "out_claims",
                "out_cells",
                "margin_db",
                "whole_prior",
                "patch_prior",
                use("seed", help="bootstrap seed"),
            ),
        ),
    ),
    Command(
        "uncertainty-figure",
        "patchpnp.evaluation.uncertainty:uncertainty_figure_command",
        "truth, sample mean, |error| and standard deviation, one row per posterior cell",
        (options(use("cells", help="posterior cells (.h5)"), "labels", "gt", "out_stem", "index"),),
    ),
    Command(
        "tune-summary",
        "patchpnp.inference.tune:summary_command",
        "collect tuned values into a config fragment",
        (options("tables", use("output", required=True)),),
    ),
    Command(
        "tables",
        "patchpnp.evaluation.tables:tables_command",
        "Table 1, the extended table, the claim verdicts and the resolution check",
        (
            options(
                use("metrics", help="metrics CSVs (results/metrics/... layout)"),
                "out_dir",
                "claims_metrics",
                use("seed", help="bootstrap seed"),
                "image_shape",
                "profiles",
                "paper_scale",
                "bars",
            ),
            group("claims"),
        ),
    ),
    Command(
        "profile",
        "patchpnp.evaluation.profiling:profile_command",
        "memory and time per denoiser call (fresh processes)",
        (
            options(
                use("output", required=True, help=_CSV_ROWS),
                use("prior", required=True, help="ema.pt of the profiled prior"),
                "eval_h5",
                "solvers",
                "image_size",
                use("sizes", help="patch sides and/or whole"),
                "image_sizes",
                "sweep_patch",
                "steps",
            ),
            group(
                "prior_runtime",
                use("threads", default=1),
                use(
                    "memory_budget",
                    default=None,
                    help="also profile patch_batch auto within this budget",
                ),
                use("calibration", help="the prior's memory model (patchpnp calibrate), for auto"),
            ),
        ),
    ),
    Command(
        "paper-profile",
        "patchpnp.evaluation.paper_scale:paper_profile_command",
        "memory and time at the paper's scale with a random-weight network (no data)",
        (
            options(
                use("output", required=True, help=_CSV_ROWS),
                "network_config",
                use("calibration", required=True, help="writes the network's memory model"),
                use("summary", help="writes the table and the targets as Markdown"),
                "memory_limit",
                "sampled_chunks",
                "seed",
            ),
            Group(
                (
                    "solvers",
                    use("image_sizes", required=True, default=None),
                    use("sizes", help="patch sides"),
                ),
                into="patchpnp.evaluation.paper_scale:ScaleGrid",
                param="grid",
            ),
            group("prior_runtime", use("memory_budget", help="patch_batch auto: MiB or '25%%'")),
        ),
    ),
    Command(
        "gpu-check",
        "patchpnp.evaluation.gpu_check:gpu_check_command",
        "every kind of GPU job once at a config's sizes, random weights; CUDA against CPU",
        (
            options(
                use("config", required=True, help="the config whose sizes are checked"),
                use("output", required=True, help="CSV, one row per job"),
                use("summary", required=True, help="the table and the verdict as Markdown"),
                use("steps", default=4, help="solver steps per cell"),
                "images",
                "tolerance_db",
                "threads",
            ),
        ),
    ),
    Command(
        "figure",
        "patchpnp.evaluation.figures:figure_command",
        "draw a figure (PNG and PDF)",
        (
            options(
                "kind",
                "inputs",
                "out_stem",
                "index",
                use("band", default=4, help="padding: outer band (px) of the boundary score"),
            ),
        ),
    ),
    Command(
        "mri-cell",
        "patchpnp.inference.mri_cell:mri_cell_command",
        "one multicoil MRI cell: a classical baseline or a diffusion solver",
        (
            options(
                use("data", help="MRI eval split (mri-extract)"),
                "recon_path",
                "metrics_path",
                "dataset",
                "lam_file",
                use("limit", **_MRI_SLICES),
                "seed",
            ),
            group("acquisition"),
            group("reconstruction", "lam", "size", "padding"),
            group(
                "prior_runtime",
                use("batch_images", default=12),
                use("patch_batch", help="tiles per network call (all: omit)"),
            ),
        ),
    ),
    Command(
        "mri-tune",
        "patchpnp.inference.mri_cell:mri_tune_command",
        "a classical MRI method's lam, or a solver's lam / zeta, over the tuning slices",
        (
            options(
                use("data", help="MRI tune split (mri-extract)"),
                use("output", required=True, help="the sweep (CSV)"),
                "lam_center",
                use("decades", default=2.0, help="half-width of the grid"),
                "points",
                use("limit", **_MRI_SLICES),
                "seed",
            ),
            group("acquisition"),
            group(
                "reconstruction",
                use("solver", help="diffusion: tunes lam / zeta"),
                use("prior", help="diffusion: ema.pt of a prior trained on complex images"),
            ),
            group("prior_runtime", use("batch_images", default=12)),
        ),
    ),
    Command(
        "mri-table",
        "patchpnp.evaluation.mri_table:mri_table_command",
        "the MRI table (CSV and Markdown with its checks) from the cells' metrics",
        (
            options(
                "metrics",
                use("output", required=True, help="writes <output>.csv and <output>.md"),
                "seed",
            ),
        ),
    ),
    Command(
        "calibrate",
        "patchpnp.inference.calibration:calibrate_command",
        "memory model of a prior's network on this device (patch_batch: auto)",
        (
            options(
                use("prior", required=True),
                use("output", required=True, help="the calibration (JSON)"),
                "device",
                "threads",
                "precision",
            ),
        ),
    ),
    Command(
        "results-doc",
        "patchpnp.evaluation.results_doc:results_doc_command",
        "docs/results.md: every measured table of a run in one dated document",
        (options("results_dir", use("output", required=True), "doc_configs"),),
    ),
    Command(
        "check-config",
        "patchpnp.pipeline.config:check_config_command",
        "validate a config file against the schema",
        (options("config_file"),),
    ),
)
COMMANDS: dict[str, Command] = {c.name: c for c in _COMMANDS}


def find_command(name: str) -> Command:
    """The command ``patchpnp <name>``; ValueError names the ones there are."""
    try:
        return COMMANDS[name]
    except KeyError:
        raise ValueError(f"the CLI has no command {name!r}; it has {sorted(COMMANDS)}") from None
