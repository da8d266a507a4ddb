# Shared set-up: config validation, the plan of what to compute, input functions.
# The logic lives in the patchpnp package (patchpnp.pipeline.config, patchpnp.pipeline.plan) so it
# is unit-tested without Snakemake; this file only connects it to the rules.
import functools
import json
import os
from pathlib import Path

from snakemake.exceptions import WorkflowError

from patchpnp.atomic import OutputLocationError, check_writable_dir
from patchpnp.metrics.lpips_weights import (
    LPIPSWeightsError,
    ensure_weights,
    lpips_settings,
    status_generation,
)
from patchpnp.pipeline.config import ConfigError, validate_config
from patchpnp.data.fastmri import DataError
from patchpnp import layout
from patchpnp.layout import parse_size
from patchpnp.pipeline.plan import (
    GeneralizationPlan,
    MRIPlan,
    PadisPlan,
    Plan,
    ResolutionPlan,
    SeedsPlan,
    SolversPlan,
    UncertaintyPlan,
    tune_grid_options,
)
from patchpnp.pipeline.provenance import command_code
from patchpnp.prior.spec import resolve_mri_prior, resolve_prior

# The schema ships inside the package (workflow/schemas/config.schema.yaml links to it).
try:
    validate_config(config)
except ConfigError as err:
    raise WorkflowError(str(err))

# device: cuda where the jobs run on this machine, and it has no GPU: stop here,
# before any job, naming the key and what was found. On a cluster (an executor
# that submits jobs elsewhere) the GPU nodes decide, so nothing is checked here.
if config["device"] == "cuda" and workflow.local_exec:
    from patchpnp.runtime import DeviceError, select_device

    try:
        select_device("cuda", key="config key 'device'")
    except DeviceError as err:
        raise WorkflowError(str(err))

# Results go under results/ in the working directory; an unwritable location
# stops the workflow here rather than failing every job.
try:
    check_writable_dir("results")
except OutputLocationError as err:
    raise WorkflowError(str(err))

plan = Plan(config)
mri_plan = MRIPlan(plan)
solvers_plan = SolversPlan(plan)
uncertainty_plan = UncertaintyPlan(plan, solvers_plan)
resolution_plan = ResolutionPlan(plan)
seeds_plan = SeedsPlan(plan)
padis_plan = PadisPlan(plan)
generalization_plan = GeneralizationPlan(plan)
DATA = config["data"]
LOGS = layout.LOGS
INFER = config["inference"]
MRI = config["mri"]
SOLVERS = config["solvers"]
UNCERTAINTY = config["uncertainty"]
RESOLUTION = config["resolution"]
PADIS = config["padis"]


wildcard_constraints:
    **layout.WILDCARDS,


def checked(fn):
    """Turn data-listing errors (missing / empty fastMRI folders) into workflow errors."""

    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DataError as err:
            raise WorkflowError(str(err))

    return wrapper


# Listing the fastMRI folders now, before any job runs, makes a missing or
# empty folder (or too few validation volumes) stop the workflow at once.
checked(plan.split_files)()
for _dataset in [*plan.datasets, *plan.shift_datasets]:
    for _split in plan.splits(_dataset):
        checked(plan.volumes)(_dataset, _split)
# snakemake generalization: its shift shares no volume with the training splits, and
# each n_train fits the training splits it cuts (for fastMRI this reads the training
# volumes' headers: the main process only, once).
checked(generalization_plan.check_shift)()


@functools.cache
def generalization_train_counts():
    """Training slices per dataset of snakemake generalization's domains (checked)."""
    return checked(generalization_plan.check_sizes)()


if workflow.is_main_process:
    generalization_train_counts()


def generalization_prior_settings(prior):
    """A prior of snakemake generalization: the grid's, or PaDIS's position-aware one."""
    return resolve_prior(generalization_plan.prior_config(), prior)


def generalization_cell_options(wildcards):
    """A cell's inference options: the grid's, or for the position-aware prior the
    micro-batching of snakemake padis's cells (padis.patch_batch; no calibration)."""
    if wildcards.prior != generalization_plan.POSITION:
        return inference_options()
    return inference_options(patch_batch=PADIS.get("patch_batch") or "none")


def generalization_table_inputs(wildcards):
    """The cells the table reads; a config without a generalization section stops here."""
    if not generalization_plan.domains:
        raise WorkflowError(
            "config key 'generalization': absent or without domains, so snakemake "
            "generalization has nothing to run (config/README.md documents the section)"
        )
    return generalization_plan.table_inputs()


# LPIPS (config metrics.lpips): torchvision's AlexNet weights, fetched once by the
# local rule lpips_weights into resources/ (infer.smk). In mode required they must be
# had before any job runs: genuine in resources/ or torch hub's cache, or downloaded
# now. Only the main process checks: a cluster job re-reads this file and never
# downloads.
LPIPS, LPIPS_SOURCE = lpips_settings(config)
if LPIPS == "required" and workflow.is_main_process:
    try:
        ensure_weights(layout.LPIPS_WEIGHTS, source=LPIPS_SOURCE)
    except LPIPSWeightsError as err:
        raise WorkflowError(str(err))


def shard_volumes(wildcards):
    return [
        str(p)
        for p in plan.shard(wildcards.dataset, wildcards.split, int(wildcards.shard))
    ]


def split_shards(wildcards):
    n = plan.n_shards(wildcards.dataset, wildcards.split)
    return [
        layout.SHARD.format(
            dataset=wildcards.dataset, split=wildcards.split, shard=f"{i:04d}"
        )
        for i in range(n)
    ]


def prior_settings(name):
    return resolve_prior(config, name)


def mri_prior_settings(name):
    """A prior of ``priors`` as the MRI task trains it: on complex (2-channel) images."""
    return resolve_mri_prior(config, name)


def launcher(processes):
    """The command that starts training: plain, or torchrun for several processes."""
    if processes == 1:
        return "patchpnp"
    return f"torchrun --standalone --nproc-per-node {processes} -m patchpnp.cli"


def gpus_for(processes):
    """GPUs a job asks the scheduler for (none when the config pins the CPU)."""
    return 0 if config["device"] == "cpu" else processes


def inference_options(with_lpips=True, batch_images=None, patch_batch=None):
    """Command-line options shared by every inference job (posterior cells take no LPIPS;
    snakemake resolution's cells their own batch size; ``patch_batch``, when given,
    replaces inference.patch_batch: ``none`` for all tiles at once)."""
    inf = config["inference"]
    opts = (
        f"--batch-images {batch_images or inf['batch_images']} --seed {config['seed']}"
        f" --device {config['device']} --precision {inf['precision']}"
    )
    micro = inf.get("patch_batch") if patch_batch is None else patch_batch
    if micro and micro != "none":
        opts += f" --patch-batch {micro}"
    if micro == "auto":
        opts += f" --memory-budget {inf.get('memory_budget', '25%')}"
    if inf.get("limit"):
        opts += f" --limit {inf['limit']}"
    if inf.get("boundary_band"):
        opts += f" --band {inf['boundary_band']}"
    return f"{opts} {lpips_options()}" if with_lpips else opts


def workflow_path(path):
    """A file a config names: from the working directory where it exists there, else
    from the workflow's own folder (config/paper.yaml works from any directory)."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    return os.path.join(workflow.basedir, path)


def auto_batching(wildcards) -> bool:
    """Whether a cell sizes its micro-batches from a memory calibration."""
    return INFER.get("patch_batch") == "auto" and wildcards.size != "whole"


def calibration_input(wildcards):
    """A patch cell's memory calibration under patch_batch auto (nothing otherwise)."""
    return (
        [layout.CALIBRATION.format(prior=wildcards.prior)]
        if auto_batching(wildcards)
        else []
    )


def calibration_option(wildcards, input):
    """``--calibration FILE`` for a cell whose input holds a memory calibration."""
    return f"--calibration {input.calibration}" if input.calibration else ""


def lpips_input():
    """What an inference cell waits for: the LPIPS status (nothing when LPIPS is off)."""
    return [] if LPIPS == "off" else [layout.LPIPS_STATUS]


def lpips_options():
    """The cell's LPIPS options: always the workflow's own copy of the weights, never
    a machine's torch hub cache, so the cell's LPIPS does not depend on the machine."""
    if LPIPS == "off":
        return "--lpips-mode off"
    return f"--lpips-mode {LPIPS} --lpips-weights {layout.LPIPS_WEIGHTS}"


def lpips_note():
    """One line for the end of a run when LPIPS came out n/a for want of the weights."""
    try:
        status = json.loads(Path(layout.LPIPS_STATUS).read_text())
    except (OSError, ValueError):
        return ""
    if LPIPS == "off" or status.get("available", True):
        return ""
    return (
        f"patchpnp: LPIPS is n/a: {status.get('reason')}. Fix: {status.get('fix')}; "
        f"{status.get('then', 'then rerun')} ({layout.LPIPS_STATUS})."
    )


# -- multicoil MRI (mri.smk) --
def mri_shards(wildcards):
    n = plan.n_shards(wildcards.dataset, wildcards.split)
    return [
        layout.MRI_SHARD.format(
            dataset=wildcards.dataset, split=wildcards.split, shard=f"{i:04d}"
        )
        for i in range(n)
    ]


def mri_acquisition_options(wildcards):
    """The acquisition of a cell: mask, acceleration, centre fraction, noise, CG."""
    return (
        f"--mask {wildcards.mask} --acceleration {wildcards.acceleration}"
        f" --center-fraction {mri_plan.center_fraction(wildcards.acceleration)}"
        f" --sigma-n {MRI['sigma_n']} --cg-iters {MRI['cg_iters']} --seed {config['seed']}"
        f" --batch-images {MRI['batch_images']}"
        + (f" --limit {MRI['limit']}" if MRI.get("limit") else "")
    )


# -- PaDIS as a system (padis.smk) --
def padis_prior_settings(domain, prior):
    """A prior of snakemake padis as trained on ``domain``'s images."""
    return resolve_prior(padis_plan.prior_config(domain), prior)


def padis_ct_inputs(wildcards):
    """What a CT split is made from (a missing DICOM folder stops the workflow)."""
    return checked(padis_plan.ct_inputs)(wildcards)


# Images per solver batch of snakemake padis's cells and tunings.
PADIS_BATCH_IMAGES = PADIS.get("batch_images", INFER["batch_images"])


def padis_options():
    """Command-line options of snakemake padis's cells: its image count and batch."""
    inf = config["inference"]
    opts = (
        f"--batch-images {PADIS_BATCH_IMAGES}"
        f" --limit {PADIS['n_eval']} --seed {config['seed']}"
        f" --device {config['device']} --precision {inf['precision']}"
    )
    if PADIS.get("patch_batch"):
        opts += f" --patch-batch {PADIS['patch_batch']}"
    return f"{opts} {lpips_options()}"
