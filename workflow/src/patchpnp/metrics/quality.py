"""Image-quality and consistency metrics, per image (docs/methods.md section 7).

PSNR uses ``data_range = 1`` on [0, 1] images. fastMRI's convention (data range = the
volume's maximum, on images in scanner units) is not reported: the evaluation images
are scaled by a percentile and clipped to [0, 1], so neither the volume's maximum nor
the scanner units survive, and a per-slice maximum of scaled images would only be an
imitation of it.

Images are batches ``[B, C, H, W]`` (or ``[B, H, W]``) in [0, 1] units, torch tensors or
numpy arrays; every metric returns one value per image, ``[B]``, as a numpy array or
(when ``x`` is a tensor) a float64 CPU tensor. :func:`psnr` is the package's only PSNR
(the grid, MRI's fastMRI scores, posterior cells, the denoiser check and the figures all
call it). Importing this module does not import torch: PSNR and SSIM of numpy arrays
stay torch-free (the figures, :mod:`patchpnp.metrics.mri`), and torch is imported where
a tensor or the LPIPS network is used.

LPIPS needs torchvision's ImageNet AlexNet weights, which torchvision downloads on
first use. This module never downloads (:mod:`patchpnp.metrics.lpips_weights` fetches
them, once, in the workflow's local rule ``lpips_weights``): :class:`LPIPSMetric` uses
only the checkpoint it is given, or else the one in torch hub's cache, checked against
the hash in its file name, and when there is none it records LPIPS as missing (NaN)
with a :class:`LPIPSUnavailableWarning`: a random backbone never yields a number called
LPIPS. :func:`lpips_metric` builds it for a mode of the config key ``metrics.lpips``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from patchpnp.metrics.lpips_weights import (
    LPIPSWeightsError,
    alexnet_checkpoint_path,
    sha256_prefix_ok,
)
from patchpnp.params import LPIPS_MODES

if TYPE_CHECKING:
    import torch

    from patchpnp.physics.base import LinearOperator

log = logging.getLogger(__name__)

__all__ = [
    "LPIPSMetric",
    "LPIPSUnavailableWarning",
    "alexnet_checkpoint_path",
    "lpips_metric",
    "data_consistency",
    "band_rmse",
    "psnr",
    "ssim",
]


# -- array plumbing ------------------------------------------------------------------------
def _is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor (there is none unless torch was imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _as_numpy(x) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().to("cpu", sys.modules["torch"].float64).numpy()
    return np.asarray(x, dtype=np.float64)


def _as_batch(x) -> np.ndarray:
    """``[B, C, H, W]`` or ``[B, H, W]`` -> float64 ``[B, C, H, W]``."""
    a = _as_numpy(x)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W] or [B, H, W], got shape {a.shape}")
    return a


def _like(values: np.ndarray, x):
    """Return per-image ``values`` as the kind of array ``x`` is (tensor or numpy)."""
    if _is_tensor(x):
        return sys.modules["torch"].from_numpy(np.ascontiguousarray(values, dtype=np.float64))
    return values


def _pair(x, ref) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_batch(x), _as_batch(ref)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs reference {b.shape}")
    return a, b


# -- PSNR / SSIM -----------------------------------------------------------------------------
def psnr(x, ref, data_range: float | np.ndarray | torch.Tensor = 1.0):
    """Per-image PSNR ``10 log10(data_range^2 / MSE)`` in dB: the package's one PSNR.

    ``x`` and ``ref`` are batches ``[B, C, H, W]`` or ``[B, H, W]`` (one image ``a``:
    ``psnr(a[None], b[None])[0]``); the MSE is the mean over each image's pixels and
    channels, in float64. ``data_range`` is a float (1 for [0, 1] images) or one value
    per image (fastMRI's volume maximum, :func:`patchpnp.metrics.mri.mri_scores`).

    Identical images (MSE 0) score ``+inf``, as scikit-image's
    ``peak_signal_noise_ratio`` and fastMRI's ``evaluate.psnr`` do, without a warning.
    The MSE is never clamped: a floor (1e-12, say) would report a perfect
    reconstruction as an arbitrary finite 120 dB and hide it inside a mean. The tables
    need no special case: identical images never occur in a grid (every task adds
    noise: the config refuses ``sigma_n <= 0``), and if one did, its cell's mean would
    be ``inf``, in plain sight rather than 120 dB.
    """
    a, b = _pair(x, ref)
    mse = ((a - b) ** 2).reshape(a.shape[0], -1).mean(axis=1)
    dr = np.broadcast_to(_as_numpy(data_range).reshape(-1), (a.shape[0],))
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(dr**2 / mse)
    return _like(values, x)


def band_rmse(x, ref, width: int):
    """Per-image RMSE in the outer band of ``width`` pixels and in the interior.

    Returns ``(band, interior)``. The band is where padding acts: a prior that sees a
    clean black margin (or a seam at the border) leaves its errors there, so the ratio
    band / interior is a boundary-artifact score (Fig. 1's effect, as a number).
    """
    a, b = _pair(x, ref)
    h, w = a.shape[-2:]
    width = int(width)
    if not 0 < 2 * width < min(h, w):
        raise ValueError(f"band width must be in [1, {(min(h, w) - 1) // 2}], got {width}")
    inner = np.zeros((h, w), dtype=bool)
    inner[width : h - width, width : w - width] = True
    err = (a - b) ** 2
    band = np.sqrt(err[..., ~inner].reshape(a.shape[0], -1).mean(axis=1))
    interior = np.sqrt(err[..., inner].reshape(a.shape[0], -1).mean(axis=1))
    return _like(band, x), _like(interior, x)


def ssim(x, ref, data_range: float = 1.0):
    """Per-image SSIM (skimage's ``structural_similarity``, ``data_range = 1``)."""
    from skimage.metrics import structural_similarity

    a, b = _pair(x, ref)
    values = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        if a.shape[1] == 1:
            values[i] = structural_similarity(a[i, 0], b[i, 0], data_range=data_range)
        else:
            values[i] = structural_similarity(a[i], b[i], data_range=data_range, channel_axis=0)
    return _like(values, x)


# -- data consistency -------------------------------------------------------------------------
def data_consistency(
    operator: LinearOperator, x_hat: torch.Tensor, y: torch.Tensor, sigma_n: float
) -> torch.Tensor:
    """``||A x_hat - y|| / (sigma_n sqrt(m))`` per image; about 1 when ``x_hat`` explains ``y``.

    ``m`` is the number of real measurements per image (a complex k-space sample counts
    twice, matching noise of std ``sigma_n`` per real component), so ``E ||n||^2 = m
    sigma_n^2`` and the score of the ground truth is 1 up to ``O(1/sqrt(m))``. Well below
    1 means the reconstruction fits the noise; well above, it ignores the measurements.
    """
    import torch

    if not sigma_n > 0:
        raise ValueError(f"data consistency needs sigma_n > 0, got {sigma_n}")
    x_hat = torch.as_tensor(x_hat)
    with torch.no_grad():
        residual = operator.A(x_hat) - y
        norms = torch.linalg.vector_norm(residual.reshape(residual.shape[0], -1), dim=1)
    m = operator.num_measurements(x_hat.shape)
    return (norms.to(torch.float64) / (sigma_n * m**0.5)).cpu()


# -- LPIPS ------------------------------------------------------------------------------------
class LPIPSUnavailableWarning(UserWarning):
    """LPIPS could not be computed with genuine pretrained weights; it is recorded as NaN."""


class LPIPSMetric:
    """Per-image LPIPS (``lpips`` package, AlexNet, v0.1) on [0, 1] grayscale images.

    Images are clamped to [0, 1], repeated to 3 channels and mapped to [-1, 1]. The
    linear calibration layers ship with the ``lpips`` package; the AlexNet backbone is
    loaded only from a local copy of torchvision's ImageNet checkpoint (never
    downloaded): the LPIPS model is built with an untrained trunk (no download
    attempted) and the weights are then copied into it, after checking the file's
    sha256 against the prefix in its name (``verify_hash``) and loading it strictly into
    a torchvision AlexNet.

    When that is impossible, ``available`` is False, ``reason`` says why, and calling
    the metric returns NaN per image and warns once (:class:`LPIPSUnavailableWarning`).
    A metric built with ``enabled=False`` (``metrics.lpips: off``) returns NaN without
    warning: it says so once, in the log, when it is built.

    Args:
        device: where to run the network.
        checkpoint: the AlexNet checkpoint to use; default :func:`alexnet_checkpoint_path`
            (torch hub's cache).
        verify_hash: check the file's sha256 against its name (reads ~230 MB once).
        enabled: False for a metric that is off (NaN, no warning, nothing loaded).
    """

    def __init__(
        self,
        device: str | torch.device = "cpu",
        checkpoint: str | Path | None = None,
        verify_hash: bool = True,
        enabled: bool = True,
    ):
        import torch

        self.device = torch.device(device)
        self.model = None
        self.available = False
        self.reason = ""
        self._warned = False
        self.checkpoint = Path(checkpoint) if checkpoint else None
        if not enabled:
            self.reason = "LPIPS is off"
            self._warned = True  # off is a choice, not a problem: no warning
            log.info("%s: it is recorded as missing (NaN)", self.reason)
            return
        try:
            self.checkpoint = self.checkpoint or alexnet_checkpoint_path()
            self.model = self._build(self.checkpoint, verify_hash)
            self.available = True
        except Exception as exc:  # any failure means "missing", never "random weights"
            self.model = None
            if not self.reason:
                self.reason = (
                    f"could not load LPIPS with pretrained AlexNet weights: "
                    f"{type(exc).__name__}: {exc}"
                )

    def _build(self, path: Path, verify_hash: bool):
        if not path.is_file():
            self.reason = (
                f"the torchvision AlexNet ImageNet weights are not cached at {path} and this "
                f"code never downloads them; `patchpnp lpips-weights --output {path}` "
                f"fetches them (in the workflow, the lpips_weights rule ran it: its "
                f"status.json beside them says why it could not, and the fix)"
            )
            raise FileNotFoundError(path)
        if verify_hash:
            ok, why = sha256_prefix_ok(path)
            if not ok:
                self.reason = why
                raise ValueError(why)
        import lpips
        import torch
        import torchvision

        state = torch.load(path, map_location="cpu", weights_only=True)
        alexnet = torchvision.models.alexnet(weights=None)
        alexnet.load_state_dict(state, strict=True)  # the file must be a full AlexNet

        with warnings.catch_warnings():
            # pnet_rand=True builds the trunk without touching the network (torchvision's
            # `pretrained=False`); its deprecation warning is noise here.
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
        # lpips' AlexNet keeps torchvision's `features` modules under their original
        # indices, split into slices: copy every one of them from the checkpoint.
        slices = [getattr(model.net, f"slice{i + 1}") for i in range(model.net.N_slices)]
        copied = sum(self._copy_features(slice_, alexnet) for slice_ in slices)
        n_convs = sum(isinstance(m, torch.nn.Conv2d) for m in alexnet.features)
        if copied != n_convs:
            raise RuntimeError(f"copied {copied} of {n_convs} AlexNet conv layers into LPIPS")
        model.eval().requires_grad_(False)
        return model.to(self.device)

    @staticmethod
    def _copy_features(slice_: torch.nn.Module, alexnet: torch.nn.Module) -> int:
        from torch import nn

        copied = 0
        for name, module in slice_.named_children():
            source = alexnet.features[int(name)]
            if type(source) is not type(module):
                raise RuntimeError(f"lpips AlexNet layer {name} is not torchvision's")
            if isinstance(module, nn.Conv2d):
                module.load_state_dict(source.state_dict(), strict=True)
                copied += 1
        return copied

    def __call__(self, x, ref):
        """Per-image LPIPS distance between ``x`` and ``ref`` (NaN when unavailable)."""
        a, b = _pair(x, ref)
        if not self.available:
            if not self._warned:
                warnings.warn(
                    f"LPIPS is recorded as missing (NaN): {self.reason}",
                    LPIPSUnavailableWarning,
                    stacklevel=2,
                )
                self._warned = True
            return _like(np.full(a.shape[0], np.nan), x)

        import torch

        def prepare(v: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(v).to(self.device, torch.float32).clamp(0.0, 1.0)
            if t.shape[1] == 1:
                t = t.repeat(1, 3, 1, 1)
            return 2.0 * t - 1.0

        with torch.no_grad():
            d = self.model(prepare(a), prepare(b))
        return _like(d.reshape(-1).to("cpu", torch.float64).numpy(), x)

    def __repr__(self) -> str:
        state = "available" if self.available else f"unavailable: {self.reason}"
        return f"LPIPSMetric({state})"


@dataclass(frozen=True)
class Scoring:
    """How a grid cell scores beyond PSNR and SSIM (``--lpips-weights``, ``--lpips-mode``,
    ``--band``): LPIPS of :func:`lpips_metric`'s ``weights`` and ``mode``, and the outer
    band (pixels) of the boundary-artifact score (:func:`band_rmse`; None: the cell's
    default)."""

    lpips_weights: str | Path | None = None
    lpips_mode: str = "auto"
    band: int | None = None


def lpips_metric(
    device: str | torch.device = "cpu",
    weights: str | Path | None = None,
    mode: str = "auto",
) -> LPIPSMetric:
    """The LPIPS metric of one mode of the config key ``metrics.lpips``.

    ``weights`` is the checkpoint to use. The workflow always passes its own copy
    (``resources/lpips/...``, fetched by the ``lpips_weights`` rule), so whether a
    cell has LPIPS never depends on a machine's torch hub cache; with no ``weights``
    (the command line outside the workflow) the hub cache is used, as torchvision would.

    - ``auto``: LPIPS when the weights load, else NaN with one warning;
    - ``required``: raises :class:`LPIPSWeightsError` when they do not;
    - ``off``: NaN, nothing loaded, one log line and no warning.
    """
    if mode not in LPIPS_MODES:
        raise LPIPSWeightsError(f"LPIPS mode {mode!r}: expected one of {LPIPS_MODES}")
    if mode == "off":
        return LPIPSMetric(device, enabled=False)
    metric = LPIPSMetric(device, checkpoint=weights)
    if mode == "required" and not metric.available:
        raise LPIPSWeightsError(f"LPIPS is required (metrics.lpips), but {metric.reason}")
    return metric
