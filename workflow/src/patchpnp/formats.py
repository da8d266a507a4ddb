"""The files stages hand each other, written and read here only.

**Split file** (``results/data/{dataset}/{split}.h5``; ``patchpnp extract`` / ``merge``),
what training, inference, tuning, profiling and the tools read:

=========  ===========================  ==============================================
``images``  float32 ``[n, 1, S, S]``     slices in [0, 1]
``source``  str ``[n]``                  the volume a slice came from (relative path)
``slice``   int32 ``[n]``                its index in that volume
``scale``   float32 ``[n]``              the divisor that mapped it to [0, 1]
attrs       :data:`SPLIT_SETTINGS`, ``n_volumes``, ``n_images``
=========  ===========================  ==============================================

**MRI split file** (``results/mri/data/{dataset}/{split}.h5``; ``patchpnp mri-extract`` /
``merge``), what the k-space reconstruction task (docs/methods.md section 11) reads: a split
file whose ``images`` are the complex coil-combined targets as 2 channels (real,
imaginary) ``[n, 2, S, S]``, ``scale`` the volume's constant that divided them, plus

==============  ==========================  ===============================================
``data_range``  float32 ``[n]``             the volume's maximum magnitude (RSS), scaled:
                                            fastMRI's PSNR / SSIM data range
``kspace``      complex64 ``[n, C, S, S]``  measured k-space of the cropped field of view,
                                            divided by ``scale`` (eval / tune splits only)
``maps``        complex64 ``[n, C, S, S]``  ESPIRiT coil maps (eval / tune splits only)
attrs           :data:`MRI_SETTINGS`
==============  ==========================  ===============================================

**Reconstruction file** (``results/infer/...``; ``patchpnp infer``), what the figures read:
``recon`` float32 ``[n, 1, S, S]``, ``measurement`` (float32, or complex for k-space) and
the cell's settings as attributes.

An image's identity is ``source:slice`` (:func:`image_names`): it keys the random
streams, so a result depends neither on the file's order nor on its batch mates.
Torch-free: the figures and the tables read these files without loading torch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from patchpnp.errors import PatchpnpError

IMAGES, SOURCE, SLICE, SCALE = "images", "source", "slice", "scale"
DATA_RANGE, KSPACE, MAPS = "data_range", "kspace", "maps"
RECON, MEASUREMENT = "recon", "measurement"
# A posterior cell (snakemake uncertainty): its sample mean and standard deviation
# images, and the per-image columns of its table (after image, source, slice).
MEAN, SD = "mean", "sd"
POSTERIOR_COLUMNS = [
    "psnr_of_mean",
    "psnr_mean_of_samples",
    "sd_mean",
    "coverage_1sd",
    "coverage_2sd",
    "zero_sd_fraction",
]
# The extraction settings every shard of a split must share (checked when merging).
SPLIT_SETTINGS = ("split", "image_size", "crop_size", "edge_slices", "scale_percentile")
# What an MRI split file adds (coils: the coil count C of its k-space and maps), and
# its per-image datasets beyond a split file's (kspace and maps: eval / tune only).
MRI_SETTINGS = ("calib_width", "coils")
MRI_EXTRAS = (DATA_RANGE, KSPACE, MAPS)
# fastMRI's k-space file layouts (patchpnp.data.fastmri.RECONSTRUCTION_KEY reads both).
FASTMRI_LAYOUTS = ("singlecoil", "multicoil")
# The keys of an MRI cell (snakemake mri): the first columns of its metrics file.
MRI_CELL_KEYS = ("dataset", "acceleration", "mask", "method", "prior", "solver", "size")


class FormatError(PatchpnpError, ValueError):
    """A file is missing, unreadable or not in the expected format; the message names it."""


def open_h5(path: str | os.PathLike, mode: str = "r") -> h5py.File:
    """Open an HDF5 file, or fail with a message naming the file and what is wrong."""
    path = Path(path)
    if mode == "r" and not path.is_file():
        raise FormatError(f"{path}: file not found")
    try:
        return h5py.File(path, mode)
    except OSError as err:
        raise FormatError(f"{path}: not a readable HDF5 file ({err})") from err


# -- split files --------------------------------------------------------------------------------
def create_per_image(f: h5py.File, name: str, shape: tuple[int, ...], dtype) -> None:
    """An empty, growable ``[0, *shape]`` dataset, one image per chunk (random reads stay cheap)."""
    f.create_dataset(
        name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(1, *shape)
    )


def append_per_image(f: h5py.File, name: str, values) -> None:
    """Grow dataset ``name`` by ``values`` along its first axis."""
    n0 = f[name].shape[0]
    f[name].resize(n0 + len(values), axis=0)
    f[name][n0:] = values


def create_split(f: h5py.File, image_size: int, settings: dict, channels: int = 1) -> None:
    """Empty, growable datasets of a split file, and its extraction settings."""
    create_per_image(f, IMAGES, (channels, image_size, image_size), "float32")
    f.create_dataset(SOURCE, shape=(0,), maxshape=(None,), dtype=h5py.string_dtype())
    f.create_dataset(SLICE, shape=(0,), maxshape=(None,), dtype="int32")
    f.create_dataset(SCALE, shape=(0,), maxshape=(None,), dtype="float32")
    f.attrs.update(settings)


def append_split(f: h5py.File, images: np.ndarray, source: Sequence[str], slices, scale) -> None:
    """Append ``images`` ``[k, S, S]`` (or ``[k, C, S, S]``) with their source volumes,
    slice indices and scales."""
    images = np.asarray(images)
    for name, values in (
        (IMAGES, images[:, None] if images.ndim == 3 else images),
        (SOURCE, list(source)),
        (SLICE, slices),
        (SCALE, scale),
    ):
        append_per_image(f, name, values)


def _split_images(f: h5py.File) -> h5py.Dataset:
    ds = f.get(IMAGES)
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 4:
        raise FormatError(f"{f.filename}: no '{IMAGES}' [n, C, H, W]; is this an extracted split?")
    return ds


@dataclass(frozen=True)
class Split:
    """The first images of a split file, with their identities."""

    images: np.ndarray  # float32 [n, C, S, S]
    source: list[str]
    slice: np.ndarray  # int [n]

    def names(self) -> list[str]:
        return image_names(self.source, self.slice)


def read_split(path: str | os.PathLike, limit: int | None = None) -> Split:
    """The first ``limit`` (all: None) images of a split file, in file order."""
    with open_h5(path) as f:
        ds = _split_images(f)
        n = ds.shape[0] if limit is None else min(int(limit), ds.shape[0])
        return Split(
            np.asarray(ds[:n], np.float32), list(f[SOURCE].asstr()[:n]), np.asarray(f[SLICE][:n])
        )


@dataclass(frozen=True)
class MRISplit:
    """An MRI split file's evaluation content (the ``kspace`` and ``maps`` of eval / tune)."""

    images: np.ndarray  # float32 [n, 2, S, S]: the complex targets as (real, imaginary)
    source: list[str]
    slice: np.ndarray  # int [n]
    data_range: np.ndarray  # float32 [n]
    kspace: np.ndarray  # complex64 [n, C, S, S]
    maps: np.ndarray  # complex64 [n, C, S, S]

    def names(self) -> list[str]:
        return image_names(self.source, self.slice)


def read_mri_split(path: str | os.PathLike, limit: int | None = None) -> MRISplit:
    """The first ``limit`` (all: None) slices of an MRI split file with k-space and maps."""
    with open_h5(path) as f:
        ds = _split_images(f)
        missing = [k for k in MRI_EXTRAS if k not in f]
        if ds.shape[1] != 2 or missing:
            raise FormatError(
                f"{path}: not an MRI evaluation split (images [n, 2, S, S] with "
                f"{DATA_RANGE}, {KSPACE}, {MAPS}); found images {ds.shape}, missing {missing}"
            )
        n = ds.shape[0] if limit is None else min(int(limit), ds.shape[0])
        return MRISplit(
            np.asarray(ds[:n], np.float32),
            list(f[SOURCE].asstr()[:n]),
            np.asarray(f[SLICE][:n]),
            np.asarray(f[DATA_RANGE][:n], np.float32),
            np.asarray(f[KSPACE][:n]),
            np.asarray(f[MAPS][:n]),
        )


def split_geometry(path: str | os.PathLike) -> tuple[int, tuple[int, ...]]:
    """The image count and the ``(C, H, W)`` shape of a split file, without reading images."""
    with open_h5(path) as f:
        ds = _split_images(f)
        return int(ds.shape[0]), tuple(ds.shape[1:])


def split_settings(path: str | os.PathLike) -> dict:
    """The extraction settings (:data:`SPLIT_SETTINGS`) and volume count of a split file."""
    with open_h5(path) as f:
        missing = [k for k in (*SPLIT_SETTINGS, "n_volumes") if k not in f.attrs]
        if missing:
            raise FormatError(f"{path}: split file lacks the attributes {missing}")
        return {k: f.attrs[k] for k in (*SPLIT_SETTINGS, "n_volumes")}


def iter_split(path: str | os.PathLike, chunk: int = 256) -> Iterator[tuple]:
    """``(images [k, C, S, S], source, slice, scale)`` chunks of a split file: bounded memory."""
    with open_h5(path) as f:
        ds = _split_images(f)
        for i in range(0, ds.shape[0], chunk):
            j = min(i + chunk, ds.shape[0])
            yield ds[i:j], f[SOURCE].asstr()[i:j], f[SLICE][i:j], f[SCALE][i:j]


class SplitReader:
    """Random access to the images of one split file (kept open): training's batches."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file: h5py.File | None = None

    def read(self, index) -> np.ndarray:
        """Images ``index`` (a slice, or increasing indices) as float32 ``[k, C, H, W]``."""
        if self._file is None:
            self._file = open_h5(self.path)
        return np.asarray(_split_images(self._file)[index], dtype=np.float32)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def image_names(sources: Sequence[str], slices: Sequence[int]) -> list[str]:
    """The identity of each image: its source volume and slice, ``source:slice``."""
    return [f"{src}:{int(sl)}" for src, sl in zip(sources, slices, strict=True)]


# -- reconstruction files -----------------------------------------------------------------------
def write_recon(f: h5py.File, recon: np.ndarray, measurement: np.ndarray, attrs: dict) -> None:
    """A cell's reconstructions, its measurements (complex kept) and its settings."""
    f.create_dataset(RECON, data=np.asarray(recon, np.float32))
    m = np.asarray(measurement)
    f.create_dataset(MEASUREMENT, data=m if np.iscomplexobj(m) else m.astype(np.float32))
    f.attrs.update(attrs)


def read_image(
    f: h5py.File, key: str, index: int, shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """Image ``index`` of the real ``[n, 1, H, W]`` dataset ``key`` as float64 ``[H, W]``
    (``images`` of a split file, ``recon`` of a reconstruction file)."""
    name = f"{f.filename}:{key}"
    ds = f.get(key)
    if not isinstance(ds, h5py.Dataset):
        raise FormatError(f"{name}: dataset not found")
    if ds.ndim != 4 or ds.shape[1] != 1 or ds.dtype.kind != "f":
        raise FormatError(f"{name}: expected real images [n, 1, H, W], got {ds.dtype} {ds.shape}")
    if not 0 <= index < ds.shape[0]:
        raise FormatError(f"{name}: index {index} out of range for {ds.shape[0]} images")
    img = ds[index, 0].astype(np.float64)
    if shape is not None and img.shape != shape:
        raise FormatError(f"{name}: image shape {img.shape} differs from ground truth {shape}")
    return img
