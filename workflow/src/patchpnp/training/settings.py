"""Training precision: bfloat16 autocast where the hardware computes it natively.

The settings themselves (merging, hashing, comparing) live in the torch-free
:mod:`patchpnp.training.spec`; the network they build and loading a trained prior,
in :mod:`patchpnp.prior.loading`; the device, in :mod:`patchpnp.runtime`.
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "float32", "bfloat16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX), where
    oneDNN's bf16 convolutions beat float32 ones; elsewhere bf16 is emulated and slower."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def training_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of the U-Net in training (None: float32 throughout).

    ``auto`` takes bfloat16 where the hardware computes it natively (a CUDA GPU
    that supports it, a CPU with AVX512-BF16 or AMX), float32 elsewhere. The
    preconditioning, the loss, the weights and Adam stay float32 either way, as
    in EDM2's mixed-precision training; inference runs in float32.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"training.precision must be one of {PRECISIONS}, not {precision!r}")
    if precision == "float32":
        return None
    if device.type == "cuda":
        native = torch.cuda.is_bf16_supported()
        if precision == "bfloat16" and not native:
            raise RuntimeError(f"training.precision bfloat16: {device} does not support bfloat16")
    else:
        native = cpu_has_native_bf16()
    return torch.bfloat16 if precision == "bfloat16" or native else None
