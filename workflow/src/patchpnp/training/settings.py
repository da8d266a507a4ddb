"""The network a prior's settings build, device selection, and loading a trained prior.

The settings themselves (merging, hashing, comparing) live in
:mod:`patchpnp.training.spec`, which does not need torch; they are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

import torch

from patchpnp.prior import ImageSpaceDenoiser, Precond, UNet
from patchpnp.training.spec import (  # noqa: F401  (re-exported: the settings API)
    NOT_IN_HASH,
    describe_mismatch,
    resolve_prior,
    result_hash,
)


def build_network(network: dict, seed: int = 0) -> Precond:
    """The preconditioned U-Net for ``network`` settings, initialised from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    unet = UNet(
        img_channels=network["img_channels"],
        coord_channels=network.get("coord_channels", 0),
        model_channels=network["model_channels"],
        channel_mult=network["channel_mult"],
        num_blocks=network["num_blocks"],
        attn_resolutions=network["attn_levels"],
        channels_per_head=network["channels_per_head"],
        dropout=network.get("dropout", 0.0),
        generator=g,
    )
    return Precond(unet, generator=g)


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


def load_prior(
    path: str | Path, device: str | torch.device = "cpu", expect: dict | None = None
) -> tuple[ImageSpaceDenoiser, dict]:
    """The EMA denoiser saved by training, in [0, 1] image units, frozen, in eval mode.

    ``expect`` (a ``network`` settings dict) refuses weights of another architecture
    with a message naming the differences.
    """
    payload = torch.load(path, map_location="cpu", weights_only=False)
    settings = payload["settings"]
    if expect is not None:
        mismatch = describe_mismatch({"network": settings["network"]}, {"network": expect})
        if mismatch:
            raise ValueError(f"{path}: prior has another architecture: {mismatch}")
    net = build_network(settings["network"], seed=0)
    try:
        net.load_state_dict(payload["ema"])
    except RuntimeError as err:
        raise ValueError(
            f"{path}: weights do not fit the network its settings describe: {err}"
        ) from err
    net = net.to(device).eval().requires_grad_(False)
    return ImageSpaceDenoiser(net), settings
