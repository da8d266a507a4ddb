"""Where and how a job computes: the device, the CPU threads, the precision, and
seeded generators.

Shared by training, inference, tuning, profiling and the tools, so that every
command picks its device, its precision and draws its random numbers the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from patchpnp.errors import PatchpnpError
from patchpnp.params import DEVICES, PRECISIONS


class DeviceError(PatchpnpError, RuntimeError):
    """The device a job was asked to use is not on this machine."""


def cuda_found() -> str:
    """What this process sees of CUDA, in words, for error messages."""
    import os

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if torch.version.cuda is None:
        seen = f"torch {torch.__version__} is a CPU-only build"
    elif not torch.cuda.is_available():
        seen = f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA GPU"
    else:
        seen = f"torch {torch.__version__} sees {torch.cuda.device_count()} CUDA GPU(s)"
    return seen if visible is None else f"{seen}; CUDA_VISIBLE_DEVICES={visible!r}"


def select_device(
    device: str = "auto", local_rank: int | None = None, key: str = "device"
) -> torch.device:
    """``auto``: the GPU this job was given (``CUDA_VISIBLE_DEVICES``), else the CPU.

    Under torchrun each process takes the GPU of its local rank (``LOCAL_RANK``).
    ``cuda`` on a machine without a GPU raises :class:`DeviceError` naming ``key``
    and what was found.
    """
    if device not in DEVICES:
        raise DeviceError(f"{key} must be auto, cpu or cuda, not {device!r}")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"{key} 'cuda' asks for a CUDA GPU, but {cuda_found()}; "
            "set it to auto (the GPU where there is one, else the CPU) or cpu"
        )
    index = 0 if local_rank is None else local_rank % torch.cuda.device_count()
    return torch.device("cuda", index)


def start_processes(device: str = "auto") -> tuple[int, int, torch.device]:
    """``(rank, world size, device)`` of this process: one process, or one of torchrun's.

    Under torchrun (``WORLD_SIZE`` > 1) each process takes the GPU of its local rank
    and makes it the current device before the process group starts, since NCCL
    binds a process's communicator to the current device (without it every rank
    would talk through GPU 0); the group is NCCL's on GPUs, gloo's on the CPU.
    """
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    dev = select_device(device, local_rank if world > 1 else None)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            if dev.type == "cuda":
                torch.cuda.set_device(dev)
                dist.init_process_group("nccl", device_id=dev)
            else:
                dist.init_process_group("gloo")
    return rank, world, dev


def use_threads(threads: int | None) -> None:
    """Give torch ``threads`` CPU threads (None: leave torch's default)."""
    if threads:
        torch.set_num_threads(int(threads))


@dataclass(frozen=True)
class Runtime:
    """Where and how a job computes (the command line's ``--device``, ``--threads``,
    ``--precision``, ``--batch-images``, ``--patch-batch``, ``--memory-budget`` and
    ``--calibration``); a command reads the fields it uses. Apart from ``precision``
    these change the cost of a job, not its numbers.

    ``device``: :func:`select_device`'s; ``threads``: torch CPU threads (None: torch's
    default); ``precision``: the U-Net's autocast (:func:`autocast_dtype`);
    ``batch_images``: images per solve; ``patch_batch``: tiles per network call, None for
    all at once, or ``auto``: the largest micro-batch within ``memory_budget`` (MiB, or a
    percentage of the whole images' working memory) by the memory model in
    ``calibration`` (:mod:`patchpnp.patching.micro_batch`).
    """

    device: str = "auto"
    threads: int | None = None
    precision: str = "float32"
    batch_images: int = 8
    patch_batch: int | str | None = None
    memory_budget: float | str | None = "25%"
    calibration: str | Path | None = None

    def start(self) -> torch.device:
        """Give torch the threads and return the device (:func:`select_device`)."""
        use_threads(self.threads)
        return select_device(self.device)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), where
    oneDNN's bf16 convolutions beat float32 ones; elsewhere bf16 is emulated and slower."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def autocast_dtype(
    precision: str, device: torch.device, key: str = "training.precision"
) -> torch.dtype | None:
    """The autocast dtype of the U-Net (None: float32 throughout), one policy for
    training (``training.precision``) and inference (``inference.precision``).

    ``auto`` takes bfloat16 where the hardware computes it natively (a CUDA GPU
    that supports it, a CPU with AVX512-BF16 or AMX), float32 elsewhere. The
    preconditioning (and in training the loss, the weights and Adam) stay float32
    either way, as in EDM2's mixed-precision training. Errors name ``key``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"{key} must be one of {PRECISIONS}, not {precision!r}")
    if precision == "float32":
        return None
    device = torch.device(device)
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        if precision == "bfloat16" and not native:
            raise RuntimeError(f"{key} bfloat16: {device} does not support bfloat16")
    else:
        native = cpu_has_native_bf16()
    return torch.bfloat16 if precision == "bfloat16" or native else None


def keyed_generator(*keys: int) -> torch.Generator:
    """A CPU torch generator that depends on the non-negative integers ``keys`` only.

    Training's batches, the solvers' noise streams, the measurement noise and the
    one-call check all draw from these, so a result never depends on what else
    ran in the process before it.
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


# Keyed draws. Every draw from a generator in the package goes through the
# functions below (tests/test_keyed_draws.py fails on any other), because PyTorch
# draws only on the generator's own device: a CPU generator asked for a CUDA tensor
# raises "Expected a 'cuda' device type for generator". Drawing on the generator's
# device and then moving the tensor also keeps the numbers independent of where
# the job computes, so a CUDA solve sees the same noise as a CPU one.


def _on_generator(sampler, *args, generator: torch.Generator | None, device=None, **kwargs):
    """``sampler(*args)`` drawn on ``generator``'s device, then moved to ``device``
    (None: left where it was drawn). Without a generator (torch's global stream)
    the draw happens on ``device`` directly."""
    if generator is None:
        return sampler(*args, device=device, **kwargs)
    drawn = sampler(*args, generator=generator, device=generator.device, **kwargs)
    return drawn if device is None else drawn.to(device)


def keyed_randn(
    shape, generator: torch.Generator | None, device=None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Standard normal numbers of ``shape`` from ``generator``, on ``device``."""
    return _on_generator(torch.randn, tuple(shape), generator=generator, device=device, dtype=dtype)


def keyed_rand(
    shape, generator: torch.Generator | None, device=None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Uniform numbers in [0, 1) of ``shape`` from ``generator``, on ``device``."""
    return _on_generator(torch.rand, tuple(shape), generator=generator, device=device, dtype=dtype)


def keyed_randint(high: int, shape, generator: torch.Generator | None, device=None) -> torch.Tensor:
    """Integers uniform in ``[0, high)`` of ``shape`` from ``generator``, on ``device``."""
    return _on_generator(torch.randint, int(high), tuple(shape), generator=generator, device=device)


def keyed_choice(weights: torch.Tensor, generator: torch.Generator | None) -> int:
    """One index drawn with probability proportional to ``weights`` (non-negative).

    By the inverse of the cumulative weights at one uniform draw, not
    ``torch.multinomial``, which draws on its input's device: the weights then stay
    on the CPU whatever device the generator is on.
    """
    cdf = torch.cumsum(weights.detach().cpu().to(torch.float64), 0)
    u = float(keyed_rand((1,), generator, "cpu", torch.float64)) * float(cdf[-1])
    return min(
        int(torch.searchsorted(cdf, torch.tensor([u], dtype=torch.float64), right=True)),
        len(cdf) - 1,
    )


def keyed_randn_per_sample(
    shape, generators, device=None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Normal noise ``[len(generators), *shape]`` in which sample ``b`` draws only from
    ``generators[b]``, so its noise does not depend on which images share its batch."""
    return torch.stack([keyed_randn(shape, g, device, dtype) for g in generators])
