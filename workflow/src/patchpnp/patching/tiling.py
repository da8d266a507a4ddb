"""The shifted grid's geometry per image axis (docs/methods.md section 4), without torch,
so that config checks and workflow planning can use it cheaply."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AxisGrid:
    """How one image axis of length ``size`` is tiled by ``count`` tiles of ``tile`` pixels.

    ``pad`` (M) pixels are added on both sides; the tiled window starts at the drawn
    shift in ``[0, shifts)`` of the padded axis and spans ``count * tile = size + pad``.

    With ``tile < size`` the shift takes ``tile`` values, so every offset mod ``tile``
    can be a seam position; the window must then cover the image from any of them,
    which takes ``count = ceil((size + tile - 1) / tile)`` tiles: ``size / tile + 1``
    when ``tile`` divides ``size`` (``pad = tile``, PaDIS's grid), one more tile
    otherwise (e.g. N = 320, P = 128: 4 tiles, pad 192, where ``N // P + 1`` tiles
    would only reach 64 of the 128 seam offsets). With ``tile >= size`` one tile
    covers the axis and the shift places the image inside it (``pad = tile - size``).

    PaDIS's grid is ``(k + 1) P = N + M`` with the shift drawn from ``[0, M)``: the same
    as this one where ``tile`` divides ``size`` (``M = P``, shifts ``[0, P)``). A
    position-aware prior's tiles take their coordinates from its training canvas, so
    there ``pad`` (M) must not exceed the canvas's margin: ``for_axis(N, P).pad <=``
    the prior's ``pad`` (:class:`patchpnp.patching.patches.CanvasError` otherwise).
    """

    size: int
    tile: int
    count: int
    pad: int

    @classmethod
    def for_axis(cls, size: int, patch: int) -> AxisGrid:
        count = (size - 1) // patch + 2 if patch < size else 1
        return cls(size=size, tile=patch, count=count, pad=count * patch - size)

    @property
    def span(self) -> int:
        return self.count * self.tile

    @property
    def shifts(self) -> int:
        """How many shifts there are to draw from (``[0, shifts)``; 0: nothing to draw)."""
        return self.tile if self.tile < self.size else self.pad
