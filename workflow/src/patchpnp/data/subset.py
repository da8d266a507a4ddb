"""Training subsets of snakemake generalization (docs/methods.md section 15).

A prior trained on ``n`` slices of a dataset trains on the first ``n`` of one fixed
permutation of that dataset's training split. The permutation depends on the seed and
the dataset's name only, so the subsets are nested (the 24 slices of ``n = 24`` are the
first 24 of ``n = 96``) and a larger ``n`` only adds slices. The subset is a split file
(:mod:`patchpnp.formats`) with the training split's settings, its slices in the training
split's order, and attributes saying what it was cut from.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import h5py
import numpy as np

from patchpnp.atomic import atomic_path
from patchpnp.formats import (
    IMAGES,
    SCALE,
    SLICE,
    SOURCE,
    FormatError,
    append_split,
    create_split,
    open_h5,
    split_geometry,
)


def subset_indices(n_total: int, n: int, seed: int, dataset: str) -> np.ndarray:
    """The training-split indices of the first ``n`` of the dataset's fixed permutation
    of ``n_total`` slices, in increasing order."""
    if not 0 < n <= n_total:
        raise ValueError(
            f"dataset '{dataset}': {n} training slices asked for, the training split holds "
            f"{n_total} (expected 1 to {n_total})"
        )
    rng = np.random.default_rng([int(seed), zlib.crc32(dataset.encode())])
    return np.sort(rng.permutation(n_total)[:n])


def write_train_subset(
    train_split: str | Path, output: str | Path, *, n: int, seed: int, dataset: str
) -> str:
    """``patchpnp train-subset``: the first ``n`` slices of ``dataset``'s fixed permutation
    of ``train_split``, written atomically to ``output``."""
    n_total, shape = split_geometry(train_split)
    keep = subset_indices(n_total, int(n), seed, dataset)
    with open_h5(train_split) as f:
        if f.attrs.get("split") != "train":
            raise FormatError(
                f"{train_split}: a training subset is cut from a training split, this is "
                f"split {f.attrs.get('split')!r}"
            )
        settings = dict(f.attrs)
        images = np.asarray(f[IMAGES][keep], np.float32)
        source = list(f[SOURCE].asstr()[keep])
        slices, scale = np.asarray(f[SLICE][keep]), np.asarray(f[SCALE][keep])
    settings.update(
        n_images=len(keep),
        n_volumes=len(set(source)),
        subset_of=str(train_split),
        subset_n=int(n),
        subset_seed=int(seed),
        subset_of_n_images=int(n_total),
    )
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as out:
        create_split(out, shape[-1], {}, channels=shape[0])
        append_split(out, images, source, slices, scale)
        out.attrs.update(settings)
    return (
        f"{dataset}: {len(keep)} of {n_total} training slices ({len(set(source))} volumes) "
        f"-> {output}"
    )
