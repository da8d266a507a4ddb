"""EDM2's magnitude-preserving U-Net (Karras et al. 2024, fig. 21), unconditional.

Differences from the public EDM2 config, all deliberate:

- No class labels; optional extra conditioning input channels (``coord_channels``,
  the PaDIS patch coordinates) are concatenated to the image input.
- Attention is placed by *level* (0 = full resolution, ``len(channel_mult)-1`` =
  lowest), not by pixel size, because the same network runs on 64 x 64 images and
  on 32 x 32 patches. As in EDM2, the first decoder block of the lowest level
  always has attention.
- ``channels_per_head`` defaults to 32, so that a 32-channel model really has
  attention (EDM2 uses 64-wide heads on much wider models).

Parameter count: ``count_parameters(net)`` (= sum of ``p.numel()``; the frozen
Fourier features are buffers and are not counted).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .mp_layers import MPConv, MPFourier, mp_cat, mp_silu, mp_sum, normalize, pixel_norm

__all__ = ["Block", "UNet", "count_parameters"]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable-parameter elements (buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


class Block(nn.Module):
    """U-Net block: [resample] -> residual branch -> MP-sum -> [cosine self-attention].

    ``flavor='enc'``: the skip path is projected (1x1) *before* the branch and
    pixel-normalised, which keeps the encoder's activations at unit magnitude.
    ``flavor='dec'``: the skip path is projected after the branch, no pixel norm
    (the MP-concat of the decoder inputs already has unit magnitude).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        flavor: str = "enc",
        resample: str = "keep",
        attention: bool = False,
        channels_per_head: int = 32,
        dropout: float = 0.0,
        res_balance: float = 0.3,
        attn_balance: float = 0.3,
        clip_act: float | None = 256.0,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if flavor not in ("enc", "dec") or resample not in ("keep", "down", "up"):
            raise ValueError(f"bad block flavor/resample: {flavor!r}, {resample!r}")
        if attention and out_channels % channels_per_head != 0:
            raise ValueError(
                f"{out_channels} channels are not divisible into heads of {channels_per_head}"
            )
        g = generator
        self.out_channels, self.flavor, self.resample = out_channels, flavor, resample
        self.num_heads = out_channels // channels_per_head if attention else 0
        self.dropout, self.res_balance, self.attn_balance = dropout, res_balance, attn_balance
        self.clip_act = clip_act
        # Zero gain: the noise level modulates nothing at initialisation.
        self.emb_gain = nn.Parameter(torch.zeros([]))
        self.conv_res0 = MPConv(
            out_channels if flavor == "enc" else in_channels, out_channels, (3, 3), generator=g
        )
        self.emb_linear = MPConv(emb_channels, out_channels, (), generator=g)
        self.conv_res1 = MPConv(out_channels, out_channels, (3, 3), generator=g)
        self.conv_skip = (
            MPConv(in_channels, out_channels, (1, 1), generator=g)
            if in_channels != out_channels
            else None
        )
        if self.num_heads:
            self.attn_qkv = MPConv(out_channels, 3 * out_channels, (1, 1), generator=g)
            self.attn_proj = MPConv(out_channels, out_channels, (1, 1), generator=g)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # Resampling with EDM2's [1,1] filter is a 2x2 box average down and nearest up.
        if self.resample == "down":
            x = F.avg_pool2d(x, 2)
        elif self.resample == "up":
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.flavor == "enc":
            if self.conv_skip is not None:
                x = self.conv_skip(x)
            x = pixel_norm(x)

        # Residual branch, modulated per channel by the noise embedding.
        y = self.conv_res0(mp_silu(x))
        scale = self.emb_linear(emb, gain=self.emb_gain) + 1
        y = mp_silu(y * scale[:, :, None, None].to(y.dtype))
        if self.dropout:
            y = F.dropout(y, p=self.dropout, training=self.training)
        y = self.conv_res1(y)
        if self.flavor == "dec" and self.conv_skip is not None:
            x = self.conv_skip(x)
        x = mp_sum(x, y, t=self.res_balance)

        # Cosine attention: q, k, v are unit-RMS per head, so logits are bounded.
        if self.num_heads:
            b, c, h, w = x.shape
            qkv = self.attn_qkv(x).reshape(b, self.num_heads, 3, c // self.num_heads, h * w)
            q, k, v = normalize(qkv, dim=3).transpose(-1, -2).unbind(2)  # [b, heads, hw, d]
            y = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
            y = self.attn_proj(y.transpose(-1, -2).reshape(b, c, h, w))
            x = mp_sum(x, y, t=self.attn_balance)

        if self.clip_act is not None:
            x = x.clamp(-self.clip_act, self.clip_act)
        return x


class UNet(nn.Module):
    """Magnitude-preserving U-Net ``F(x_in, c_noise)`` (EDM2), without class labels.

    Args:
        img_channels: image channels (1 magnitude, 2 real/imaginary).
        coord_channels: extra conditioning channels concatenated to the input
            (0, or 2 for the PaDIS coordinate channels).
        model_channels: width of level 0; level ``l`` has ``model_channels * channel_mult[l]``.
        channel_mult: per-level width multipliers; the number of levels is its length.
        num_blocks: encoder blocks per level (the decoder has one more, as in EDM2).
        attn_resolutions: *levels* (0 = full resolution, ``len(channel_mult)-1`` = lowest)
            whose blocks have self-attention. Levels, not pixel sizes, so that the
            network behaves the same on whole images and on patches.
        channels_per_head: attention head width.
        dropout: dropout probability in the residual branches.
        generator: RNG for the initial weights and the frozen Fourier features.

    The input's spatial size must be divisible by ``2 ** (len(channel_mult) - 1)``.
    """

    def __init__(
        self,
        img_channels: int = 1,
        coord_channels: int = 0,
        model_channels: int = 32,
        channel_mult: Sequence[int] = (1, 2, 2, 4),
        num_blocks: int = 2,
        attn_resolutions: Sequence[int] = (3,),
        channels_per_head: int = 32,
        dropout: float = 0.0,
        concat_balance: float = 0.5,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        levels = len(channel_mult)
        attn_levels = set(attn_resolutions)
        if not attn_levels <= set(range(levels)):
            raise ValueError(
                f"attn_resolutions must be levels in 0..{levels - 1}, got {list(attn_resolutions)}"
            )
        self.img_channels, self.coord_channels = img_channels, coord_channels
        self.num_levels, self.concat_balance = levels, concat_balance
        widths = [model_channels * m for m in channel_mult]
        c_noise, c_emb = widths[0], max(widths)
        kw = dict(channels_per_head=channels_per_head, dropout=dropout, generator=generator)
        g = generator
        # Zero output gain: F = 0 and hence D(x, s) = c_skip x at initialisation.
        self.out_gain = nn.Parameter(torch.zeros([]))

        self.emb_fourier = MPFourier(c_noise, generator=g)
        self.emb_noise = MPConv(c_noise, c_emb, (), generator=g)

        # Encoder; +1 for the constant channel, which lets the bias-free convs
        # see where the image border (zero padding) is.
        self.enc = nn.ModuleDict()
        cout = img_channels + coord_channels + 1
        for level, width in enumerate(widths):
            if level == 0:
                self.enc[f"l{level}_conv"] = MPConv(cout, width, (3, 3), generator=g)
                cout = width
            else:
                self.enc[f"l{level}_down"] = Block(cout, cout, c_emb, "enc", "down", **kw)
            for i in range(num_blocks):
                self.enc[f"l{level}_block{i}"] = Block(
                    cout, width, c_emb, "enc", attention=level in attn_levels, **kw
                )
                cout = width

        # Decoder; every "block" consumes one encoder skip, in reverse order.
        skips = [m.out_channels for m in self.enc.values()]
        self.dec = nn.ModuleDict()
        for level, width in reversed(list(enumerate(widths))):
            if level == levels - 1:
                self.dec[f"l{level}_in0"] = Block(cout, cout, c_emb, "dec", attention=True, **kw)
                self.dec[f"l{level}_in1"] = Block(cout, cout, c_emb, "dec", **kw)
            else:
                self.dec[f"l{level}_up"] = Block(cout, cout, c_emb, "dec", "up", **kw)
            for i in range(num_blocks + 1):
                self.dec[f"l{level}_block{i}"] = Block(
                    cout + skips.pop(), width, c_emb, "dec", attention=level in attn_levels, **kw
                )
                cout = width
        self.out_conv = MPConv(cout, img_channels, (3, 3), generator=g)

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.num_levels - 1)

    def forward(
        self, x: torch.Tensor, c_noise: torch.Tensor, coords: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x``: ``[B, img_channels, H, W]``; ``c_noise``: ``[B]`` or scalar;
        ``coords``: ``[B or 1, coord_channels, H, W]`` when ``coord_channels > 0``."""
        b, c, h, w = x.shape
        m = self.size_multiple
        if h % m or w % m:
            raise ValueError(
                f"input size {h}x{w} is not divisible by {m} "
                f"(= 2**(levels-1) for {self.num_levels} levels)"
            )
        if c != self.img_channels:
            raise ValueError(f"expected {self.img_channels} image channels, got {c}")
        inputs = [x]
        if self.coord_channels:
            if coords is None or coords.shape[1] != self.coord_channels:
                raise ValueError(f"this network needs {self.coord_channels} coordinate channels")
            inputs.append(coords.to(x.dtype).expand(b, -1, h, w))
        elif coords is not None:
            raise ValueError("coords given to a network built with coord_channels=0")
        inputs.append(torch.ones_like(x[:, :1]))
        x = torch.cat(inputs, dim=1)

        emb = mp_silu(self.emb_noise(self.emb_fourier(c_noise)))

        skips = []
        for name, block in self.enc.items():
            x = block(x) if name.endswith("_conv") else block(x, emb)
            skips.append(x)
        for name, block in self.dec.items():
            if "_block" in name:
                x = mp_cat(x, skips.pop(), t=self.concat_balance)
            x = block(x, emb)
        return self.out_conv(x, gain=self.out_gain)
