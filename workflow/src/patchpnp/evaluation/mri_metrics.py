"""fastMRI's evaluation metrics for complex MRI reconstructions (ALGORITHMS.md section 11).

numpy and scikit-image only (no torch): these follow fastMRI's ``evaluate.py``.

Why magnitudes. A reconstruction is a complex image carried as two real channels
``[..., 2, H, W]`` (real, imaginary). Its phase is set by the coil maps' phase
convention (ESPIRiT fixes it only up to a smooth, arbitrary reference), so it carries
no anatomy and two equally good reconstructions may differ in it; radiologists read
magnitude images, and fastMRI scores the magnitude (its targets are RSS / ``|x|``
images). Every metric here therefore compares ``|recon|`` with ``|target|``.

Why the volume's maximum as the data range. MRI intensities are in arbitrary scanner
units, so PSNR and SSIM need a data range from the data: fastMRI uses the maximum of
the target *volume* (``gt.max()`` over all its slices), one value for every slice of a
volume. A per-slice maximum would make a dark edge slice's errors count more than the
same errors in a bright central slice, and the reference would move with the slice's
content rather than with the scan. Here ``data_range`` is given per image, so a caller
passes each slice its own volume's maximum of the target magnitude (and a per-volume
intensity scaling of both images leaves every score unchanged).

NMSE is ``||gt - pred||^2 / ||gt||^2`` (scale-free, no data range). SSIM is
``skimage.metrics.structural_similarity`` with its defaults (7 x 7 uniform window), as
fastMRI's ``evaluate.ssim`` calls it, on 2D magnitude slices.
"""

from __future__ import annotations

import numpy as np

__all__ = ["magnitude", "mri_scores", "nmse", "psnr", "ssim"]


def magnitude(x) -> np.ndarray:
    """``[..., 2, H, W]`` real (real, imaginary) -> ``[..., H, W]`` magnitude, float64."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim < 3 or a.shape[-3] != 2:
        raise ValueError(f"expected a 2-channel (real, imag) array [..., 2, H, W], got {a.shape}")
    return np.hypot(a[..., 0, :, :], a[..., 1, :, :])


def _pair(gt, pred) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(gt, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: target {a.shape} vs prediction {b.shape}")
    return a, b


def nmse(gt, pred) -> float:
    """Normalised MSE ``||gt - pred||^2 / ||gt||^2`` (fastMRI's ``nmse``)."""
    a, b = _pair(gt, pred)
    return float(np.sum((a - b) ** 2) / np.sum(a**2))


def psnr(gt, pred, data_range: float) -> float:
    """``10 log10(data_range^2 / MSE)`` in dB; inf for identical images."""
    a, b = _pair(gt, pred)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(float(data_range) ** 2 / mse))


def ssim(gt, pred, data_range: float) -> float:
    """SSIM of two 2D images: skimage's ``structural_similarity`` (7 x 7 window)."""
    from skimage.metrics import structural_similarity

    a, b = _pair(gt, pred)
    if a.ndim != 2:
        raise ValueError(f"ssim compares 2D images, got shape {a.shape}")
    return float(structural_similarity(a, b, data_range=float(data_range)))


def mri_scores(recon, target, data_range) -> dict[str, np.ndarray]:
    """PSNR, SSIM and NMSE of each image's magnitude: ``{name: [n]}``.

    Args:
        recon, target: ``[n, 2, H, W]`` real (real, imaginary) images (numpy arrays, or
            anything ``np.asarray`` takes, e.g. CPU tensors).
        data_range: ``[n]`` (or a scalar): each image's volume maximum of ``|target|``.
    """
    r, t = magnitude(recon), magnitude(target)
    if r.shape != t.shape or r.ndim != 3:
        raise ValueError(
            f"expected recon and target [n, 2, H, W] of one shape, got "
            f"{np.shape(recon)} and {np.shape(target)}"
        )
    n = r.shape[0]
    dr = np.broadcast_to(np.asarray(data_range, dtype=np.float64).reshape(-1), (n,))
    if not np.all(dr > 0):
        raise ValueError(f"data_range must be positive, got {dr}")
    return {
        "psnr": np.array([psnr(t[i], r[i], dr[i]) for i in range(n)]),
        "ssim": np.array([ssim(t[i], r[i], dr[i]) for i in range(n)]),
        "nmse": np.array([nmse(t[i], r[i]) for i in range(n)]),
    }
