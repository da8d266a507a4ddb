"""CT images (docs/methods.md section 14): synthetic phantoms and AAPM / Mayo DICOM series.

**Synthetic random-ellipse phantoms** (:func:`ellipse_phantom`), the standard toy set
of learned CT, for runs without CT data: a Shepp-Logan-like body (a bright rim of
attenuation 1 around a soft interior) holding random ellipses of random positive or
negative attenuation, clipped to [0, 1]. They are *synthetic*: their sources read
``synthetic_ellipses/phantom_0007`` and their split files carry ``synthetic = True``,
so a result on them cannot pass for one on patient data. Phantom ``i`` of seed ``s``
is drawn from ``numpy.random.default_rng([s, i])`` alone: the same whatever the
number of phantoms or the order they are made in.

**DICOM series** (:func:`read_dicom_series`, the AAPM / Mayo low-dose CT data): the
``.dcm`` / ``.IMA`` slices of a folder, ordered along the slice normal
(``ImagePositionPatient``, else ``InstanceNumber``), stored values converted to
Hounsfield units with ``RescaleSlope`` / ``RescaleIntercept``, then to linear
attenuation relative to water, ``mu / mu_water = 1 + HU / 1000``, divided by a fixed
maximum ``1 + hu_max / 1000`` (:func:`hu_to_unit`). Air is 0, water
``1 / (1 + hu_max / 1000)`` (0.5 for the default ``hu_max = 1000``), and anything
denser than ``hu_max`` is clipped to 1. The scale is the same for every slice and
every patient, so the image stays proportional to attenuation and its sinogram to the
physical line integrals (PaDIS instead min-max scales each slice to 8 bits, which
discards the HU scale and makes the contrast depend on the slice). The square centre
of the slice is then resized (antialiased bicubic) to ``image_size``. Every problem
with a file raises :class:`~patchpnp.data.fastmri.DataError` naming it.

Both write split files (:mod:`patchpnp.formats`) atomically: ``scale`` is the divisor
``1 + hu_max / 1000`` that took ``mu / mu_water`` to [0, 1] (1 for phantoms), and
``scale_percentile`` is NaN (no percentile scaling).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from patchpnp.atomic import atomic_path
from patchpnp.data.fastmri import DataError
from patchpnp.formats import append_split, create_split
from patchpnp.layout import CENTRAL_SLICE_SPLITS, SPLITS

SYNTHETIC_SOURCE = "synthetic_ellipses"
# The top of the HU window: 1000 HU (twice water's attenuation) maps to 1.
HU_MAX = 1000.0
DICOM_SUFFIXES = (".dcm", ".ima")


# -- synthetic phantoms -------------------------------------------------------------------------
def _ellipse(u: np.ndarray, v: np.ndarray, cx, cy, a, b, angle) -> np.ndarray:
    """Boolean mask of the ellipse of centre ``(cx, cy)``, semi-axes ``a, b``, rotated."""
    c, s = np.cos(angle), np.sin(angle)
    du, dv = u - cx, v - cy
    return ((du * c + dv * s) / a) ** 2 + ((-du * s + dv * c) / b) ** 2 <= 1.0


def ellipse_phantom(size: int, rng: np.random.Generator, supersample: int = 4) -> np.ndarray:
    """One random-ellipse phantom, float32 ``[size, size]`` in [0, 1].

    On the square ``[-1, 1]^2``: a body ellipse (semi-axes 0.6-0.88, inside the
    inscribed circle, so every ray that crosses it lies on the detector) whose rim,
    3-6 % of its size (and at least 1.5 pixels) thick, has attenuation 1 and whose
    interior has a base value
    0.15-0.35; inside it 6-14 ellipses (semi-axes 0.03-0.3, log-uniform) each add a
    value uniform in [-0.15, 0.45]. Rendered on a ``supersample``-times finer grid and
    averaged, so edges are partial-volume like a scanner's pixels.
    """
    n = int(size) * int(supersample)
    grid = (np.arange(n) + 0.5) / n * 2 - 1
    u, v = np.meshgrid(grid, grid, indexing="xy")
    cx, cy = rng.uniform(-0.04, 0.04, size=2)
    a, b = rng.uniform(0.72, 0.88), rng.uniform(0.6, 0.85)
    angle = rng.uniform(-np.pi / 12, np.pi / 12)
    # The rim's relative thickness, but at least 1.5 pixels (2 / size units a pixel).
    rim = max(rng.uniform(0.03, 0.06), 3.0 / (size * min(a, b)))
    body = _ellipse(u, v, cx, cy, a, b, angle)
    inner = _ellipse(u, v, cx, cy, a * (1 - rim), b * (1 - rim), angle)
    image = np.where(body, 1.0, 0.0)
    image[inner] = rng.uniform(0.15, 0.35)
    for _ in range(int(rng.integers(6, 15))):
        # A centre inside the interior (polar draw in the unit disk, mapped onto it).
        r, phi = 0.8 * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
        du, dv = r * a * (1 - rim) * np.cos(phi), r * b * (1 - rim) * np.sin(phi)
        fx = cx + du * np.cos(angle) - dv * np.sin(angle)
        fy = cy + du * np.sin(angle) + dv * np.cos(angle)
        fa, fb = np.exp(rng.uniform(np.log(0.03), np.log(0.3), size=2))
        feature = _ellipse(u, v, fx, fy, fa, fb, rng.uniform(0, np.pi)) & inner
        image[feature] += rng.uniform(-0.15, 0.45)
    image = np.clip(image, 0.0, 1.0)
    image = image.reshape(size, supersample, size, supersample).mean(axis=(1, 3))
    return image.astype(np.float32)


def phantom(index: int, size: int, seed: int) -> np.ndarray:
    """Phantom ``index`` of ``seed``, drawn from its own ``default_rng([seed, index])``."""
    return ellipse_phantom(size, np.random.default_rng([int(seed), int(index)]))


def phantom_names(indices: Sequence[int]) -> list[str]:
    """Sources of phantoms ``indices``, marked synthetic: ``synthetic_ellipses/phantom_0007``."""
    return [f"{SYNTHETIC_SOURCE}/phantom_{int(i):04d}" for i in indices]


def phantoms(n: int, size: int, seed: int, start: int = 0) -> np.ndarray:
    """Phantoms ``start .. start + n - 1`` of ``seed``, float32 ``[n, size, size]``."""
    return np.stack([phantom(i, size, seed) for i in range(start, start + int(n))])


def write_phantom_split(
    path: str | Path, n: int, size: int, seed: int, split: str = "train", start: int = 0
) -> int:
    """Write phantoms ``start .. start + n - 1`` of ``seed`` as split file ``path``; return ``n``.

    Each phantom is its own volume (slice 0); use disjoint ``start`` ranges (or seeds)
    for the training, tuning and evaluation splits.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; expected one of {SPLITS}")
    if n < 1:
        raise ValueError(f"need at least one phantom, got n = {n}")
    indices = list(range(int(start), int(start) + int(n)))
    settings = {
        "split": split,
        "image_size": int(size),
        "crop_size": int(size),
        "edge_slices": 0,
        "scale_percentile": float("nan"),
        "n_volumes": len(indices),
        "synthetic": True,
        "source_kind": SYNTHETIC_SOURCE,
        "seed": int(seed),
    }
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        create_split(f, int(size), settings)
        images = phantoms(n, size, seed, start)
        append_split(
            f, images, phantom_names(indices), np.zeros(n, np.int32), np.ones(n, np.float32)
        )
        f.attrs["n_images"] = n
    return n


# -- DICOM series -------------------------------------------------------------------------------
def hu_to_unit(hu: np.ndarray, hu_max: float = HU_MAX) -> np.ndarray:
    """Hounsfield units -> [0, 1] attenuation: ``(1 + HU / 1000) / (1 + hu_max / 1000)``, clipped.

    Linear in the attenuation ``mu = mu_water (1 + HU / 1000)``: air (-1000 HU) is 0,
    ``hu_max`` is 1.
    """
    if hu_max <= -1000:
        raise ValueError(f"hu_max must be above air's -1000 HU, got {hu_max}")
    return np.clip((1000.0 + np.asarray(hu, np.float64)) / (1000.0 + hu_max), 0.0, 1.0)


@dataclass(frozen=True)
class DicomSeries:
    """The slices of one series in anatomical order, in Hounsfield units."""

    folder: Path
    files: list[Path]
    hu: np.ndarray  # float32 [n, H, W]


def list_dicom_files(folder: str | Path) -> list[Path]:
    """The ``.dcm`` / ``.IMA`` files of ``folder`` by name (:func:`read_dicom_series` sorts)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"DICOM folder '{folder}' does not exist or is not a directory")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in DICOM_SUFFIXES
    )
    if not files:
        raise DataError(f"DICOM folder '{folder}' holds no {' / '.join(DICOM_SUFFIXES)} files")
    return files


def _read_slice(path: Path):
    """``(dataset, HU float64 [H, W])`` of one file; every problem names the file."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise DataError(f"{path}: not a DICOM file ({err})") from err
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: cannot be read as DICOM ({err}); truncated?") from err
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise DataError(f"{path}: DICOM file has no pixel data (not an image slice)")
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as err:  # pydicom raises many types for bad or compressed pixel data
        raise DataError(f"{path}: its pixel data cannot be decoded ({err})") from err
    if pixels.ndim != 2:
        raise DataError(
            f"{path}: pixel data has shape {pixels.shape}; expected one 2D slice [rows, columns]"
        )
    missing = [k for k in ("RescaleSlope", "RescaleIntercept") if k not in ds]
    if missing:
        raise DataError(f"{path}: lacks {missing}, so its values cannot be converted to HU")
    hu = pixels.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    if not np.all(np.isfinite(hu)):
        raise DataError(f"{path}: {int(np.sum(~np.isfinite(hu)))} pixels are NaN or infinite")
    return ds, hu


def _slice_order(datasets: list, files: list[Path]) -> list[int]:
    """Indices ordering the slices along the slice normal, else by InstanceNumber, else name."""
    try:
        positions = []
        for ds in datasets:
            row, col = np.asarray(ds.ImageOrientationPatient, np.float64).reshape(2, 3)
            positions.append(float(np.dot(np.cross(row, col), ds.ImagePositionPatient)))
        return sorted(range(len(files)), key=lambda i: (positions[i], files[i].name))
    except (AttributeError, ValueError, TypeError):
        pass
    if all("InstanceNumber" in ds for ds in datasets):
        return sorted(range(len(files)), key=lambda i: (int(datasets[i].InstanceNumber), i))
    return list(range(len(files)))


def read_dicom_series(folder: str | Path) -> DicomSeries:
    """Read every slice of a DICOM series folder, in Hounsfield units, in anatomical order."""
    files = list_dicom_files(folder)
    datasets, slices = [], []
    for path in files:
        ds, hu = _read_slice(path)
        if slices and hu.shape != slices[0].shape:
            raise DataError(
                f"{path}: slice of shape {hu.shape} differs from the series' "
                f"{slices[0].shape} (first file {files[0]})"
            )
        datasets.append(ds)
        slices.append(hu)
    order = _slice_order(datasets, files)
    return DicomSeries(
        Path(folder),
        [files[i] for i in order],
        np.stack([slices[i] for i in order]).astype(np.float32),
    )


def resize_square(images: np.ndarray, image_size: int) -> np.ndarray:
    """The central square of ``[n, H, W]`` resized (antialiased bicubic) to ``image_size``,
    clipped to [0, 1]."""
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    x = images[..., top : top + side, left : left + side]
    if side != image_size:
        # Imported here: the synthetic phantoms (the demo's CT) need no torch.
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
        t = F.interpolate(
            t, size=(image_size, image_size), mode="bicubic", antialias=True, align_corners=False
        )
        x = t[:, 0].numpy()
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def dicom_images(
    folder: str | Path, image_size: int, hu_max: float = HU_MAX
) -> tuple[np.ndarray, DicomSeries]:
    """A series' slices as [0, 1] attenuation images ``[n, image_size, image_size]``."""
    series = read_dicom_series(folder)
    return resize_square(hu_to_unit(series.hu, hu_max), image_size), series


def write_dicom_split(
    folders: Sequence[str | Path],
    output: str | Path,
    *,
    image_size: int,
    split: str,
    hu_max: float = HU_MAX,
    root: str | Path | None = None,
) -> int:
    """Write the DICOM series ``folders`` (one patient or scan each) as one split file.

    Training takes every slice of each series; the evaluation and tuning splits its
    central slice. Series are read one at a time; a bad file anywhere stops the write
    and leaves no output (:func:`patchpnp.atomic.atomic_path`). Returns the image count.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; expected one of {SPLITS}")
    if not folders:
        raise DataError(f"no DICOM series given for split '{split}' of {output}")
    scale = np.float32(1.0 + hu_max / 1000.0)
    settings = {
        "split": split,
        "image_size": int(image_size),
        "crop_size": 0,  # the largest native square side, known once every series is read
        "edge_slices": 0,
        "scale_percentile": float("nan"),
        "n_volumes": len(folders),
        "synthetic": False,
        "source_kind": "dicom",
        "hu_max": float(hu_max),
    }
    total = crop = 0
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
        create_split(f, int(image_size), settings)
        for folder in folders:
            images, series = dicom_images(folder, image_size, hu_max)
            central = split in CENTRAL_SLICE_SPLITS
            index = [len(images) // 2] if central else list(range(len(images)))
            name = os.path.relpath(series.folder, root) if root is not None else str(folder)
            append_split(
                f, images[index], [name] * len(index), np.asarray(index, np.int32),
                np.full(len(index), scale),
            )  # fmt: skip
            total += len(index)
            crop = max(crop, min(series.hu.shape[-2:]))
        f.attrs.update(n_images=total, crop_size=crop)
    return total


def patient_folders(root: str | Path) -> list[Path]:
    """The patient (series) folders directly under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"CT folder {root} does not exist (config key padis.ct.root / *_dir)")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise DataError(f"CT folder {root} holds no patient folders (one DICOM series each)")
    return folders


def ct_split_command(
    *,
    output: str,
    split: str,
    ct_source: str,
    image_size: int,
    images: int = 0,
    first_image: int = 0,
    seed: int = 0,
    folder: str | None = None,
    hu_max: float = HU_MAX,
) -> str:
    """``patchpnp ct-split``: one split of the CT dataset of snakemake padis.

    ``synthetic``: phantoms ``first_image .. first_image + images - 1`` of ``seed``.
    ``dicom``: the patients of ``folder`` from the ``first_image``-th on, ``images`` of
    them (0: all), every slice for training, the central one otherwise.
    """
    if ct_source == "synthetic":
        n = write_phantom_split(output, images, image_size, seed, split, start=first_image)
        return f"wrote {n} synthetic ellipse phantoms to {output}"
    if ct_source != "dicom":
        raise ValueError(f"unknown CT source {ct_source!r}; expected synthetic or dicom")
    if folder is None:
        raise DataError("ct-split: a DICOM split needs --folder")
    patients = patient_folders(folder)[first_image:]
    patients = patients[:images] if images else patients
    if len(patients) < max(images, 1):
        raise DataError(
            f"CT folder {folder}: {len(patients)} patient folders from number {first_image} "
            f"on, but split '{split}' needs {images}"
        )
    n = write_dicom_split(
        patients, output, image_size=image_size, split=split, hu_max=hu_max, root=folder
    )
    return f"wrote {n} slices of {len(patients)} patients to {output}"
