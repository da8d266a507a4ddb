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
from dataclasses import dataclass

# Settings that do not change the trained weights: they are left out of the
# hash, so changing them neither invalidates a checkpoint nor names a new one.
NOT_IN_HASH = {
    ("training", "checkpoint_every"),
    ("training", "threads"),
    ("training", "max_memory_mb"),
}


# PaDIS's patch-size mixture: N/16, N/8, N/4 of the image side N (16, 32, 64 at 256).
PADIS_DIVISORS = (16, 8, 4)
PADIS_PROBS = (0.2, 0.3, 0.5)


@dataclass(frozen=True)
class PatchMixture:
    """Patch sizes and their probabilities; ``note`` says what was changed from PaDIS's
    mixture to suit the network (``''``: nothing)."""

    sizes: tuple[int, ...]
    probs: tuple[float, ...]
    note: str = ""


def _nearest_multiple(value: float, multiple: int, largest: int) -> int:
    """The multiple of ``multiple`` in ``[multiple, largest]`` nearest ``value``
    (ties: the smaller)."""
    low = max(multiple, min(largest, int(value // multiple) * multiple))
    high = max(multiple, min(largest, low + multiple))
    return low if value - low <= high - value else high


def padis_patch_mixture(image_size: int, levels: int) -> PatchMixture:
    """PaDIS's patch sizes N/16, N/8, N/4 (probabilities 0.2, 0.3, 0.5), fitted to a
    network of ``levels`` resolution levels (``len(channel_mult)``).

    Every size must be a multiple of ``2^(levels - 1)`` (one halving per level below
    the first) and at most ``image_size``. A size that is not is replaced by the
    nearest one that is (ties: the smaller), and sizes that become equal are merged,
    their probabilities added; ``note`` says so. At N = 256 with 5 levels (multiples of
    16) PaDIS's sizes stand; at the demo's N = 64 with 4 levels (multiples of 8) N/16 =
    4 becomes 8, which N/8 already is: sizes 8, 16 with probabilities 0.5, 0.5.
    """
    image_size, levels = int(image_size), int(levels)
    multiple = 2 ** (levels - 1)
    if levels < 1 or image_size < multiple:
        raise ValueError(
            f"padis: images of {image_size} px are smaller than the smallest input "
            f"({multiple} px) of a network of {levels} levels"
        )
    largest = image_size // multiple * multiple
    merged: dict[int, float] = {}
    changed = []
    for divisor, prob in zip(PADIS_DIVISORS, PADIS_PROBS, strict=True):
        nominal = image_size / divisor
        size = _nearest_multiple(nominal, multiple, largest)
        if size != nominal:
            changed.append(f"N/{divisor} = {nominal:g} -> {size}")
        merged[size] = merged.get(size, 0.0) + prob
    sizes = tuple(sorted(merged))
    probs = tuple(round(merged[p], 12) for p in sizes)
    note = ""
    if changed:
        note = (
            f"padis patch sizes of N = {image_size} moved to multiples of {multiple} "
            f"(a network of {levels} levels): {', '.join(changed)}"
        )
        if len(sizes) < len(PADIS_DIVISORS):
            note += "; equal sizes merged, their probabilities added"
        note += f"; sizes {list(sizes)}, probabilities {list(probs)}"
    return PatchMixture(sizes, probs, note)


def default_canvas_pad(image_size: int) -> int:
    """The padis training canvas's margin when none is given: N/4 (PaDIS: 64 at 256)."""
    return int(image_size) // 4


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
    if prior["scheme"] == "patch":
        scheme["train_patch"] = prior["train_patch"]
    if prior["scheme"] == "padis":
        scheme.update(padis_scheme(prior, scheme["image_size"], len(network["channel_mult"])))
    network["coord_channels"] = 2 if prior["scheme"] == "padis" else 0
    return {
        "name": name,
        "seed": int(config["seed"]),
        "scheme": scheme,
        "network": network,
        "training": training,
    }


def padis_scheme(prior: dict, image_size: int, levels: int) -> dict:
    """The padis scheme's own settings: ``train_patch`` (the side ``batch_size`` counts
    patches of), the canvas ``pad`` (default N/4) and the patch-size mixture (default
    PaDIS's N/16, N/8, N/4 fitted to the network's ``levels``, see
    :func:`padis_patch_mixture`). Given ``patch_sizes`` without ``patch_probs`` are
    equally likely. Saved with the weights, so a loaded prior knows its canvas
    (:func:`patchpnp.prior.loading.canvas_pad`)."""
    sizes, probs = prior.get("patch_sizes"), prior.get("patch_probs")
    if not sizes:
        mixture = padis_patch_mixture(image_size, levels)
        sizes, probs = list(mixture.sizes), probs or list(mixture.probs)
    pad = prior.get("pad")
    return {
        "train_patch": prior.get("train_patch") or max(sizes),
        "pad": default_canvas_pad(image_size) if pad is None else int(pad),
        "patch_sizes": list(sizes),
        "patch_probs": list(probs or [1.0] * len(sizes)),
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
