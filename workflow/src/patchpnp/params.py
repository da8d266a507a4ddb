"""The parameter names of every solver and task: what a config may set, what a solver
needs, and what tuning sweeps. Torch-free; the config checks, the plan, tuning and the
cross-check read them from here, and ``tests/test_params.py`` checks them against the
constructors in :mod:`patchpnp.solvers` and :mod:`patchpnp.physics`.
"""

from __future__ import annotations

STEPS = "steps"  # every solver's, set once per solver in the config
NOISE = "sigma_n"  # every task's measurement noise, in [0, 1] image units

# The U-Net's precision (training.precision, inference.precision): auto is bfloat16
# autocast where the hardware computes it natively (patchpnp.runtime.autocast_dtype).
PRECISIONS = ("auto", "float32", "bfloat16")
# LPIPS (metrics.lpips): auto, n/a without the weights; required: fail; off: not computed
# (patchpnp.metrics.quality.lpips_metric).
LPIPS_MODES = ("auto", "required", "off")
# Where a job computes (patchpnp.runtime.select_device): auto is the job's GPU, else the CPU.
DEVICES = ("auto", "cpu", "cuda")

# Per solver, the parameters a config may give for a task (besides steps), and those it must.
# deepinv's posterior-sampling solvers (patchpnp.solvers.deepinv_solvers), run on our
# levels and streams; each has one data-term weight (deepinv's lambda).
DEEPINV_SOLVERS = ("dinv_dps", "dinv_pigdm", "dinv_ilvr")
SOLVER_KEYS = {
    "dps": {"zeta", "sigma_start"},
    "diffpir": {"lam", "zeta", "sigma_start"},
    # PaDIS's solvers (docs/methods.md section 13): inner iterations per level.
    "padis_dps": {"zeta", "inner", "sigma_start"},
    "padis_langevin": {"zeta", "inner", "sigma_start"},
    **{name: {"weight", "sigma_start"} for name in DEEPINV_SOLVERS},
}
SOLVER_REQUIRED = {
    "dps": {"zeta"},
    "diffpir": {"lam", "zeta"},
    "padis_dps": {"zeta"},
    "padis_langevin": {"zeta"},
    **{name: {"weight"} for name in DEEPINV_SOLVERS},
}
# Our own solvers (patchpnp.solvers.SOLVERS), the others being deepinv's.
OUR_SOLVERS = tuple(name for name in SOLVER_KEYS if name not in DEEPINV_SOLVERS)
# The one parameter `snakemake tune` sweeps per solver (docs/methods.md section 8).
TUNED = {
    "diffpir": "lam",
    "dps": "zeta",
    "padis_dps": "zeta",
    "padis_langevin": "zeta",
    **{name: "weight" for name in DEEPINV_SOLVERS},
}

# Per task, the keys a config may give: the noise and the forward model's parameters.
TASK_KEYS = {
    "denoise": {NOISE},
    "sr": {NOISE, "factor", "kernel"},
    "deblur": {NOISE, "kernel", "sigma", "size"},
    "mri": {NOISE, "acceleration", "center_fraction", "mask"},
    # Parallel-beam CT (docs/methods.md section 14); angle_range in degrees.
    "ct": {NOISE, "views", "angle_range", "detectors"},
}
# Forward-model parameters that the code, not the config, sets.
TASK_INTERNAL = {"mri": {"seed"}, "ct": {"image_size"}}
# The mri task's k-space line masks (its key mask; patchpnp.physics.mri.line_mask).
MASK_TYPES = ("equispaced", "random")


# A task entry may name its forward model when the task's own name is not one (snakemake
# padis: ``ct20: {operator: ct, views: 20}``); without it the name is the operator's.
OPERATOR = "operator"


def operator_name(task: str, task_params: dict) -> str:
    """The forward model (a key of ``TASK_KEYS``) of task ``task`` with entry ``task_params``."""
    return task_params.get(OPERATOR, task)


def operator_params(task_params: dict) -> dict:
    """A task's config entry without the noise and the operator's name: the forward
    model's constructor arguments."""
    return {k: v for k, v in task_params.items() if k not in (NOISE, OPERATOR)}


def unknown_solver_params(solver: str, params: dict) -> list[str]:
    """The keys of ``params`` (steps included) that ``solver`` does not take."""
    return sorted(set(params) - SOLVER_KEYS[solver] - {STEPS})


def missing_solver_params(solver: str, params: dict) -> list[str]:
    """The keys ``solver`` needs that ``params`` (steps included) lacks."""
    return sorted((SOLVER_REQUIRED[solver] | {STEPS}) - set(params))
