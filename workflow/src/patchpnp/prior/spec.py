"""A prior's resolved settings and their identity, without torch.

The workflow config splits a prior's settings into shared defaults
(``network``, ``training``) and per-prior overrides (``priors.<name>``);
:func:`resolve_prior` merges them into one plain dict that the ``train`` step
receives, saves beside its weights and hashes to name its checkpoints. This
module imports nothing heavy, so Snakemake plans the workflow without torch.
"""

from __future__ import annotations

import hashlib
import json

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


def resolve_mri_prior(config: dict, name: str) -> dict:
    """Prior ``name`` as the MRI task trains it: the same scheme and network on complex
    images (2 channels: real, imaginary) of ``mri.image_size``, with ``mri.training``
    over the shared training settings."""
    mri = config["mri"]
    derived = {
        **config,
        "network": {**config["network"], "img_channels": 2},
        "training": {**config["training"], **mri.get("training", {})},
        "data": {**config["data"], "image_size": mri["image_size"]},
    }
    return resolve_prior(derived, name)


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
