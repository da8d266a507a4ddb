"""EDM2's learning-rate schedule: linear warm-up, flat, then inverse square-root decay."""

from __future__ import annotations

import math

__all__ = ["learning_rate"]


def learning_rate(step: int, lr_ref: float, ref_steps: float, warmup_steps: float = 0) -> float:
    """Learning rate for the optimiser step with 0-based index ``step``.

    ``lr_ref / sqrt(max(step / ref_steps, 1)) * min((step + 1) / warmup_steps, 1)``.

    All step arguments count optimiser steps (EDM2 counts images; divide its
    ``ref_batches`` / ``rampup_Mimg`` by the batch size). ``step + 1`` in the
    warm-up makes the first step's rate ``lr_ref / warmup_steps`` rather than 0;
    ``warmup_steps = 0`` disables the warm-up.
    """
    if step < 0 or ref_steps <= 0 or warmup_steps < 0:
        raise ValueError(
            f"bad schedule: step={step}, ref_steps={ref_steps}, warmup_steps={warmup_steps}"
        )
    lr = lr_ref / math.sqrt(max(step / ref_steps, 1.0))
    if warmup_steps > 0:
        lr *= min((step + 1) / warmup_steps, 1.0)
    return lr
