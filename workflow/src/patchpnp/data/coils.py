"""Coil sensitivities and coil combination for multicoil MRI (docs/methods.md section 11).

Arrays put coils on axis -3: one slice is ``[C, H, W]``, a volume ``[S, C, H, W]``.
Everything here is numpy (sigpy on its CPU device for ESPIRiT); the centred
orthonormal FFTs are the demo's, so data and simulation share one convention.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from patchpnp.data.demo import fft2c, ifft2c

__all__ = [
    "check_calibration",
    "coil_combine",
    "coil_covariance",
    "compress_coils",
    "compression_matrix",
    "espirit_maps",
    "fft2c",
    "ifft2c",
    "rss",
    "virtual_coil_matrix",
]


def check_calibration(calib_width: int, height: int, width: int, kernel_width: int = 6) -> None:
    """ESPIRiT needs a calibration square inside k-space and larger than its kernel."""
    if not kernel_width < calib_width <= min(height, width):
        raise ValueError(
            f"mri.calib_width {calib_width} must exceed the ESPIRiT kernel width {kernel_width} "
            f"and fit the {height} x {width} k-space"
        )


def espirit_maps(
    kspace: np.ndarray,
    calib_width: int,
    threshold: float = 0.02,
    crop: float = 0.95,
    kernel_width: int = 6,
) -> np.ndarray:
    """ESPIRiT coil maps complex64 ``[C, H, W]`` of one slice's k-space ``[C, H, W]``.

    Only the fully sampled ``calib_width`` x ``calib_width`` centre of ``kspace`` is
    used, so the maps are those a scanner's calibration scan gives: computed once from
    fully sampled data, as fastMRI benchmarks precompute them, and never from the
    undersampled lines a reconstruction sees. Maps are zero where the leading
    eigenvalue is below ``crop`` (outside the object), and phase-referenced to coil 0.
    """
    import sigpy
    from sigpy.mri.app import EspiritCalib

    kspace = np.asarray(kspace)
    if kspace.ndim != 3:
        raise ValueError(f"expected one slice's k-space [coils, H, W], got shape {kspace.shape}")
    check_calibration(calib_width, *kspace.shape[-2:], kernel_width)
    maps = EspiritCalib(
        kspace.astype(np.complex64),
        calib_width=calib_width,
        thresh=threshold,
        kernel_width=kernel_width,
        crop=crop,
        device=sigpy.cpu_device,
        show_pbar=False,
    ).run()
    return np.asarray(maps, dtype=np.complex64)


def coil_combine(coil_images: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """``sum_c conj(S_c) img_c``: the adjoint of the coil expansion ``x -> S x``."""
    return (np.conj(maps) * coil_images).sum(axis=-3)


def rss(coil_images: np.ndarray) -> np.ndarray:
    """Root sum of squares over the coil axis: fastMRI's magnitude reconstruction."""
    return np.sqrt((np.abs(coil_images) ** 2).sum(axis=-3))


def coil_covariance(kspace: np.ndarray) -> np.ndarray:
    """``X X^H`` (complex128 ``[C, C]``) of the coil x samples matrix ``X`` of ``[..., C, H, W]``
    data; sums over slices, so a volume can be accumulated one slice at a time."""
    x = np.moveaxis(np.asarray(kspace, np.complex128), -3, 0).reshape(kspace.shape[-3], -1)
    return x @ x.conj().T


def compression_matrix(covariance: np.ndarray, n_virtual: int) -> np.ndarray:
    """``[n_virtual, C]`` rows = the top ``n_virtual`` left singular vectors of ``X``
    (eigenvectors of ``X X^H``), conjugated: virtual coils = matrix @ coils."""
    c = covariance.shape[0]
    if n_virtual > c:
        raise ValueError(f"cannot compress {c} coils into {n_virtual}; pad instead")
    _, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues
    return vectors[:, ::-1][:, :n_virtual].conj().T.astype(np.complex64)


def apply_compression(kspace: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Virtual coils ``[..., V, H, W]`` of ``[..., C, H, W]`` data (linear per sample, so it
    commutes with the FFT and the crop)."""
    return np.einsum("vc,...chw->...vhw", matrix, kspace).astype(np.complex64)


def virtual_coil_matrix(
    n_coils: int, n_virtual: int | None, covariance: Callable[[], np.ndarray]
) -> np.ndarray | None:
    """The ``[n_virtual, n_coils]`` matrix mapping a volume's coils to the file's: None
    keeps them (``n_virtual`` None or equal), the identity's first columns pad with zero
    coils, the SVD compresses. ``covariance`` (the volume's :func:`coil_covariance`) is
    called only to compress, so padding and keeping read no data."""
    if n_virtual is None or n_virtual == n_coils:
        return None
    if n_virtual > n_coils:
        return np.eye(n_virtual, n_coils, dtype=np.complex64)
    return compression_matrix(covariance(), n_virtual)


def compress_coils(kspace_volume: np.ndarray, n_virtual: int) -> np.ndarray:
    """SVD coil compression of a volume ``[S, C, H, W]`` to ``[S, n_virtual, H, W]``.

    fastMRI brain volumes have 4 to 20 coils, but one split file holds one coil count
    (its k-space and maps are dense arrays, and the forward model batches them). One
    matrix for the whole volume, from all its slices, keeps the virtual coils the same
    across slices; it keeps the most energy any ``n_virtual`` coil combinations can.
    Fewer coils than ``n_virtual`` are padded with zero coils (they measure nothing, and
    their ESPIRiT maps are zero); exactly ``n_virtual`` are returned unchanged.
    """
    kspace_volume = np.asarray(kspace_volume)
    matrix = virtual_coil_matrix(
        kspace_volume.shape[-3], n_virtual, lambda: coil_covariance(kspace_volume)
    )
    return kspace_volume if matrix is None else apply_compression(kspace_volume, matrix)
