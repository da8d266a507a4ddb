"""Where and how a job computes: the device, the CPU threads, and seeded generators.

Shared by training, inference, tuning, profiling and the tools, so that every
command picks its device and draws its random numbers the same way.
"""

from __future__ import annotations

import numpy as np
import torch


def select_device(device: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto``: the GPU this job was given (``CUDA_VISIBLE_DEVICES``), else the CPU.

    Under torchrun each process takes the GPU of its local rank.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but no CUDA GPU is visible")
    index = 0 if local_rank is None else local_rank % torch.cuda.device_count()
    return torch.device("cuda", index)


def use_threads(threads: int | None) -> None:
    """Give torch ``threads`` CPU threads (None: leave torch's default)."""
    if threads:
        torch.set_num_threads(int(threads))


def keyed_generator(*keys: int) -> torch.Generator:
    """A CPU torch generator that depends on the non-negative integers ``keys`` only.

    Training's batches, the solvers' noise streams, the measurement noise and the
    one-call check all draw from these, so a result never depends on what else
    ran in the process before it.
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
