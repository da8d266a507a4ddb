"""Building the network a prior's settings describe, and loading a trained prior."""

from __future__ import annotations

from pathlib import Path

import torch

from patchpnp.prior.network import UNet
from patchpnp.prior.precond import ImageSpaceDenoiser, Precond
from patchpnp.prior.spec import describe_mismatch
from patchpnp.runtime import autocast_dtype


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


def size_multiple(network: dict) -> int:
    """The side every input of the ``network`` settings must be a multiple of: one
    halving per level below the first."""
    return 2 ** (len(network["channel_mult"]) - 1)


def load_prior(
    path: str | Path,
    device: str | torch.device = "cpu",
    expect: dict | None = None,
    precision: str = "float32",
) -> tuple[ImageSpaceDenoiser, dict]:
    """The EMA denoiser saved by training, in [0, 1] image units, frozen, in eval mode,
    with the canvas pad of a position-aware prior (:func:`canvas_pad`).

    ``expect`` (a ``network`` settings dict) refuses weights of another architecture
    with a message naming the differences. ``precision`` (``inference.precision``) is
    the U-Net's autocast, by training's policy (:func:`patchpnp.runtime.autocast_dtype`);
    the preconditioning stays float32.
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
    denoiser = ImageSpaceDenoiser(for_inference(net, device, precision), canvas_pad(settings))
    return denoiser, settings


def canvas_pad(settings: dict) -> int | None:
    """The zero margin of the canvas a position-aware prior was trained on (the padis
    scheme's ``pad``), or ``None``: a prior without coordinate channels, or a padis prior
    saved before the canvas was recorded (its coordinates span the unpadded image).
    Patch inference gives every tile its slice of that canvas's coordinates
    (:class:`patchpnp.patching.patches.ShiftedGridDenoiser`)."""
    scheme = settings.get("scheme", {})
    if not settings.get("network", {}).get("coord_channels") or scheme.get("pad") is None:
        return None
    return int(scheme["pad"])


def for_inference(net: Precond, device, precision: str = "float32") -> Precond:
    """``net`` set up as inference runs it: on ``device``, frozen, in eval mode, its
    U-Net under ``precision``'s autocast (:func:`patchpnp.runtime.autocast_dtype`,
    config ``inference.precision``) and in channels-last memory format, which made the
    demo's denoiser calls 21-27% faster on a 2-core CPU (``tools/bench_inference.py``)
    and is what cuDNN's convolutions prefer."""
    autocast = autocast_dtype(precision, torch.device(device), "inference.precision")
    net = net.to(device, memory_format=torch.channels_last).eval().requires_grad_(False)
    net.memory_format = torch.channels_last
    net.autocast_dtype = autocast
    return net
