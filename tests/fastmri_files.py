"""Small fastMRI-layout volumes written by the tests (both layouts, and broken ones)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np


def phantom(n_slices: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth positive images [n, size, size] with a bright disc that moves per slice."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    out = []
    for s in range(n_slices):
        cx, cy = rng.uniform(-0.3, 0.3, 2)
        disc = ((x - cx) ** 2 + (y - cy) ** 2 < 0.3) * (1.0 + s)
        out.append(0.2 + disc + 0.05 * rng.random((size, size)))
    return np.asarray(out, dtype=np.float32)


def write_volume(
    path: Path,
    layout: str = "singlecoil",
    n_slices: int = 6,
    size: int = 40,
    coils: int = 3,
    recon: np.ndarray | None = None,
    with_recon: bool = True,
    seed: int = 0,
) -> np.ndarray:
    """Write a fastMRI-layout volume; return its reconstruction."""
    path.parent.mkdir(parents=True, exist_ok=True)
    recon = phantom(n_slices, size, seed) if recon is None else recon
    n, h, w = recon.shape
    with h5py.File(path, "w") as f:
        if layout == "singlecoil":
            f.create_dataset(
                "kspace",
                data=np.fft.fft2(np.nan_to_num(recon, posinf=0, neginf=0)).astype(np.complex64),
            )
            key = "reconstruction_esc"
        else:
            k = np.fft.fft2(np.nan_to_num(recon, posinf=0, neginf=0))[:, None].repeat(
                coils, axis=1
            ) / np.sqrt(coils)
            f.create_dataset("kspace", data=k.astype(np.complex64))
            key = "reconstruction_rss"
        if with_recon:
            f.create_dataset(key, data=recon)
        f.create_dataset("ismrmrd_header", data="<ismrmrdHeader/>")
        f.attrs.update(
            acquisition="TEST",
            max=float(recon.max()),
            norm=float(np.linalg.norm(recon)),
            patient_id=path.stem,
        )
    return recon


def write_folder(folder: Path, n: int, layout: str = "singlecoil", **kw) -> list[Path]:
    paths = [folder / f"file{1000 + i}.h5" for i in range(n)]
    for i, p in enumerate(paths):
        write_volume(p, layout, seed=i, **kw)
    return paths
