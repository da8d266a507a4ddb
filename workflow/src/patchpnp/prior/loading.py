"""Building the network a prior's settings describe, and loading a trained prior."""

from __future__ import annotations

from pathlib import Path

import torch

from patchpnp.prior.network import UNet
from patchpnp.prior.precond import ImageSpaceDenoiser, Precond
from patchpnp.training.spec import describe_mismatch


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
