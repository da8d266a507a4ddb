"""Magnitude-preserving primitives of the EDM2 U-Net (Karras et al. 2024, section 3 and app. B).

Every primitive maps inputs of unit RMS to outputs of (about) unit RMS, so that
activations neither grow nor shrink with depth and training steps.

Normalisation convention (as in EDM2): ``normalize`` rescales to unit *RMS* over
the reduced dimensions, i.e. to norm ``sqrt(n)`` for ``n`` reduced elements. The
stored MPConv weight therefore has unit RMS per output filter, and the
*effective* weight ``normalize(w) / sqrt(fan_in)`` has unit norm per filter,
which is what keeps ``var(w . x) = var(x)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from patchpnp.runtime import keyed_rand, keyed_randn

__all__ = ["MPConv", "MPFourier", "mp_cat", "mp_silu", "mp_sum", "normalize", "pixel_norm"]


def normalize(x: torch.Tensor, dim=None, eps: float = 1e-4) -> torch.Tensor:
    """Rescale ``x`` to unit RMS over ``dim`` (default: all but the first dimension).

    With the default ``dim`` each output filter of a weight tensor gets norm
    ``sqrt(fan_in)``. ``eps`` is added to the RMS, not the norm, so its effect
    does not depend on the number of reduced elements.
    """
    if dim is None:
        dim = tuple(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    rms = norm * math.sqrt(norm.numel() / x.numel())
    return x / (rms + eps).to(x.dtype)


def pixel_norm(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Unit RMS over the channels of every pixel of an ``[B, C, H, W]`` tensor."""
    return normalize(x, dim=1, eps=eps)


def mp_silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU divided by its output RMS for standard normal input (EDM2 eq. 81)."""
    return F.silu(x) / 0.596


def mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = 0.5) -> torch.Tensor:
    """Blend ``(1-t) a + t b`` rescaled so that independent unit inputs give unit output."""
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t**2)


def mp_cat(a: torch.Tensor, b: torch.Tensor, dim: int = 1, t: float = 0.5) -> torch.Tensor:
    """Concatenate with weights ``1-t`` / ``t`` on the two parts (EDM2 eq. 103).

    Each part is rescaled by its channel count, so the balance ``t`` sets each
    part's share of the output energy regardless of how wide it is, and the
    concatenation of unit-RMS inputs has unit RMS.
    """
    na, nb = a.shape[dim], b.shape[dim]
    c = math.sqrt((na + nb) / ((1 - t) ** 2 + t**2))
    return torch.cat([a * (c * (1 - t) / math.sqrt(na)), b * (c * t / math.sqrt(nb))], dim=dim)


class MPFourier(nn.Module):
    """Frozen random Fourier features ``sqrt(2) cos(2 pi (f c + phi))`` of a scalar per sample.

    ``f ~ N(0, bandwidth^2)``, ``phi ~ U(0, 1)``; the ``sqrt(2)`` gives unit RMS.
    The draws are buffers, so they are saved in (and restored from) checkpoints.
    """

    def __init__(
        self, num_channels: int, bandwidth: float = 1.0, generator: torch.Generator | None = None
    ):
        super().__init__()
        self.register_buffer("freqs", keyed_randn((num_channels,), generator) * bandwidth)
        self.register_buffer("phases", keyed_rand((num_channels,), generator))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        """``c``: ``[B]`` (or scalar) -> ``[B, num_channels]``, computed in float32."""
        c = c.to(torch.float32).reshape(-1, 1)
        y = torch.cos(2 * math.pi * (c * self.freqs.float() + self.phases.float()))
        return y * math.sqrt(2)


class MPConv(nn.Module):
    """Bias-free convolution (3x3, padding 'same'; 1x1) or linear layer (``kernel=()``).

    Forced weight normalisation (EDM2 eq. 66): in training mode the stored weight
    is re-normalised in place at every forward, so that Adam's updates always act
    on unit-RMS filters and the effective learning rate does not decay as the
    weights grow. The effective weight ``normalize(w) * gain / sqrt(fan_in)`` has
    norm ``gain`` per output filter whatever the stored weight's magnitude.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Sequence[int] = (),
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        kernel = tuple(kernel)
        if kernel and (len(kernel) != 2 or kernel[0] != kernel[1] or kernel[0] % 2 != 1):
            raise ValueError(f"MPConv supports kernel () or an odd square kernel, got {kernel}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight = nn.Parameter(keyed_randn((out_channels, in_channels, *kernel), generator))

    def effective_weight(self, gain=1.0) -> torch.Tensor:
        # The clone keeps this forward's graph off the stored weight, which the next
        # training-mode forward rewrites in place; without it, two forwards before one
        # backward (two losses, gradient accumulation) would fail in autograd.
        w = self.weight.to(torch.float32, copy=True)
        return normalize(w) * (gain / math.sqrt(w[0].numel()))

    def forward(self, x: torch.Tensor, gain=1.0) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.weight.copy_(normalize(self.weight.to(torch.float32)))
        w = self.effective_weight(gain).to(x.dtype)
        if w.ndim == 2:
            return x @ w.t()
        return F.conv2d(x, w, padding=w.shape[-1] // 2)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel={tuple(self.weight.shape[2:])}"
