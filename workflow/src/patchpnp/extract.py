"""Slice extraction: fastMRI volumes -> one HDF5 file of [0, 1] images per split.

ALGORITHMS.md section 1. Training split: every slice of each volume except the
first and last ``edge_slices`` (noise-only in fastMRI). Evaluation and tuning
splits: the central slice of each volume. Each slice is centre-cropped to
``crop_size`` (if larger), resized to ``image_size`` (antialiased bicubic),
scaled by its ``scale_percentile``-th percentile and clipped to [0, 1].

Output layout (read by training and inference)::

    images  float32 [n, 1, H, W]   one chunk per image, so training can read
                                   random images without loading the file
    source  str     [n]            volume path relative to the fastMRI root
    slice   int32   [n]            slice index inside the volume
    scale   float32 [n]            the percentile the slice was divided by

Extraction runs over shards of volumes (one job each) and a merge step joins
them. Every input is checked before any output is written, and outputs are
written atomically (see :mod:`patchpnp.atomic`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from patchpnp.atomic import atomic_path
from patchpnp.fastmri import DataError, Volume, inspect_volume, read_slices

log = logging.getLogger(__name__)

SPLITS = ("train", "eval", "tune")


def slice_indices(volume: Volume, split: str, edge_slices: int) -> list[int]:
    """The slices of ``volume`` that ``split`` uses."""
    if split == "train":
        if volume.n_slices <= 2 * edge_slices:
            raise DataError(
                f"{volume.path}: {volume.n_slices} slices leave none once the "
                f"{edge_slices} edge slices at each end are dropped (data.edge_slices)"
            )
        return list(range(edge_slices, volume.n_slices - edge_slices))
    if split in ("eval", "tune"):
        return [volume.n_slices // 2]
    raise ValueError(f"unknown split '{split}'; expected one of {SPLITS}")


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Central ``size`` x ``size`` window of a [..., H, W] array (H, W >= size)."""
    h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top : top + size, left : left + size]


def preprocess(
    slices: np.ndarray, crop_size: int, image_size: int, percentile: float
) -> tuple[np.ndarray, np.ndarray]:
    """Crop, resize and scale magnitude slices ``[n, H, W]`` -> ``([n, S, S], scale [n])``.

    The scale is taken after resizing, on what the network will see, so that
    the [0, 1] range holds for the stored image and not for an intermediate.
    """
    h, w = slices.shape[-2:]
    if h < crop_size or w < crop_size:
        raise ValueError(f"slice of {h} x {w} is smaller than the crop {crop_size} x {crop_size}")
    x = center_crop(np.abs(slices), crop_size)
    if crop_size != image_size:
        t = torch.from_numpy(np.ascontiguousarray(x))[:, None]
        t = F.interpolate(
            t, size=(image_size, image_size), mode="bicubic", antialias=True, align_corners=False
        )
        x = t[:, 0].clamp_min(0).numpy()
    scale = np.percentile(x.reshape(len(x), -1), percentile, axis=1).astype(np.float32)
    if not np.all(scale > 0):
        raise ValueError("a slice is all zero (its scale percentile is 0)")
    out = np.clip(x / scale[:, None, None], 0.0, 1.0).astype(np.float32)
    return out, scale


def _create_outputs(f: h5py.File, image_size: int) -> None:
    s = image_size
    f.create_dataset(
        "images", shape=(0, 1, s, s), maxshape=(None, 1, s, s), dtype="float32", chunks=(1, 1, s, s)
    )
    f.create_dataset("source", shape=(0,), maxshape=(None,), dtype=h5py.string_dtype())
    f.create_dataset("slice", shape=(0,), maxshape=(None,), dtype="int32")
    f.create_dataset("scale", shape=(0,), maxshape=(None,), dtype="float32")


def _append(f: h5py.File, images: np.ndarray, source: Sequence[str], index, scale) -> None:
    n0 = f["images"].shape[0]
    n1 = n0 + len(images)
    for name, values in (
        ("images", images[:, None]),
        ("source", list(source)),
        ("slice", index),
        ("scale", scale),
    ):
        f[name].resize(n1, axis=0)
        f[name][n0:n1] = values


def extract_volumes(
    volumes: Sequence[str | Path],
    split: str,
    output: str | Path,
    *,
    image_size: int,
    crop_size: int,
    edge_slices: int = 0,
    scale_percentile: float = 99.5,
    layout: str = "any",
    root: str | Path | None = None,
    progress: bool = True,
) -> int:
    """Extract ``split`` slices of ``volumes`` into ``output``; return the image count.

    All volumes are checked (readable HDF5, expected layout, reconstruction
    present, large enough, enough slices) before anything is written.
    """
    if crop_size < image_size:
        raise ValueError(f"crop_size {crop_size} is smaller than image_size {image_size}")
    if not volumes:
        raise DataError(f"no volumes given for split '{split}' of {output}")
    checked = []
    for path in volumes:
        vol = inspect_volume(path, layout)
        if vol.height < crop_size or vol.width < crop_size:
            raise DataError(
                f"{vol.path}: slices are {vol.height} x {vol.width}, smaller than the crop "
                f"{crop_size} x {crop_size} (data.crop_size)"
            )
        checked.append((vol, slice_indices(vol, split, edge_slices)))

    total = 0
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        _create_outputs(f, image_size)
        f.attrs.update(
            split=split,
            image_size=image_size,
            crop_size=crop_size,
            edge_slices=edge_slices,
            scale_percentile=scale_percentile,
            n_volumes=len(checked),
        )
        for vol, idx in tqdm(checked, desc=f"extract {split}", unit="vol", disable=not progress):
            raw = read_slices(vol, idx)
            try:
                images, scale = preprocess(raw, crop_size, image_size, scale_percentile)
            except ValueError as err:
                raise DataError(f"{vol.path}: {err}") from err
            name = os.path.relpath(vol.path, root) if root is not None else str(vol.path)
            _append(f, images, [name] * len(idx), np.asarray(sorted(idx), np.int32), scale)
            total += len(idx)
        f.attrs["n_images"] = total
    log.info("wrote %d %s images from %d volumes to %s", total, split, len(checked), output)
    return total


def merge_shards(shards: Sequence[str | Path], output: str | Path, progress: bool = True) -> int:
    """Concatenate shard files into ``output``, streaming one image chunk at a time."""
    if not shards:
        raise ValueError(f"no shards to merge into {output}")
    attrs = None
    for shard in shards:
        with h5py.File(shard, "r") as f:
            a = {
                k: f.attrs[k]
                for k in ("split", "image_size", "crop_size", "edge_slices", "scale_percentile")
            }
        if attrs is None:
            attrs = a
        elif {k: str(v) for k, v in a.items()} != {k: str(v) for k, v in attrs.items()}:
            raise DataError(
                f"{shard}: extraction settings {a} differ from the first shard's {attrs}"
            )
    total = 0
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as out:
        _create_outputs(out, int(attrs["image_size"]))
        out.attrs.update(attrs)
        volumes = 0
        for shard in tqdm(shards, desc="merge", unit="shard", disable=not progress):
            with h5py.File(shard, "r") as f:
                volumes += int(f.attrs["n_volumes"])
                n = f["images"].shape[0]
                step = 256  # images per copy: bounded memory for any shard size
                for i in range(0, n, step):
                    j = min(i + step, n)
                    _append(
                        out,
                        f["images"][i:j, 0],
                        f["source"].asstr()[i:j],
                        f["slice"][i:j],
                        f["scale"][i:j],
                    )
                total += n
        out.attrs.update(n_volumes=volumes, n_images=total)
    log.info("merged %d shards (%d images) into %s", len(shards), total, output)
    return total


def read_images(path: str | Path) -> np.ndarray:
    """All images of an extracted split as float32 ``[n, 1, H, W]`` (small splits only)."""
    with h5py.File(path, "r") as f:
        return f["images"][:]
