"""A job that runs out of GPU memory stops with one line: its rule and the knob to turn.

``torch.cuda.OutOfMemoryError`` carries a paragraph about the allocator; what a
user needs is which job it was and which config key makes the job smaller. The
rules export their name to the command (``PATCHPNP_RULE={rule}`` in front of
``patchpnp``, so a rule derived with ``use rule`` names itself), and
:data:`KNOBS` says, per command, what to lower. ``tests/test_gpu_paths.py``
checks that every rule asking for a GPU exports its name and runs a command
listed here. Torch-free, like :mod:`patchpnp.errors`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = ["KNOBS", "RULE_VARIABLE", "is_out_of_memory", "out_of_memory_message"]

# The environment variable a rule sets to its own name for the command it runs.
RULE_VARIABLE = "PATCHPNP_RULE"

_INFERENCE = (
    "inference.patch_batch (fewer tiles per network call; or auto with a smaller "
    "inference.memory_budget) or inference.batch_images"
)
_MRI = "mri.patch_batch (fewer tiles per network call) or mri.batch_images"

# What to lower, per ``patchpnp`` command that runs on a GPU.
KNOBS: dict[str, str] = {
    "train": (
        "training.batch_size (a prior's own priors.<name>.training.batch_size), or split "
        "each batch over more GPUs with training.processes"
    ),
    "infer": _INFERENCE,
    "tune": _INFERENCE,
    "posterior": _INFERENCE,
    "calibrate": "inference.patch_batch (a fixed number needs no calibration)",
    "denoise-check": "inference.batch_images (the images per network call)",
    "mri-cell": _MRI,
    "mri-tune": _MRI,
    "profile": "profile.image_sizes (the largest whole image) or profile.sizes",
    "paper-profile": "paper_profile.image_sizes (the largest) or paper_profile.memory_budget",
    "gpu-check": "nothing in the config: this GPU is smaller than the paper's settings need",
}


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is torch's CUDA out-of-memory error (without importing torch)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(err, torch.cuda.OutOfMemoryError)


def _what_failed(err: BaseException) -> str:
    """The allocation that failed, from torch's message, in a few words."""
    text = " ".join(str(err).split())
    wanted = re.search(r"[Tt]ried to allocate ([\d.]+ [KMGT]?i?B)", text)
    capacity = re.search(r"GPU (\d+) has a total capacity of ([\d.]+ [KMGT]?i?B)", text)
    if wanted and capacity:
        return f"tried to allocate {wanted[1]} on GPU {capacity[1]} of {capacity[2]}"
    if wanted:
        return f"tried to allocate {wanted[1]}"
    return text.split(". ")[0][:160] or "CUDA out of memory"


def out_of_memory_message(
    command: str, err: BaseException, environ: Mapping[str, str] = os.environ
) -> str:
    """One line: the rule (or command), the failed allocation, and the knob."""
    rule = environ.get(RULE_VARIABLE)
    where = f"rule {rule}" if rule else f"patchpnp {command}"
    knob = KNOBS.get(command, "the job's batch or patch settings")
    return f"{where} ran out of GPU memory ({_what_failed(err)}); lower {knob}"
