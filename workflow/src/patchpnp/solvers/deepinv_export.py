"""A trained prior as a ``deepinv.models.Denoiser``, plain or through shifted-grid patches.

docs/methods.md section 12. deepinv's solvers (DPS, DiffPIR, DDRM, PosteriorDiffusion)
take any ``Denoiser(x, sigma)`` with ``x`` in [0, 1] and ``sigma`` the standard
deviation of white Gaussian noise in the same units. That is exactly the convention of
our image-space denoiser ``D01(x, s) = (D(2x - 1, 2s) + 1) / 2``
(:class:`patchpnp.prior.precond.ImageSpaceDenoiser`), so the export converts no units:
it loads the EMA weights, optionally wraps them in
:class:`~patchpnp.patching.patches.ShiftedGridDenoiser`, and normalises ``sigma``
(a float, a 0-d tensor, a list or one value per sample) to one value per sample.

The patch wrapper draws its grid shifts from its own generator, seeded by ``seed``,
so a deepinv run is reproducible. When deepinv's DPS differentiates through it, the
wrapper's memory-bounded exact gradient (one micro-batch of tiles at a time, each
forward recomputed in the backward pass) is used whenever ``patch_batch`` splits the
tiles: memory stays bounded by the micro-batch, the gradient is autograd's.

Example (the README's)::

    import deepinv as dinv
    from patchpnp.solvers.deepinv_export import deepinv_denoiser

    denoiser = deepinv_denoiser("results/priors/patch/ema.pt", patch_size=32)
    physics = dinv.physics.Denoising(dinv.physics.GaussianNoise(sigma=0.1))
"""

from __future__ import annotations

from pathlib import Path

import deepinv
import torch
from torch import nn

from patchpnp.patching.patches import ShiftedGridDenoiser
from patchpnp.prior.loading import load_prior

__all__ = ["PatchpnpDenoiser", "deepinv_denoiser", "per_sample_sigma"]


class PatchpnpDenoiser(deepinv.models.Denoiser):
    """One of our [0, 1]-space denoisers (whole or shifted-grid) behind deepinv's interface.

    ``denoiser(x, sigma)`` takes ``sigma`` as a float or one value per sample ``[B]``;
    :meth:`forward` accepts what deepinv passes (float, 0-d or ``[B]`` tensor, list).
    """

    def __init__(self, denoiser: nn.Module, device: str | torch.device = "cpu"):
        super().__init__(device=device)
        self.denoiser = denoiser

    @property
    def patch_size(self) -> int | None:
        """The tile side of the shifted-grid wrapper, or None for the whole image."""
        d = self.denoiser
        return d.patch_size if isinstance(d, ShiftedGridDenoiser) else None

    def forward(self, x: torch.Tensor, sigma, **kwargs) -> torch.Tensor:
        return self.denoiser(x, per_sample_sigma(sigma, x))


def per_sample_sigma(sigma, x: torch.Tensor) -> torch.Tensor:
    """What deepinv passes as ``sigma`` (float, 0-d or ``[B]`` tensor, list) as one value
    per sample of ``x``, in its dtype and device; a count that fits neither is refused."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    if sigma.numel() == 1:
        sigma = sigma.expand(x.shape[0])
    if sigma.numel() != x.shape[0]:
        raise ValueError(
            f"sigma must be one value or one per sample (batch {x.shape[0]}), "
            f"got {sigma.numel()} values"
        )
    return sigma


def deepinv_denoiser(
    prior: str | Path,
    patch_size: int | None = None,
    padding: str = "reflect",
    patch_batch: int | None = None,
    device: str | torch.device = "cpu",
    precision: str = "float32",
    seed: int = 0,
) -> PatchpnpDenoiser:
    """The prior saved at ``prior`` (a training run's ``ema.pt``) as a deepinv denoiser.

    Args:
        prior: the EMA weights written by ``patchpnp train`` (``results/priors/<name>/ema.pt``).
        patch_size: ``None`` denoises whole images; a side ``P`` denoises through
            ``P x P`` shifted-grid tiles (PaDIS, with ``padding``).
        padding: ``reflect`` (the paper's), ``zeros`` (PaDIS's, with a noisy margin) or
            ``replicate``.
        patch_batch: tiles per network call (``None``: all at once). Below the tile
            count, a gradient through the wrapper is computed micro-batch by micro-batch.
        device, precision: where the network runs and its autocast (``float32``,
            ``bfloat16`` or ``auto``: bfloat16 where the device computes it natively).
        seed: seed of the wrapper's grid shifts.
    """
    denoiser, _ = load_prior(prior, device, precision=precision)
    if patch_size is not None:
        denoiser = ShiftedGridDenoiser(
            denoiser, int(patch_size), padding=padding, patch_batch=patch_batch, seed=seed
        )
    return PatchpnpDenoiser(denoiser, device=device)
