"""Where every result lives: the one place that maps a grid cell to its paths and back.

The rules take their output patterns from here (Snakemake fills the ``{wildcards}``),
the plan expands them for every cell of a config, aggregation parses a metrics path
back into its cell, and tuning reads its prior, solver and task from its path. A
cell's inference size is ``whole`` or the patch side P, written ``p<P>`` in paths.
Whole-image cells have padding ``none``; patch cells one of :data:`PADDINGS`.
Torch-free.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from patchpnp.errors import PatchpnpError

RESULTS = "results"
LOGS = f"{RESULTS}/logs"
WHOLE = "whole"
NO_PADDING = "none"  # the padding of a whole-image cell
PADDINGS = ("zeros", "reflect", "replicate")
BASELINE = "baseline"  # the measurement's own reconstruction, in place of a prior
# The extracted splits. ``resolution``: snakemake resolution's evaluation slices, the
# grid's ``eval`` ones and then more (config resolution.n_eval).
RESOLUTION_SPLIT = "resolution"
SPLITS = ("train", "eval", "tune", RESOLUTION_SPLIT)
CENTRAL_SLICE_SPLITS = ("eval", "tune", RESOLUTION_SPLIT)  # one slice per volume
# The demo volumes' contrasts (patchpnp.data.demo): "mixed", T1 or T2-like per volume;
# "flair", every volume FLAIR-like, a contrast no mixed volume has (a distribution shift).
DEMO_CONTRASTS = ("mixed", "flair")

# -- path patterns (Snakemake wildcards) ---------------------------------------------------------
DEMO_ROOT = f"{RESULTS}/data/fastmri_demo"
SPLIT = f"{RESULTS}/data/{{dataset}}/{{split}}.h5"
SHARD = f"{RESULTS}/data/{{dataset}}/shards/{{split}}_{{shard}}.h5"
PRIOR_DIR = f"{RESULTS}/priors/{{prior}}"
PRIOR = f"{PRIOR_DIR}/ema.pt"
_CELL = "{dataset}/{prior}/{solver}/{task}/{size}-{padding}"


def grid_patterns(root: str) -> tuple[str, str, str, str]:
    """The grid's layout under ``root``: a cell's reconstruction and metrics, then a
    measurement baseline's. The grid lives under results/; the targets that rerun its
    cells elsewhere (snakemake solvers, snakemake resolution) under their own folders."""
    return (
        f"{root}/infer/{_CELL}.h5",
        f"{root}/metrics/{_CELL}.csv",
        f"{root}/infer/{{dataset}}/{BASELINE}/{{task}}.h5",
        f"{root}/metrics/{{dataset}}/{BASELINE}/{{task}}.csv",
    )


CELL_RECON, CELL_METRICS, BASELINE_RECON, BASELINE_METRICS = grid_patterns(RESULTS)
TUNE = f"{RESULTS}/tune/{{prior}}/{{solver}}/{{task}}.csv"
TUNE_CHOSEN = f"{RESULTS}/tune/chosen.yaml"
PROFILE = f"{RESULTS}/profile/{{solver}}.csv"
CALIBRATION = f"{RESULTS}/calibration/{{prior}}.json"  # memory model for patch_batch auto
# The data-free profile at the paper's scale (random weights; snakemake paper_profile).
PAPER_SCALE = f"{RESULTS}/profile/paper_scale.csv"
PAPER_SCALE_SUMMARY = f"{RESULTS}/profile/paper_scale.md"
PAPER_SCALE_CALIBRATION = f"{RESULTS}/profile/paper_scale_calibration.json"
# Every kind of GPU job once at the paper's sizes (snakemake gpu_check; not in all).
GPU_CHECK = f"{RESULTS}/gpu_check/gpu_check.csv"
GPU_CHECK_SUMMARY = f"{RESULTS}/gpu_check/gpu_check.md"
TABLES = f"{RESULTS}/tables"
FIGURES = f"{RESULTS}/figures"

# -- multicoil MRI reconstruction (snakemake mri; docs/methods.md section 11) -------------------
MRI = f"{RESULTS}/mri"
MRI_SPLIT = f"{MRI}/data/{{dataset}}/{{split}}.h5"
MRI_SHARD = f"{MRI}/data/{{dataset}}/shards/{{split}}_{{shard}}.h5"
MRI_PRIOR_DIR = f"{MRI}/priors/{{prior}}"
MRI_PRIOR = f"{MRI_PRIOR_DIR}/ema.pt"
# One acquisition: a dataset under one mask and acceleration, e.g. .../equispaced_x4.
_MRI_ACQ = "{dataset}/{mask}_x{acceleration}"
MRI_CELL = f"{MRI}/cells/{_MRI_ACQ}/{{prior}}/{{solver}}/{{size}}"  # .h5 / .csv
MRI_CLASSICAL = f"{MRI}/cells/{_MRI_ACQ}/classical/{{method}}"  # .h5 / .csv
MRI_TUNE = f"{MRI}/tune/{_MRI_ACQ}/{{method}}.csv"
MRI_TUNE_SOLVER = f"{MRI}/tune/{_MRI_ACQ}/{{prior}}/{{solver}}.csv"  # snakemake mri_tune
MRI_TABLE = f"{TABLES}/mri"  # .csv / .md
# The classical reconstructions of an acquisition (the {method} of MRI_CLASSICAL).
MRI_CLASSICAL_METHODS = ("zero_filled", "sense", "cs_wavelet")
MRI_DIFFUSION = "diffusion"  # a diffusion solver around a prior (the MRI_CELL cells)
MRI_METHODS = (*MRI_CLASSICAL_METHODS, MRI_DIFFUSION)  # every MRI cell's method
MRI_FIGURE = f"{FIGURES}/mri"  # .png / .pdf

# -- claim (b) across solvers (snakemake solvers; docs/methods.md section 12) ---------------------
# deepinv's solvers' cells, in the grid's cell layout under their own folder (our solvers'
# cells are the grid's own); their weights tuned on the tuning slices.
SOLVERS_DIR = f"{RESULTS}/solvers"
SOLVERS_RECON, SOLVERS_METRICS = grid_patterns(SOLVERS_DIR)[:2]
SOLVERS_TUNE = f"{SOLVERS_DIR}/tune/{{prior}}/{{solver}}/{{task}}.csv"
SOLVERS_TABLE = f"{TABLES}/solvers"  # .csv / .md
SOLVERS_CLAIMS = f"{TABLES}/solvers_claims"  # .csv / .md: claim (b) per solver

# -- posterior samples (snakemake uncertainty; docs/methods.md section 12) ------------------------
UNCERTAINTY_DIR = f"{RESULTS}/uncertainty"
UNCERTAINTY_CELL = f"{UNCERTAINTY_DIR}/{_CELL}"  # .h5 (mean, sd) / .csv (per image)
UNCERTAINTY_TABLE = f"{TABLES}/uncertainty"  # .csv / .md
UNCERTAINTY_FIGURE = f"{FIGURES}/uncertainty_{{task}}"  # .png / .pdf

# -- the grid on more evaluation slices (snakemake resolution) --------------------------------
# The grid's cells and baselines in the grid's layout under their own folder, on the
# resolution split; its tables (Table 1, extended, claims, resolution) beside them.
RESOLUTION_DIR = f"{RESULTS}/resolution"
(
    RESOLUTION_RECON,
    RESOLUTION_METRICS,
    RESOLUTION_BASELINE_RECON,
    RESOLUTION_BASELINE_METRICS,
) = grid_patterns(RESOLUTION_DIR)
RESOLUTION_TABLES = f"{RESOLUTION_DIR}/tables"
# What `patchpnp tables` writes into a tables folder (TABLES, RESOLUTION_TABLES, each
# seed run's): file stems, each as .csv and .md (Table 1 also .tex).
TABLE1_STEM = "table1"
EXTENDED_STEM = "extended"
CLAIMS_STEM = "claims"
RESOLUTION_STEM = "resolution"

# -- the grid under more training seeds (snakemake seeds) --------------------------------------
# Run k (k = 1 .. seeds.extra) retrains every prior with training seed ``seed + k`` (same
# data, schedule and steps) and reruns the grid's cells on them, in the grid's layout
# under its own folder; the measurement baselines are the grid's (no prior). Run 0 is
# the grid itself. The cross-run tables go beside the grid's.
SEEDS_DIR = f"{RESULTS}/seeds"
SEED_RUN = f"{SEEDS_DIR}/run{{run}}"
SEED_PRIOR_DIR = f"{SEED_RUN}/priors/{{prior}}"
SEED_PRIOR = f"{SEED_PRIOR_DIR}/ema.pt"
SEED_RECON, SEED_METRICS, _, _ = grid_patterns(SEED_RUN)
SEED_TABLES = f"{SEED_RUN}/tables"
SEEDS_CLAIMS = f"{TABLES}/seeds_claims"  # .csv / .md
SEEDS_CELLS = f"{TABLES}/seeds_cells"  # .csv / .md


def seed_run(run: int) -> str:
    """The folder of training run ``run`` (>= 1; run 0 is the grid under results/)."""
    if int(run) < 1:
        raise LayoutError(f"training run {run}: run 0 is the grid itself; extra runs start at 1")
    return SEED_RUN.format(run=int(run))


# -- PaDIS as a system (snakemake padis; docs/methods.md sections 13 and 14) ---------------------
# Its CT data (one split file per split of the CT dataset), the priors it trains (per
# domain: mri, on the grid's training splits; ct, on the CT training split) and its
# cells and measurement baselines in the grid's cell layout under its own folder.
PADIS_DIR = f"{RESULTS}/padis"
PADIS_SPLIT = f"{PADIS_DIR}/data/{{dataset}}/{{split}}.h5"
PADIS_PRIOR_DIR = f"{PADIS_DIR}/priors/{{domain}}/{{prior}}"
PADIS_PRIOR = f"{PADIS_PRIOR_DIR}/ema.pt"
PADIS_RECON, PADIS_METRICS, PADIS_BASELINE_RECON, PADIS_BASELINE_METRICS = grid_patterns(PADIS_DIR)
# The step size each padis cell runs with, tuned on its domain's tuning images (padis.tune)
PADIS_TUNE = f"{PADIS_DIR}/tune/{{dataset}}/{{prior}}/{{solver}}/{{task}}.csv"
PADIS_TABLE = f"{TABLES}/padis"  # .csv / .md
PADIS_CLAIMS = f"{TABLES}/padis_claims"  # .csv / .md: g_position and h_padis_vs_whole
PADIS_FIGURE = f"{FIGURES}/padis_{{task}}"  # .png / .pdf
# The two domains of snakemake padis: MRI slices (deblurring, SR) and CT images.
PADIS_DOMAINS = ("mri", "ct")


# -- data efficiency and distribution shift (snakemake generalization; docs/methods.md
# section 15) ------------------------------------------------------------------------------------
# Per training domain ({trained_on}) and training-set size ({n_train}: slices per dataset,
# or all): the training subsets (the first n of a fixed permutation of a dataset's training
# split), the priors trained on them and their cells in the grid's cell layout.
GENERALIZATION_DIR = f"{RESULTS}/generalization"
GENERALIZATION_TRAIN = f"{GENERALIZATION_DIR}/data/{{dataset}}/train_n{{n_train}}.h5"
GENERALIZATION_PRIOR_DIR = f"{GENERALIZATION_DIR}/priors/{{trained_on}}/n{{n_train}}/{{prior}}"
GENERALIZATION_PRIOR = f"{GENERALIZATION_PRIOR_DIR}/ema.pt"
GENERALIZATION_RUN = f"{GENERALIZATION_DIR}/{{trained_on}}/n{{n_train}}"
GENERALIZATION_RECON, GENERALIZATION_METRICS, _, _ = grid_patterns(GENERALIZATION_RUN)
ALL_TRAINING = "all"  # an n_train of every training slice
GENERALIZATION_TABLE = f"{TABLES}/generalization"  # .csv / .md
GENERALIZATION_CLAIMS = f"{TABLES}/generalization_claims"  # .csv / .md: e and f
GENERALIZATION_FIGURE = f"{FIGURES}/generalization"  # .png / .pdf


# -- inputs fetched once, outside results/ (git-ignored) -----------------------------------------
RESOURCES = "resources"
# torchvision's ImageNet AlexNet weights for LPIPS under torchvision's own file name,
# whose sha256 prefix (7be5be79) is the hash check, and the status the rule
# lpips_weights always writes beside them (patchpnp.metrics.lpips_weights).
LPIPS_WEIGHTS = f"{RESOURCES}/lpips/alexnet-owt-7be5be79.pth"
LPIPS_STATUS = f"{RESOURCES}/lpips/status.json"

# What each wildcard may hold: the rules' constraints, and what the parsers accept.
WILDCARDS = {
    "dataset": r"[a-z][a-z0-9_]*",
    "split": "|".join(SPLITS),
    "shard": r"\d+",
    "prior": r"[a-z][a-z0-9_]*",
    "solver": r"[a-z][a-z0-9_]*",
    "task": r"[a-z][a-z0-9_]*",
    "size": rf"{WHOLE}|p[1-9]\d*",
    "padding": "|".join((NO_PADDING, *PADDINGS)),
    "mask": "equispaced|random",
    "acceleration": r"[1-9]\d*",
    "method": "|".join(MRI_CLASSICAL_METHODS),
    "run": r"[1-9]\d*",
    "domain": "|".join(PADIS_DOMAINS),
    "trained_on": r"[a-z][a-z0-9_]*",
    "n_train": rf"[1-9]\d*|{ALL_TRAINING}",
}


class LayoutError(PatchpnpError, ValueError):
    """A path or cell that does not fit the results layout; the message shows the layout."""


def size_tag(size) -> str:
    """``whole`` or ``p<P>``: the inference size as it appears in paths."""
    return WHOLE if str(size) == WHOLE else f"p{int(size)}"


def parse_size(tag: str):
    """The inverse of :func:`size_tag`: ``whole`` or the patch side as an int."""
    if tag == WHOLE:
        return WHOLE
    if re.fullmatch(r"p[1-9]\d*", tag) is None:
        raise LayoutError(f"inference size tag {tag!r}: expected 'whole' or p<P>, e.g. p32")
    return int(tag[1:])


@dataclass(frozen=True)
class Cell:
    """One job of the grid. ``size`` is ``whole`` or the patch side P (an int)."""

    dataset: str
    prior: str
    solver: str
    task: str
    size: str | int
    padding: str

    def __post_init__(self):
        whole = self.size == WHOLE
        if whole != (self.padding == NO_PADDING) or (not whole and self.padding not in PADDINGS):
            raise LayoutError(
                f"cell {self}: a whole-image cell has padding '{NO_PADDING}', "
                f"a patch cell one of {PADDINGS}"
            )

    def wildcards(self) -> dict[str, str]:
        return {
            "dataset": self.dataset,
            "prior": self.prior,
            "solver": self.solver,
            "task": self.task,
            "size": size_tag(self.size),
            "padding": self.padding,
        }

    @property
    def recon(self) -> str:
        return CELL_RECON.format(**self.wildcards())

    @property
    def metrics(self) -> str:
        return CELL_METRICS.format(**self.wildcards())


def baseline_files(dataset: str, task: str) -> tuple[str, str]:
    """The measurement baseline's reconstruction and metrics files."""
    return (
        BASELINE_RECON.format(dataset=dataset, task=task),
        BASELINE_METRICS.format(dataset=dataset, task=task),
    )


def _regex(pattern: str) -> re.Pattern:
    """A regex matching the end of a path written by ``pattern`` (relative to results/).

    Each wildcard matches any one path component (the size stops at the dash), so a
    path of the right shape with a bad value is reported for its value.
    """
    body = re.escape(pattern.removeprefix(f"{RESULTS}/"))
    for name in WILDCARDS:
        allowed = "[^/-]+" if name == "size" else "[^/]+"
        body = body.replace(re.escape(f"{{{name}}}"), f"(?P<{name}>{allowed})")
    return re.compile(rf"(?:^|/){body}$")


_CELL_METRICS_RE = _regex(CELL_METRICS)
_BASELINE_METRICS_RE = _regex(BASELINE_METRICS)
_TUNE_RE = _regex(TUNE)
_UNCERTAINTY_RE = _regex(f"{UNCERTAINTY_CELL}.csv")

METRICS_LAYOUT = (
    f"{CELL_METRICS} (size {WHOLE} with padding {NO_PADDING}, or p<P> with padding "
    f"{'|'.join(PADDINGS)}) or {BASELINE_METRICS}"
)


def parse_metrics_path(path: str | os.PathLike) -> dict[str, str] | Cell:
    """The cell of a metrics file, from its path alone: a :class:`Cell`, or for a
    baseline file ``{"dataset", "task"}``."""
    text = Path(path).as_posix()
    if m := _BASELINE_METRICS_RE.search(text):
        return m.groupdict()
    m = _CELL_METRICS_RE.search(text)
    if m is None or m["prior"] == BASELINE:
        raise LayoutError(f"{path}: path does not match the layout {METRICS_LAYOUT}")
    wc = m.groupdict()
    try:
        return Cell(**{**wc, "size": parse_size(wc["size"])})
    except LayoutError:
        raise LayoutError(
            f"{path}: size-padding '{wc['size']}-{wc['padding']}' does not match {METRICS_LAYOUT}"
        ) from None


def parse_uncertainty_path(path: str | os.PathLike) -> Cell:
    """The cell of a posterior cell's per-image table (:data:`UNCERTAINTY_CELL` ``.csv``)."""
    m = _UNCERTAINTY_RE.search(Path(path).as_posix())
    if m is None:
        raise LayoutError(f"{path}: a posterior cell's table must match {UNCERTAINTY_CELL}.csv")
    wc = m.groupdict()
    return Cell(**{**wc, "size": parse_size(wc["size"])})


def parse_tune_path(path: str | os.PathLike) -> dict[str, str]:
    """``{"prior", "solver", "task"}`` of a tuning table, from its path."""
    m = _TUNE_RE.search(Path(path).as_posix())
    if m is None:
        raise LayoutError(f"{path}: a tuning table's path must match {TUNE}")
    return m.groupdict()
