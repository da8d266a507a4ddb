"""EDM2 training loss with learned per-noise-level uncertainty (Karras et al. 2024, eq. 21)."""

from __future__ import annotations

import torch

from patchpnp.runtime import keyed_randn

from .precond import Precond

__all__ = ["EDM2Loss"]


class EDM2Loss:
    """Per-sample ``(lambda(s) / e^u(s)) mean|D(x + s n, s) - x|^2 + u(s)``, network units.

    ``ln s ~ N(P_mean, P_std^2)`` (pixel-space defaults -0.8, 1.6) and
    ``lambda(s) = (s^2 + sd^2) / (s sd)^2`` makes the expected weighted error 1 at
    every ``s`` for an untrained net; the learned ``u(s)`` then rebalances the noise
    levels by their actual difficulty. The squared error is averaged over the
    elements of each sample (EDM2 sums them; for Adam only the scale differs), so
    the optimal ``u(s)`` is the log of the weighted per-element error.
    """

    def __init__(self, P_mean: float = -0.8, P_std: float = 1.6, sigma_data: float = 0.5):
        self.P_mean, self.P_std, self.sigma_data = P_mean, P_std, sigma_data

    def __call__(
        self,
        net: Precond,
        images: torch.Tensor,
        generator: torch.Generator,
        coords: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``images``: clean ``[B, C, H, W]`` in [-1, 1]. Returns the loss per sample, ``[B]``.

        All draws (first the ``B`` noise levels, then the noise) come from
        ``generator``, on the generator's device, so a run is reproducible.
        """
        images = images.to(torch.float32)
        b = images.shape[0]
        dev, f32 = images.device, torch.float32
        sigma = (keyed_randn((b,), generator, dtype=f32) * self.P_std + self.P_mean).exp().to(dev)
        noise = keyed_randn(images.shape, generator, dev, f32)
        denoised, logvar = net(
            images + sigma[:, None, None, None] * noise, sigma, coords, return_logvar=True
        )
        sd2 = self.sigma_data**2
        weight = (sigma**2 + sd2) / (sigma**2 * sd2)
        err = (denoised - images).square().flatten(1).mean(dim=1)
        logvar = logvar.flatten()
        return weight / logvar.exp() * err + logvar
