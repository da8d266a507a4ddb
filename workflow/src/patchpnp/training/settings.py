"""A prior's resolved settings, the network they build, and checkpoint identity.

The workflow config splits a prior's settings into shared defaults
(``network``, ``training``) and per-prior overrides (``priors.<name>``);
:func:`resolve_prior` merges them into one plain dict that the ``train`` step
receives, saves beside its weights and hashes to name its checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from patchpnp.prior import ImageSpaceDenoiser, Precond, UNet

# Settings that do not change the trained weights: they are left out of the
# hash, so changing them neither invalidates a checkpoint nor names a new one.
NOT_IN_HASH = {
    ("training", "checkpoint_every"),
    ("training", "threads"),
    ("training", "max_memory_mb"),
}


def resolve_prior(config: dict, name: str) -> dict:
    """The full settings of prior ``name`` from a validated workflow config."""
    prior = config["priors"][name]
    network = {**config["network"], **prior.get("network", {})}
    training = {**config["training"], **prior.get("training", {})}
    scheme = {
        "name": prior["scheme"],
        "image_size": config["data"]["image_size"],
        "batch_size": training["batch_size"],
    }
    if prior["scheme"] != "whole":
        scheme["train_patch"] = prior["train_patch"]
    if prior["scheme"] == "padis":
        scheme["patch_sizes"] = list(prior.get("patch_sizes") or [prior["train_patch"]])
        scheme["patch_probs"] = list(prior.get("patch_probs") or [1.0] * len(scheme["patch_sizes"]))
    network["coord_channels"] = 2 if prior["scheme"] == "padis" else 0
    return {
        "name": name,
        "seed": int(config["seed"]),
        "scheme": scheme,
        "network": network,
        "training": training,
    }


def _flatten(d: dict, prefix: tuple = ()) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, (*prefix, k)))
        else:
            out[(*prefix, k)] = v
    return out


def result_hash(settings: dict) -> str:
    """A short hash of the settings that decide the trained weights."""
    kept = {
        ".".join(k): v
        for k, v in _flatten(settings).items()
        if k[:2] not in NOT_IN_HASH and k != ("name",)
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]


def describe_mismatch(old: dict, new: dict) -> str:
    """The settings that differ between two resolved settings dicts (``''`` if none)."""
    a, b = _flatten(old), _flatten(new)
    diffs = []
    for key in sorted(set(a) | set(b), key=str):
        if key[:2] in NOT_IN_HASH:
            continue
        if a.get(key, "<missing>") != b.get(key, "<missing>"):
            diffs.append(
                f"{'.'.join(key)}: {a.get(key, '<missing>')!r} -> {b.get(key, '<missing>')!r}"
            )
    return "; ".join(diffs)


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
