"""Reading fastMRI volumes: layout detection and input checks.

A fastMRI volume is an HDF5 file holding ``kspace`` (complex64; singlecoil
``[slices, H, W]``, multicoil ``[slices, coils, H, W]``), a magnitude
reconstruction (``reconstruction_esc`` for singlecoil, ``reconstruction_rss``
for multicoil, float32 ``[slices, 320, 320]``), file attributes (``acquisition``,
``max``, ``norm``, ``patient_id``) and an ``ismrmrd_header`` XML string.

Every problem with the input raises :class:`DataError` with a message that
names the file (and slice) and says what was expected, so that a bad file in a
289k-slice run is found by its name, not by a stack trace.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from patchpnp.errors import PatchpnpError

RECONSTRUCTION_KEY = {"singlecoil": "reconstruction_esc", "multicoil": "reconstruction_rss"}


class DataError(PatchpnpError, ValueError):
    """The input data is missing or malformed; the message names the file."""


def list_volumes(root: str | Path, subdir: str) -> list[Path]:
    """All ``*.h5`` volumes in ``root/subdir``, sorted by name.

    Sorted order makes the choice of evaluation and tuning volumes a pure
    function of the directory's content.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"fastMRI root '{root}' does not exist or is not a directory")
    folder = root / subdir
    if not folder.is_dir():
        raise DataError(
            f"fastMRI directory '{folder}' does not exist (expected a folder of .h5 volumes)"
        )
    files = sorted(p for p in folder.iterdir() if p.suffix == ".h5" and p.is_file())
    if not files:
        raise DataError(f"fastMRI directory '{folder}' holds no .h5 volumes")
    return files


def split_eval_volumes(
    files: list[Path], n_eval: int, n_tune: int, where: str
) -> dict[str, list[Path]]:
    """Evaluation volumes are the first ``n_eval`` by name; tuning volumes the next ``n_tune``.

    The two sets are disjoint by construction, so tuned hyper-parameters never
    see an evaluation slice.
    """
    need = n_eval + n_tune
    if len(files) < need:
        raise DataError(
            f"'{where}' holds {len(files)} volumes, "
            f"fewer than n_eval + n_tune = {n_eval} + {n_tune}"
        )
    return {"eval": files[:n_eval], "tune": files[n_eval:need]}


def resolution_volumes(
    files: list[Path], n_eval: int, n_tune: int, n_more: int, where: str
) -> list[Path]:
    """snakemake resolution's evaluation volumes: the ``n_eval`` of the grid, then the
    ``n_more`` after the tuning volumes, so they extend the grid's evaluation set and
    stay disjoint from the tuning set."""
    need = n_eval + n_tune
    if len(files) < need + n_more:
        raise DataError(
            f"'{where}' holds {len(files)} volumes, fewer than the {n_eval} evaluation "
            f"and {n_tune} tuning volumes plus the {n_more} more that config key "
            f"'resolution.n_eval' ({n_eval + n_more}) asks for"
        )
    return files[:n_eval] + files[need : need + n_more]


@dataclass(frozen=True)
class Volume:
    """What the header of one fastMRI volume says; no pixel data is read."""

    path: Path
    layout: str
    recon_key: str
    n_slices: int
    height: int
    width: int
    acquisition: str


def _layout_of(path: Path, f: h5py.File) -> str:
    if "kspace" in f:
        ndim = f["kspace"].ndim
        if ndim == 3:
            return "singlecoil"
        if ndim == 4:
            return "multicoil"
        raise DataError(
            f"{path}: 'kspace' has {ndim} dimensions; expected 3 (singlecoil) or 4 (multicoil)"
        )
    for layout, key in RECONSTRUCTION_KEY.items():
        if key in f:
            return layout
    raise DataError(
        f"{path}: neither 'kspace' nor a reconstruction "
        f"({' / '.join(RECONSTRUCTION_KEY.values())}) found; is this a fastMRI volume?"
    )


@contextmanager
def open_volume(path: Path) -> Iterator[h5py.File]:
    """``path`` opened for reading; a missing, non-HDF5 or truncated file is a
    :class:`DataError` naming it (h5py reports truncation and corruption as OSError)."""
    if not path.is_file():
        raise DataError(f"{path}: file does not exist")
    if not h5py.is_hdf5(path):
        raise DataError(f"{path}: not an HDF5 file (truncated, empty or another format)")
    try:
        with h5py.File(path, "r") as f:
            yield f
    except OSError as err:
        raise DataError(
            f"{path}: cannot be read as HDF5 ({err}); the file may be truncated"
        ) from err


def acquisition_of(f: h5py.File) -> str:
    """The volume's ``acquisition`` attribute as text ('' when absent)."""
    acq = f.attrs.get("acquisition", "")
    return acq.decode() if isinstance(acq, bytes) else str(acq)


def inspect_volume(path: str | Path, layout: str = "any") -> Volume:
    """Open ``path`` and check that it is a readable fastMRI volume of ``layout``."""
    path = Path(path)
    with open_volume(path) as f:
        found = _layout_of(path, f)
        if layout != "any" and found != layout:
            raise DataError(f"{path}: volume is {found}, but the dataset expects {layout}")
        key = RECONSTRUCTION_KEY[found]
        if key not in f:
            raise DataError(
                f"{path}: {found} volume has no '{key}' reconstruction "
                f"(fastMRI test/challenge volumes ship k-space only and cannot be used)"
            )
        recon = f[key]
        if recon.ndim != 3:
            raise DataError(
                f"{path}: '{key}' has shape {recon.shape}; expected [slices, height, width]"
            )
        n, h, w = recon.shape
        if n == 0:
            raise DataError(f"{path}: '{key}' holds no slices")
        return Volume(path, found, key, n, h, w, acquisition_of(f))


def read_slices(volume: Volume, indices: list[int]) -> np.ndarray:
    """Read reconstruction slices ``indices`` as float32 ``[n, H, W]``; reject NaN / inf."""
    try:
        with h5py.File(volume.path, "r") as f:
            data = np.asarray(f[volume.recon_key][sorted(indices)], dtype=np.float32)
    except OSError as err:
        raise DataError(
            f"{volume.path}: reading '{volume.recon_key}' failed ({err}); the file may be truncated"
        ) from err
    bad = ~np.isfinite(data)
    if bad.any():
        where = sorted(indices)[int(np.nonzero(bad.any(axis=(1, 2)))[0][0])]
        raise DataError(f"{volume.path}: slice {where} of '{volume.recon_key}' contains NaN or inf")
    return data
