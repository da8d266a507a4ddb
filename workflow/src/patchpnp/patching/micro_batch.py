"""How many tiles one network call may take: the micro-batch that fits a memory budget.

Patch inference saves memory only when the tiles go through the network in
micro-batches (docs/methods.md section 4): all tiles at once cost more than the whole
image, one at a time costs up to 3x the time at small tiles. ``patch_batch: auto``
takes the largest micro-batch whose working memory stays within a budget.

The working memory of one denoiser call is, above a floor that small calls never go
below (scratch space that does not scale), ``fixed + rate * pixels + attention *
pixels * image_pixels``: convolutions keep activations in proportion to all the pixels
of the call, however they are cut into images or tiles, and self-attention keeps, per
image, a tokens x tokens matrix, quadratic in the image's (or tile's) own pixels. On the
demo's U-Net (attention at 8 x 8 only) the quadratic term is negligible and a forward
call costs 0.77 MiB per 1000 pixels, never less than 0.9 MiB; with attention at a fine
level it dominates large images, which is where whole-image inference loses most. A
:class:`MemoryModel` is fitted per call mode (``forward``: DiffPIR's calls without
autograd; ``gradient``: the vector-Jacobian product of DPS's memory-bounded gradient,
which keeps one micro-batch's activations) from a few measured calls at small sizes,
once per (network, device, dtype), and then predicts any image and patch size: that is
what lets the paper-scale profile choose, and check, its own micro-batches. Weights do
not change memory, so a calibration can use random weights.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from patchpnp.errors import PatchpnpError
from patchpnp.patching.tiling import AxisGrid

MODES = ("forward", "gradient")
AUTO = "auto"


class MicroBatchError(PatchpnpError, ValueError):
    """A budget or calibration that cannot be used; the message names it."""


@dataclass(frozen=True)
class MemoryModel:
    """Working MiB of one denoiser call on ``pixels`` pixels in all, in images (or tiles)
    of ``image_pixels`` each: ``max(floor, fixed + rate * pixels + attention * pixels *
    image_pixels)``, with ``rate`` in MiB per million pixels and ``attention`` in MiB per
    (million pixels)^2."""

    floor_mib: float
    fixed_mib: float
    rate_mib: float
    attention_mib: float = 0.0

    def per_image(self, image_pixels: float) -> float:
        """MiB that one more image (or tile) of ``image_pixels`` adds."""
        mp = image_pixels / 1e6
        return self.rate_mib * mp + self.attention_mib * mp * mp

    def predict(self, pixels: float, image_pixels: float) -> float:
        count = pixels / image_pixels
        return max(self.floor_mib, self.fixed_mib + count * self.per_image(image_pixels))

    def max_count(self, budget_mib: float, image_pixels: float) -> float:
        """The most images (tiles) of ``image_pixels`` one call may take within the budget."""
        if budget_mib < self.floor_mib:
            return 0.0
        each = self.per_image(image_pixels)
        return math.inf if each <= 0 else max(budget_mib - self.fixed_mib, 0.0) / each


Point = tuple[int, int, float]  # (side, batch, working MiB) of one measured call


def fit(points: Sequence[Point]) -> MemoryModel:
    """Least squares over the calls above the floor (measured at 1.5x the smallest or
    more, the three largest at least); the attention term is dropped when the data give
    it no positive weight."""
    import numpy as np

    floor = min(m for _, _, m in points)
    ordered = sorted(points, key=lambda p: p[1] * p[0] ** 2)
    used = [p for p in ordered if p[2] >= 1.5 * floor]
    # Too few calls above the floor (a large network's scratch space dominates small
    # calls): add the next largest until three calls of two image sides are fitted.
    rest = [p for p in ordered if p not in used]
    while rest and (len(used) < 3 or len({s for s, _, _ in used}) < 2):
        used.insert(0, rest.pop())
    if len({(s, b) for s, b, _ in used}) < 3 or len({s for s, _, _ in used}) < 2:
        raise MicroBatchError(f"a memory model needs calls of several sizes, got {points}")
    pixels = np.array([b * s * s / 1e6 for s, b, _ in used])
    quad = np.array([b * (s * s / 1e6) ** 2 for s, b, _ in used])
    y = np.array([m for _, _, m in used])
    ones = np.ones_like(y)
    coef = np.linalg.lstsq(np.stack([ones, pixels, quad], 1), y, rcond=None)[0]
    if coef[2] <= 0:
        coef = [*np.linalg.lstsq(np.stack([ones, pixels], 1), y, rcond=None)[0], 0.0]
    return MemoryModel(float(floor), float(coef[0]), max(float(coef[1]), 0.0), float(coef[2]))


def parse_budget(
    budget, key: str = "inference.memory_budget", of: str = "the whole image's working memory"
) -> tuple[str, float]:
    """A memory budget: a number of MiB, or a percentage (``"25%"``) of ``of`` (for
    ``inference.memory_budget``, the whole images' working memory). Returns ``("mib",
    value)`` or ``("fraction", value)``; errors name ``key``."""
    if isinstance(budget, bool):
        raise MicroBatchError(f"{key}: expected MiB or a percentage, got {budget!r}")
    if isinstance(budget, (int, float)):
        if not budget > 0:
            raise MicroBatchError(f"{key}: {budget} MiB is not positive")
        return "mib", float(budget)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", str(budget))
    if m is None or not 0 < float(m[1]) <= 100:
        raise MicroBatchError(
            f"{key}: expected MiB (a number) or a percentage in (0, 100] of {of} "
            f"(e.g. '25%'), got {budget!r}"
        )
    return "fraction", float(m[1]) / 100


def as_budget(text: str | float) -> str | float:
    """A budget from the command line: ``"300"`` is MiB, ``"25%"`` stays a percentage."""
    try:
        return float(text)
    except ValueError:
        return text


def budget_mib(budget, model: MemoryModel, images: int, image_pixels: int) -> float:
    """The budget in MiB for a call on ``images`` images of ``image_pixels`` pixels each:
    an absolute budget as given, a fraction of what the whole images would take."""
    kind, value = parse_budget(budget)
    if kind == "mib":
        return value
    return value * model.predict(images * image_pixels, image_pixels)


def choose_patch_batch(model: MemoryModel, patch: int, num_tiles: int, budget: float) -> int:
    """The largest micro-batch (tiles per call, 1 to ``num_tiles``) whose predicted
    working memory is within ``budget`` MiB; 1 when even one tile exceeds it."""
    fits = model.max_count(budget, patch * patch)
    return max(1, min(num_tiles, int(fits) if math.isfinite(fits) else num_tiles))


# -- calibration --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Calibration:
    """Memory models per mode, with where they were measured and the points they fit."""

    models: dict[str, MemoryModel]
    device: str
    dtype: str
    points: dict[str, list[Point]]

    def to_json(self) -> str:
        out = asdict(self)
        return json.dumps(out, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "calibration") -> Calibration:
        try:
            raw = json.loads(text)
            models = {k: MemoryModel(**v) for k, v in raw["models"].items()}
            points = {k: [tuple(p) for p in v] for k, v in raw["points"].items()}
            calibration = cls(models, raw["device"], raw["dtype"], points)
        except (ValueError, KeyError, TypeError) as err:
            raise MicroBatchError(f"{source}: not a memory calibration ({err})") from err
        missing = set(MODES) - set(models)
        if missing:
            raise MicroBatchError(f"{source}: no memory model for {sorted(missing)}")
        return calibration


def read_calibration(path: str | Path) -> Calibration:
    path = Path(path)
    if not path.is_file():
        raise MicroBatchError(f"{path}: memory calibration not found")
    return Calibration.from_json(path.read_text(), str(path))


def calibration_sizes(multiple: int, scales: Sequence[int] = (1, 2, 4)) -> list[tuple[int, int]]:
    """``(side, batch)`` of the measured calls: sides the network takes (multiples of
    ``multiple``, from 16 pixels up by ``scales``) and batches 1, 2 and 4: by default the
    pixels span 64x, from the floor into the regime where they dominate, and the image
    sides tell the attention term (per image) from the convolutions' (per pixel). A
    large network, whose scratch space dominates small calls, needs larger ``scales``."""
    small = multiple * max(1, math.ceil(16 / multiple))
    return [(small * k, batch) for k in scales for batch in (1, 2, 4)]


def calibrate(
    measure: Callable[[int, int, str], float],
    multiple: int,
    device: str,
    dtype: str,
    scales: Sequence[int] = (1, 2, 4),
) -> Calibration:
    """Fit a model per mode from ``measure(side, batch, mode)`` -> working MiB."""
    models, points = {}, {}
    for mode in MODES:
        points[mode] = [
            (side, batch, float(measure(side, batch, mode)))
            for side, batch in calibration_sizes(multiple, scales)
        ]
        models[mode] = fit(points[mode])
    return Calibration(models, device, dtype, points)


def call_mode(solver: str) -> str:
    """The memory regime of a solver's denoiser calls: DPS differentiates through them."""
    return "gradient" if solver == "dps" else "forward"


def auto_patch_batch(
    calibration: Calibration,
    solver: str,
    patch: int,
    images: int,
    height: int,
    width: int,
    budget,
) -> int:
    """``patch_batch: auto`` for a call on ``images`` images of ``height x width`` pixels,
    tiled by the shifted grid of ``patch``-pixel tiles: the largest micro-batch within
    ``budget`` (MiB, or a percentage of the whole images' working memory)."""
    tiles = images * AxisGrid.for_axis(height, patch).count * AxisGrid.for_axis(width, patch).count
    model = calibration.models[call_mode(solver)]
    return choose_patch_batch(
        model, patch, tiles, budget_mib(budget, model, images, height * width)
    )
