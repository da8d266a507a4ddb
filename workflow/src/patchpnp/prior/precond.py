"""EDM preconditioning of the U-Net, and the [0, 1] image-space denoiser the solvers use.

Units (docs/methods.md section 0): ``Precond`` works in network space, images in
[-1, 1] and ``sigma`` in the same units; ``ImageSpaceDenoiser`` works in [0, 1]
image space, where every sigma is half the network-space one.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .mp_layers import MPConv, MPFourier
from .network import UNet

__all__ = ["ImageSpaceDenoiser", "Precond", "canvas_coordinates", "coordinate_channels"]


def _per_sample_sigma(sigma, batch: int, device) -> torch.Tensor:
    """float, 0-d, ``[1]`` or ``[B]`` sigma -> float32 tensor ``[B]``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=device).reshape(-1)
    if sigma.numel() == 1:
        return sigma.expand(batch)
    if sigma.numel() != batch:
        raise ValueError(f"sigma has {sigma.numel()} entries for a batch of {batch}")
    return sigma


class Precond(nn.Module):
    """``D(x, s) = c_skip x + c_out F(c_in x, c_noise)`` with EDM's scalings (network space).

    Also holds EDM2's learned uncertainty ``u(s)`` (a linear layer on Fourier
    features of ``c_noise``), used only by the training loss.

    ``autocast_dtype`` (e.g. ``torch.bfloat16``) runs the U-Net under autocast; the
    scalings and the skip connection always stay in float32. ``memory_format``: the
    layout the U-Net's input is given in (``torch.channels_last`` for a network moved
    to channels-last weights; the output comes back in either).
    """

    def __init__(
        self,
        unet: UNet,
        sigma_data: float = 0.5,
        logvar_channels: int = 128,
        autocast_dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.unet = unet
        self.sigma_data = sigma_data
        self.autocast_dtype = autocast_dtype
        self.memory_format = torch.contiguous_format
        self.img_channels, self.coord_channels = unet.img_channels, unet.coord_channels
        self.logvar_fourier = MPFourier(logvar_channels, generator=generator)
        self.logvar_linear = MPConv(logvar_channels, 1, (), generator=generator)

    def scalings(self, sigma: torch.Tensor):
        """``(c_skip, c_out, c_in, c_noise)`` for a tensor of noise levels (same shape)."""
        sd2 = self.sigma_data**2
        c_skip = sd2 / (sigma**2 + sd2)
        c_out = sigma * self.sigma_data / (sigma**2 + sd2).sqrt()
        c_in = 1 / (sigma**2 + sd2).sqrt()
        c_noise = sigma.log() / 4
        return c_skip, c_out, c_in, c_noise

    def forward(self, x: torch.Tensor, sigma, coords=None, return_logvar: bool = False):
        """``x``: ``[B, C, H, W]`` in [-1, 1] units; ``sigma``: float, 0-d or ``[B]``.

        Returns ``D`` (float32), and ``logvar`` of shape ``[B, 1, 1, 1]`` if asked.
        """
        x = x.to(torch.float32)
        sigma = _per_sample_sigma(sigma, x.shape[0], x.device)
        c_skip, c_out, c_in, c_noise = (c.reshape(-1, 1, 1, 1) for c in self.scalings(sigma))
        c_noise = c_noise.flatten()
        if self.autocast_dtype is None:
            ctx = contextlib.nullcontext()
        else:
            ctx = torch.autocast(x.device.type, dtype=self.autocast_dtype)
        with ctx:
            f = self.unet((c_in * x).contiguous(memory_format=self.memory_format), c_noise, coords)
        d = c_skip * x + c_out * f.to(torch.float32)
        if return_logvar:
            logvar = self.logvar_linear(self.logvar_fourier(c_noise)).reshape(-1, 1, 1, 1)
            return d, logvar
        return d


class ImageSpaceDenoiser(nn.Module):
    """The denoiser in [0, 1] image space: ``D01(x, s) = (D(2x - 1, 2s) + 1) / 2``.

    ``sigma`` is in [0, 1] units (float, 0-d or ``[B]``). ``coord_channels`` tells a
    patch wrapper whether it must pass ``coords`` (see ``coordinate_channels``);
    ``canvas_pad`` (position-aware priors: the zero margin, in pixels, of the canvas the
    prior was trained on, see :func:`canvas_coordinates`; ``None``: coordinates over
    the unpadded image, or no coordinates) tells it which coordinates to pass.
    """

    def __init__(self, precond: Precond, canvas_pad: int | None = None):
        super().__init__()
        self.precond = precond
        self.img_channels = precond.img_channels
        self.coord_channels = precond.coord_channels
        self.canvas_pad = None if canvas_pad is None else int(canvas_pad)

    def forward(self, x: torch.Tensor, sigma, coords=None) -> torch.Tensor:
        if coords is None and self.coord_channels == 2:
            # A whole image (no patch wrapper): every pixel at its own position.
            coords = whole_image_coordinates(*x.shape[-2:], self.canvas_pad)
            coords = coords.to(device=x.device, dtype=x.dtype).expand(x.shape[0], -1, -1, -1)
        return (self.precond(2 * x - 1, 2 * sigma, coords) + 1) / 2


def whole_image_coordinates(height: int, width: int, canvas_pad: int | None) -> torch.Tensor:
    """Coordinate channels ``[1, 2, height, width]`` of a whole image: on the training
    canvas (the image at offset ``canvas_pad``) for a position-aware prior, over the
    image itself for one trained without a canvas (``canvas_pad`` None)."""
    rows, cols = torch.arange(height), torch.arange(width)
    if canvas_pad is None:
        return coordinate_channels(rows, cols, height, width)
    return canvas_coordinates(rows, cols, height, width, canvas_pad)


def coordinate_channels(rows, cols, height: int, width: int) -> torch.Tensor:
    """PaDIS coordinate channels of a patch: ``(i / (R - 1) - 0.5) * 2``, rows then cols.

    ``rows`` (``[h]`` or ``[B, h]``) and ``cols`` (``[w]`` or ``[B, w]``) are the
    integer pixel indices of the patch in a ``height x width`` canvas (the full
    image). Indices outside the canvas (padding at inference) map outside
    [-1, 1] on purpose: normalising by the canvas, never by the padded size,
    keeps the training and test coordinates identical. Returns ``[B, 2, h, w]``
    float32 (``B = 1`` for 1-d indices).
    """
    if height < 2 or width < 2:
        raise ValueError(f"canvas {height}x{width} is too small for coordinate channels")
    rows = torch.as_tensor(rows)
    cols = torch.as_tensor(cols, device=rows.device)
    rows = rows.reshape(-1, rows.shape[-1]).to(torch.float32)
    cols = cols.reshape(-1, cols.shape[-1]).to(torch.float32)
    r = (rows / (height - 1) - 0.5) * 2  # [B, h]
    c = (cols / (width - 1) - 0.5) * 2  # [B, w]
    b = max(r.shape[0], c.shape[0])
    h, w = r.shape[1], c.shape[1]
    return torch.stack(
        [r[:, :, None].expand(b, h, w), c[:, None, :].expand(b, h, w)], dim=1
    ).contiguous()


def canvas_coordinates(rows, cols, height: int, width: int, pad: int) -> torch.Tensor:
    """Coordinate channels of image pixels on the canvas of a position-aware prior.

    The canvas is the ``height x width`` image zero-padded by ``pad`` on every side
    (side ``R = size + 2 pad`` per axis): image pixel ``i`` sits at canvas index
    ``i + pad``, and ``(idx / (R - 1) - 0.5) * 2`` is +-1 at the canvas's outer edges.
    ``rows`` and ``cols`` are image indices (``[h]`` or ``[B, h]``); margin pixels have
    indices ``-pad .. -1`` and ``size .. size + pad - 1``, which get their own canvas
    coordinates, still within [-1, 1]. Training (``padis`` scheme) and inference
    (:class:`patchpnp.patching.patches.ShiftedGridDenoiser`) both call this function,
    so a pixel gets the same coordinates in both. Rows first, as
    :func:`coordinate_channels`.
    """
    pad = int(pad)
    rows = torch.as_tensor(rows) + pad
    cols = torch.as_tensor(cols, device=rows.device) + pad
    return coordinate_channels(rows, cols, height + 2 * pad, width + 2 * pad)
