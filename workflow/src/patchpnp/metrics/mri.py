"""fastMRI's evaluation metrics for complex MRI reconstructions (docs/methods.md section 11).

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
passes each slice its own volume's maximum of the target magnitude
(:func:`volume_data_range`: the scored target ``|x|``, over the slices scored from
that volume; not the RSS, which exceeds ``|x|`` at every pixel with unit-norm coil
maps and would bias every PSNR and SSIM upward), and a per-volume intensity scaling of
both images leaves every score unchanged.

Why an estimated noise level for data consistency. Retrospective undersampling keeps
the scanner's own noise, whose level no config knows. :func:`kspace_noise_sigma`
estimates it per slice from the k-space corners (the highest spatial frequencies, where
the signal has decayed), so a reconstruction consistent with the data scores about 1.

PSNR is the package's one :func:`patchpnp.metrics.quality.psnr` (``+inf`` for identical
images, as fastMRI's), given each image's data range. NMSE is ``||gt - pred||^2 /
||gt||^2`` (scale-free, no data range). SSIM is
``skimage.metrics.structural_similarity`` with its defaults (7 x 7 uniform window), as
fastMRI's ``evaluate.ssim`` calls it, on 2D magnitude slices.
"""

from __future__ import annotations

import numpy as np

from patchpnp.metrics.quality import psnr

__all__ = [
    "kspace_noise_sigma",
    "magnitude",
    "mri_scores",
    "nmse",
    "ssim",
    "volume_data_range",
]

# The corners of centred k-space beyond this fraction of each half-width hold no
# resolvable signal at fastMRI's (and the demo's) resolution: their spread is the noise.
NOISE_CORNER = 0.75
# The normal distribution's MAD-to-sigma factor.
MAD_TO_SIGMA = 1.4826


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
        "psnr": psnr(r, t, dr),
        "ssim": np.array([ssim(t[i], r[i], dr[i]) for i in range(n)]),
        "nmse": np.array([nmse(t[i], r[i]) for i in range(n)]),
    }


def volume_data_range(targets, sources) -> np.ndarray:
    """Each image's data range: the maximum of the target magnitude over the slices of
    its volume that are scored (fastMRI's ``gt.max()`` per volume). ``targets`` ``[n, 2,
    H, W]`` (real, imaginary), ``sources`` ``[n]`` the volume of each slice."""
    mag = magnitude(targets)
    sources = np.asarray(sources)
    if mag.shape[0] != sources.shape[0]:
        raise ValueError(f"{mag.shape[0]} targets but {sources.shape[0]} volume names")
    per_image = mag.reshape(mag.shape[0], -1).max(axis=1)
    out = np.empty_like(per_image)
    for volume in np.unique(sources):
        here = sources == volume
        out[here] = per_image[here].max()
    if not (out > 0).all():
        raise ValueError("a scored volume is all zero: no data range")
    return out


def kspace_noise_sigma(kspace, corner: float = NOISE_CORNER) -> np.ndarray:
    """The noise standard deviation per real component of each slice's measured k-space
    ``[n, C, H, W]`` (complex, centred), from its four corners: frequencies beyond
    ``corner`` of the half-width in both directions. Robust (median absolute deviation
    of the real and imaginary parts over every coil), so a little signal left in the
    corners barely moves it."""
    k = np.asarray(kspace)
    if k.ndim != 4 or not np.iscomplexobj(k):
        raise ValueError(f"expected complex k-space [n, C, H, W], got {k.dtype} {k.shape}")
    h, w = k.shape[-2:]
    rows = np.abs(np.arange(h) - h // 2) >= corner * h / 2
    cols = np.abs(np.arange(w) - w // 2) >= corner * w / 2
    if not rows.any() or not cols.any():
        raise ValueError(f"k-space {h} x {w} has no corner beyond {corner} of its half-width")
    region = k[:, :, rows][:, :, :, cols].reshape(k.shape[0], -1)
    parts = np.concatenate([region.real, region.imag], axis=1).astype(np.float64)
    centred = parts - np.median(parts, axis=1, keepdims=True)
    sigma = MAD_TO_SIGMA * np.median(np.abs(centred), axis=1)
    if not (sigma > 0).all():
        raise ValueError("k-space corners are exactly zero: no noise to estimate")
    return sigma
