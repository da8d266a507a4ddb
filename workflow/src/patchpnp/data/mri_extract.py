"""MRI extraction: multicoil fastMRI k-space -> one MRI split file per split.

docs/methods.md section 11; the file contract is in :mod:`patchpnp.formats`. Slices
are chosen as for magnitude extraction (:func:`patchpnp.data.extract.slice_indices`).
Per volume:

- optionally, SVD coil compression to ``coils`` virtual coils (one matrix per volume);
- coil images (``ifft2c``), centre-cropped to ``image_size`` as fastMRI crops its
  reconstructions, and back to k-space (``fft2c``): the k-space of the cropped field
  of view, which the forward model ``y = M F S x`` then fits exactly;
- ESPIRiT maps from that fully sampled k-space's calibration centre, target
  ``x = sum_c conj(S_c) img_c``;
- one scale per volume, the ``scale_percentile``-th percentile of the RSS magnitude
  over its non-edge slices (the train split's slices, whichever split is written), so
  that slices of one volume keep their relative brightness; ``data_range`` is the
  volume's maximum RSS over the same slices, scaled (the figures' display range). The
  scores do not use it: the RSS exceeds the scored target ``|x|``, so they take the
  maximum of ``|x|`` over the scored slices of each volume, as fastMRI's evaluation
  does (:func:`patchpnp.metrics.mri.volume_data_range`).

Every volume is checked before anything is written, and the output is written
atomically; NaN or inf found while reading fails the job and leaves no output.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from patchpnp.atomic import atomic_path
from patchpnp.data.coils import (
    apply_compression,
    check_calibration,
    coil_combine,
    coil_covariance,
    espirit_maps,
    fft2c,
    ifft2c,
    rss,
    virtual_coil_matrix,
)
from patchpnp.data.extract import center_crop, slice_indices
from patchpnp.data.fastmri import (
    RECONSTRUCTION_KEY,
    DataError,
    Volume,
    acquisition_of,
    open_volume,
)
from patchpnp.formats import (
    DATA_RANGE,
    KSPACE,
    MAPS,
    append_per_image,
    append_split,
    create_per_image,
    create_split,
)

log = logging.getLogger(__name__)

RSS_KEY = RECONSTRUCTION_KEY["multicoil"]


@dataclass(frozen=True)
class MriVolume(Volume):
    """A multicoil volume's header: a :class:`Volume` (``recon_key`` empty without
    ``reconstruction_rss``: k-space is all the task needs) and its coil count."""

    coils: int = 0


def inspect_mri_volume(path: str | Path) -> MriVolume:
    """Open ``path`` and check that it holds multicoil k-space ``[slices, coils, H, W]``."""
    path = Path(path)
    with open_volume(path) as f:
        k = f.get("kspace")
        if not isinstance(k, h5py.Dataset):
            raise DataError(f"{path}: no k-space ('kspace' dataset); the MRI task needs it")
        if k.ndim == 3:
            raise DataError(
                f"{path}: 'kspace' {k.shape} is singlecoil; the MRI task needs multicoil "
                "k-space [slices, coils, height, width]"
            )
        if k.ndim != 4 or k.dtype.kind != "c":
            raise DataError(
                f"{path}: 'kspace' is {k.dtype} {k.shape}; expected complex "
                "[slices, coils, height, width]"
            )
        n, c, h, w = k.shape
        if n == 0 or c == 0:
            raise DataError(f"{path}: 'kspace' {k.shape} holds no slices or no coils")
        key = RSS_KEY if RSS_KEY in f else ""
        if key and f[key].shape[:1] != (n,):
            raise DataError(
                f"{path}: '{key}' {f[key].shape} and 'kspace' {k.shape} disagree on the slice count"
            )
        return MriVolume(path, "multicoil", key, n, h, w, acquisition_of(f), coils=c)


def _read_kspace(vol: MriVolume, ds: h5py.Dataset, index: int) -> np.ndarray:
    try:
        k = np.asarray(ds[index], np.complex64)
    except OSError as err:
        raise DataError(
            f"{vol.path}: reading slice {index} of 'kspace' failed ({err}); "
            "the file may be truncated"
        ) from err
    if not np.isfinite(k).all():
        raise DataError(f"{vol.path}: slice {index} of 'kspace' contains NaN or inf")
    return k


def _virtual_coils(vol: MriVolume, ds: h5py.Dataset, coils: int | None) -> np.ndarray | None:
    """The volume's coil matrix (:func:`~patchpnp.data.coils.virtual_coil_matrix`); to
    compress, its covariance is summed over all slices, read one at a time. The matrix is
    linear per sample, so it commutes with the FFT and the crop."""
    return virtual_coil_matrix(
        vol.coils,
        coils,
        lambda: sum(coil_covariance(_read_kspace(vol, ds, i)) for i in range(vol.n_slices)),
    )


def _volume(vol: MriVolume, used: list[int], written: list[int], opt: dict) -> dict:
    """The written slices of one volume: images, k-space, maps, scale and data range."""
    size = opt["image_size"]
    with h5py.File(vol.path, "r") as f:
        ds = f["kspace"]
        matrix = _virtual_coils(vol, ds, opt["coils"])
        magnitudes, kept = [], {}
        for i in used:
            k = _read_kspace(vol, ds, i)
            img = center_crop(ifft2c(k if matrix is None else apply_compression(k, matrix)), size)
            magnitudes.append(rss(img).astype(np.float32))
            if i in written:
                kept[i] = img.copy()  # not a view that pins the uncropped slice
    magnitudes = np.stack(magnitudes)
    scale = np.float32(np.percentile(magnitudes, opt["scale_percentile"]))
    if not scale > 0:
        raise DataError(f"{vol.path}: k-space is all zero (its scale percentile is 0)")
    data_range = np.float32(magnitudes.max() / scale)
    images, kspace, maps = [], [], []
    for i in written:
        k = fft2c(kept[i])
        s = espirit_maps(k, opt["calib_width"])
        if not np.any(s):
            # ESPIRiT keeps maps only where the calibration's top eigenvalue reaches its
            # crop: none anywhere means too little calibration data for the kernel.
            raise DataError(
                f"{vol.path}: slice {i}: ESPIRiT found no coil sensitivity anywhere "
                f"(calibration {opt['calib_width']} x {opt['calib_width']} of a {size} px "
                f"image); raise mri.calib_width or mri.image_size"
            )
        x = coil_combine(kept[i], s) / scale
        images.append(np.stack([x.real, x.imag]).astype(np.float32))
        if opt["with_kspace"]:  # a training volume's k-space would be dropped anyway
            kspace.append((k / scale).astype(np.complex64))
            maps.append(s)
    n = len(written)
    return {
        "images": np.stack(images),
        KSPACE: np.stack(kspace) if kspace else None,
        MAPS: np.stack(maps) if maps else None,
        "scale": np.full(n, scale, np.float32),
        DATA_RANGE: np.full(n, data_range, np.float32),
    }


def extract_mri_volumes(
    volumes: Sequence[str | Path],
    split: str,
    output: str | Path,
    *,
    image_size: int,
    calib_width: int,
    coils: int | None = None,
    edge_slices: int = 0,
    scale_percentile: float = 99.5,
    root: str | Path | None = None,
    progress: bool = True,
) -> int:
    """Extract ``split`` slices of multicoil ``volumes`` into the MRI split file ``output``;
    return the image count.

    ``coils``: compress (or zero-pad) every volume to this many coils; None keeps them,
    which needs every volume to have the same count. All volumes are checked (readable,
    multicoil k-space, slice counts, size, coil count) before anything is written.
    """
    if not volumes:
        raise DataError(f"no volumes given for split '{split}' of {output}")
    try:
        check_calibration(calib_width, image_size, image_size)
    except ValueError as err:
        raise DataError(f"{output}: {err} (mri.image_size)") from err
    if coils is not None and coils < 1:
        raise DataError(f"{output}: mri.coils must be at least 1, got {coils}")
    checked = []
    for path in volumes:
        vol = inspect_mri_volume(path)
        if vol.height < image_size or vol.width < image_size:
            raise DataError(
                f"{vol.path}: k-space is {vol.height} x {vol.width}, smaller than "
                f"mri.image_size {image_size} x {image_size}"
            )
        if coils is None and checked and vol.coils != checked[0][0].coils:
            first = checked[0][0]
            raise DataError(
                f"{vol.path}: {vol.coils} coils, but {first.path} has {first.coils}; one split "
                "file holds one coil count: set mri.coils to compress every volume to it"
            )
        used = slice_indices(vol, "train", edge_slices)  # the scale's slices
        checked.append((vol, used, slice_indices(vol, split, edge_slices)))

    n_coils = coils if coils is not None else checked[0][0].coils
    with_kspace = split != "train"  # training learns images only
    settings = {
        "split": split,
        "image_size": image_size,
        "crop_size": image_size,
        "edge_slices": edge_slices,
        "scale_percentile": scale_percentile,
        "calib_width": calib_width,
        "coils": n_coils,
        "n_volumes": len(checked),
    }
    opt = {"image_size": image_size, "coils": coils, "calib_width": calib_width,
           "scale_percentile": scale_percentile, "with_kspace": with_kspace}  # fmt: skip
    total = 0
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        create_split(f, image_size, settings, channels=2)
        create_per_image(f, DATA_RANGE, (), "float32")
        if with_kspace:
            for name in (KSPACE, MAPS):
                create_per_image(f, name, (n_coils, image_size, image_size), "complex64")
        bar = tqdm(checked, desc=f"mri-extract {split}", unit="vol", disable=not progress)
        for vol, used, written in bar:
            written = sorted(written)
            out = _volume(vol, used, written, opt)
            name = os.path.relpath(vol.path, root) if root is not None else str(vol.path)
            append_split(f, out["images"], [name] * len(written), written, out["scale"])
            append_per_image(f, DATA_RANGE, out[DATA_RANGE])
            if with_kspace:
                append_per_image(f, KSPACE, out[KSPACE])
                append_per_image(f, MAPS, out[MAPS])
            total += len(written)
        f.attrs["n_images"] = total
    log.info(
        "wrote %d %s MRI images (%d coils) from %d volumes to %s",
        total, split, n_coils, len(checked), output,
    )  # fmt: skip
    return total
