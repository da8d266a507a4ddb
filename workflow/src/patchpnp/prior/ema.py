"""Power-function EMA of the network weights (Karras et al. 2024, section 3.1 and app. C).

The EMA after ``n`` steps averages the training iterates with weights growing as
``t^gamma``: its width relative to the run length is ``sigma_rel`` whatever ``n``
is, so it warms up by itself in short runs (a fixed decay of 0.999 would still
hold 43% of the random initial weights after 830 steps).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

__all__ = ["PowerEMA", "gamma_to_sigma_rel", "sigma_rel_to_gamma"]


def gamma_to_sigma_rel(gamma: float) -> float:
    """Relative standard deviation of the power-function profile ``t^gamma`` (EDM2 eq. 123)."""
    return math.sqrt((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3)))


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """Inverse of ``gamma_to_sigma_rel``: the largest real root of
    ``(g + 2)^2 (g + 3) sigma_rel^2 = g + 1``, i.e. ``g^3 + 7g^2 + (16 - s)g + 12 - s = 0``
    with ``s = sigma_rel^-2`` (EDM2 eq. 126)."""
    if not 0 < sigma_rel < gamma_to_sigma_rel(0.0):
        raise ValueError(
            f"sigma_rel must be in (0, {gamma_to_sigma_rel(0.0):.4f}), got {sigma_rel}"
        )
    s = sigma_rel**-2
    return float(np.roots([1.0, 7.0, 16.0 - s, 12.0 - s]).real.max())


class PowerEMA:
    """EMA copy ``model`` of a network, updated with ``beta_n = (1 - 1/n)^(gamma + 1)``.

    ``update(net, step)`` must be called after every optimiser step with ``step``
    = the number of optimiser steps taken so far (1 after the first), so the
    first update copies the weights (``beta_1 = 0``). The EMA model is kept in
    eval mode with gradients off; buffers are copied, not averaged.
    """

    def __init__(self, net: nn.Module, sigma_rel: float = 0.05):
        self.sigma_rel = float(sigma_rel)
        self.gamma = sigma_rel_to_gamma(self.sigma_rel)
        self.step = 0
        self.model = copy.deepcopy(net).eval().requires_grad_(False)

    def beta(self, step: int) -> float:
        if step < 1:
            raise ValueError(f"EMA steps are counted from 1, got {step}")
        return (1.0 - 1.0 / step) ** (self.gamma + 1.0)

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        weight = 1.0 - self.beta(step)
        for p_ema, p_net in zip(self.model.parameters(), net.parameters(), strict=True):
            p_ema.lerp_(p_net.detach().to(p_ema.dtype), weight)
        for b_ema, b_net in zip(self.model.buffers(), net.buffers(), strict=True):
            b_ema.copy_(b_net)
        self.step = step

    def state_dict(self) -> dict:
        return {
            "sigma_rel": self.sigma_rel,
            "gamma": self.gamma,
            "step": self.step,
            "model": self.model.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.sigma_rel, self.gamma = float(state["sigma_rel"]), float(state["gamma"])
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
