"""Slice extraction: fastMRI volumes -> one HDF5 file of [0, 1] images per split.

docs/methods.md section 1. Training split: every slice of each volume except the
first and last ``edge_slices`` (noise-only in fastMRI). Evaluation and tuning
splits: the central slice of each volume. Each slice is centre-cropped to
``crop_size`` (if larger), resized to ``image_size`` (antialiased bicubic),
scaled by its ``scale_percentile``-th percentile and clipped to [0, 1].

The output is a split file (:mod:`patchpnp.formats`), one chunk per image so that
training can read random images without loading the file.

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
from tqdm import tqdm

from patchpnp.atomic import atomic_path
from patchpnp.data.fastmri import DataError, Volume, inspect_volume, read_slices
from patchpnp.formats import (
    MRI_EXTRAS,
    MRI_SETTINGS,
    SPLIT_SETTINGS,
    append_per_image,
    append_split,
    create_per_image,
    create_split,
    iter_split,
    open_h5,
    split_geometry,
    split_settings,
)
from patchpnp.layout import CENTRAL_SLICE_SPLITS, SPLITS

log = logging.getLogger(__name__)

MERGE_CHUNK_BYTES = 256 * 2**20  # one k-space image of 20 coils at 320 x 320 is 16 MiB


def slice_indices(volume: Volume, split: str, edge_slices: int) -> list[int]:
    """The slices of ``volume`` that ``split`` uses."""
    if split == "train":
        if volume.n_slices <= 2 * edge_slices:
            raise DataError(
                f"{volume.path}: {volume.n_slices} slices leave none once the "
                f"{edge_slices} edge slices at each end are dropped (data.edge_slices)"
            )
        return list(range(edge_slices, volume.n_slices - edge_slices))
    if split in CENTRAL_SLICE_SPLITS:
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
        # Imported here: merging shards (this module's other command) needs no torch,
        # and importing it costs every such job about 2 s.
        import torch
        import torch.nn.functional as F

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
    settings = {
        "split": split,
        "image_size": image_size,
        "crop_size": crop_size,
        "edge_slices": edge_slices,
        "scale_percentile": scale_percentile,
        "n_volumes": len(checked),
    }
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        create_split(f, image_size, settings)
        for vol, idx in tqdm(checked, desc=f"extract {split}", unit="vol", disable=not progress):
            raw = read_slices(vol, idx)
            try:
                images, scale = preprocess(raw, crop_size, image_size, scale_percentile)
            except ValueError as err:
                raise DataError(f"{vol.path}: {err}") from err
            name = os.path.relpath(vol.path, root) if root is not None else str(vol.path)
            append_split(f, images, [name] * len(idx), np.asarray(sorted(idx), np.int32), scale)
            total += len(idx)
        f.attrs["n_images"] = total
    log.info("wrote %d %s images from %d volumes to %s", total, split, len(checked), output)
    return total


def _shard_layout(shard: str | Path) -> tuple[dict, dict, tuple]:
    """What must agree across shards: settings (MRI ones too), extra datasets, image shape."""
    settings = split_settings(shard)
    _, shape = split_geometry(shard)
    with open_h5(shard) as f:
        extras = {k: (f[k].shape[1:], f[k].dtype) for k in MRI_EXTRAS if k in f}
        keys = [*SPLIT_SETTINGS, *(k for k in MRI_SETTINGS if k in f.attrs)]
        attrs = {k: (settings[k] if k in settings else f.attrs[k]) for k in keys}
    return attrs, extras, shape


def merge_shards(shards: Sequence[str | Path], output: str | Path, progress: bool = True) -> int:
    """Concatenate shard files into ``output``, streaming one image chunk at a time.

    Magnitude and MRI split files alike: the channels come from the first shard, and
    ``data_range`` / ``kspace`` / ``maps`` are carried when its shards have them.
    """
    if not shards:
        raise ValueError(f"no shards to merge into {output}")
    attrs, extras, shape = _shard_layout(shards[0])
    first = {k: str(v) for k, v in attrs.items()}
    for shard in shards[1:]:
        a, e, sh = _shard_layout(shard)
        shared = {k: str(v) for k, v in a.items()}
        if shared != first:
            raise DataError(
                f"{shard}: extraction settings {shared} differ from the first shard's {first}"
            )
        if e != extras or sh != shape:
            raise DataError(
                f"{shard}: datasets {sorted(e)} of images {sh} differ from the first shard's "
                f"{sorted(extras)} of images {shape} (shards of different extractions?)"
            )
    # Bounded memory: a chunk of k-space and maps is far larger than one of magnitude images.
    per_image = np.prod(shape) * 4 + sum(np.prod(s) * d.itemsize for s, d in extras.values())
    chunk = int(max(1, min(256, MERGE_CHUNK_BYTES // per_image)))
    total = volumes = 0
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as out:
        create_split(out, int(attrs["image_size"]), attrs, channels=shape[0])
        for name, (s, dtype) in extras.items():
            create_per_image(out, name, s, dtype)
        for shard in tqdm(shards, desc="merge", unit="shard", disable=not progress):
            volumes += int(split_settings(shard)["n_volumes"])
            with open_h5(shard) as src:
                start = 0
                for images, source, slices, scale in iter_split(shard, chunk=chunk):
                    append_split(out, images, source, slices, scale)
                    stop = start + len(images)
                    for name in extras:
                        append_per_image(out, name, src[name][start:stop])
                    start = stop
                total += start
        out.attrs.update(n_volumes=volumes, n_images=total)
    log.info("merged %d shards (%d images) into %s", len(shards), total, output)
    return total
