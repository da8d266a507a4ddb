"""The shifted grid's geometry per image axis (ALGORITHMS.md section 4), without torch,
so that config checks and workflow planning can use it cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AxisGrid:
    """How one image axis of length ``size`` is tiled by ``count`` tiles of ``tile`` pixels.

    ``pad`` (M) pixels are added on both sides; the tiled window starts at the drawn
    shift in ``[0, pad)`` of the padded axis and spans ``count * tile = size + pad``.
    """

    size: int
    tile: int
    count: int
    pad: int

    @classmethod
    def for_axis(cls, size: int, patch: int) -> AxisGrid:
        k = size // patch if patch < size else 0
        return cls(size=size, tile=patch, count=k + 1, pad=(k + 1) * patch - size)

    @property
    def span(self) -> int:
        return self.count * self.tile
