"""What one training step sees: whole images, random patches, or PaDIS patches.

docs/methods.md sections 3 and 13.

- ``whole``: full images (the paper's 256 x 256 prior).
- ``patch``: Patch Diffusion crops of ``train_patch`` at uniformly random
  positions, no padding, no coordinates (the paper's 128 x 128 prior).
- ``padis``: the position-aware prior as PaDIS trains it. Each image (N x N) is
  zero-padded by ``pad`` on every side (default N/4: PaDIS pads 256 by 64), and a
  patch corner is uniform over the whole padded canvas of side ``R = N + 2 pad``
  (``[0, R - p]``), so a patch may lie partly or wholly in the black margin. Two
  coordinate channels, rows then columns, ``(idx / (R - 1) - 0.5) * 2`` over the
  canvas (:func:`patchpnp.prior.precond.canvas_coordinates`, the function inference
  uses too), go with every patch. One patch size per step is drawn from a mixture
  (default :func:`patchpnp.prior.spec.padis_patch_mixture`: N/16, N/8, N/4 with
  probabilities 0.2, 0.3, 0.5), and the batch holds ``batch_size * train_patch / p``
  patches of side ``p``
  (PaDIS: 64, 32, 16 patches of 16, 32, 64 per unit of its batch), so smaller
  patches come in larger batches, in proportion to ``1 / p``.

Every draw of step ``s`` comes from a generator seeded by ``(seed, s)``: a
resumed run sees exactly the batches an uninterrupted run would, without any
sampler state to checkpoint. Under DDP every process draws the same global
batch and keeps its own slice of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from patchpnp.prior.precond import canvas_coordinates
from patchpnp.prior.spec import default_canvas_pad
from patchpnp.runtime import keyed_choice, keyed_generator, keyed_randint
from patchpnp.training.images import ImageFiles

SCHEMES = ("whole", "patch", "padis")


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator for step ``step`` that depends on nothing else."""
    return keyed_generator(seed, step, stream)


@dataclass(frozen=True)
class StepDraw:
    """Where step ``step``'s global batch comes from: the patch side, and per patch the
    image index and the corner (top, left) on the canvas (padded for ``padis``)."""

    size: int
    images: torch.Tensor
    top: torch.Tensor
    left: torch.Tensor


@dataclass(frozen=True)
class Scheme:
    name: str
    image_size: int
    batch_size: int
    train_patch: int | None = None
    patch_sizes: tuple[int, ...] = ()
    patch_probs: tuple[float, ...] = ()
    pad: int | None = None
    coords: bool = field(init=False)

    def __post_init__(self):
        if self.name not in SCHEMES:
            raise ValueError(f"unknown training scheme '{self.name}'; expected one of {SCHEMES}")
        object.__setattr__(self, "coords", self.name == "padis")
        if self.name == "padis":
            pad = default_canvas_pad(self.image_size) if self.pad is None else self.pad
            if int(pad) != pad or pad < 0:
                raise ValueError(f"padis: pad must be an integer >= 0, got {self.pad}")
            object.__setattr__(self, "pad", int(pad))
        elif self.pad:
            raise ValueError(f"pad is for the padis scheme only, not '{self.name}'")
        for p in self.sizes:
            if p > self.image_size:
                raise ValueError(
                    f"training patch {p} is larger than the training images ({self.image_size})"
                )
        if self.name == "padis" and len(self.patch_probs) != len(self.sizes):
            raise ValueError("padis: patch_probs must give one probability per patch size")

    @property
    def sizes(self) -> tuple[int, ...]:
        """Every input size the network will be trained on."""
        if self.name == "whole":
            return (self.image_size,)
        if self.name == "patch":
            return (self.train_patch,)
        return tuple(self.patch_sizes) or (self.train_patch,)

    @property
    def canvas(self) -> int:
        """The side of the canvas patch corners are drawn on (the padded image for padis)."""
        return self.image_size + 2 * (self.pad or 0)

    def batch_for(self, size: int) -> int:
        """Patches of side ``size`` in a step: ``batch_size``, or for padis
        ``batch_size * train_patch / size`` (in proportion to ``1 / size``, as PaDIS)."""
        if self.name != "padis":
            return self.batch_size
        reference = self.train_patch or max(self.sizes)
        return max(1, round(self.batch_size * reference / size))

    def patch_size(self, generator: torch.Generator) -> int:
        """The patch side of a step, the first draw from its generator."""
        if self.name != "padis":
            return self.sizes[0]
        probs = torch.tensor(self.patch_probs, dtype=torch.float64)
        return self.sizes[keyed_choice(probs, generator)]

    def positions(self, num_images: int, seed: int, step: int) -> StepDraw:
        """Step ``step``'s global batch: size, image indices and canvas corners."""
        g = step_generator(seed, step)
        size = self.patch_size(g)
        batch = self.batch_for(size)
        idx = keyed_randint(num_images, (batch,), g)
        room = self.canvas - size
        top = keyed_randint(room + 1, (batch,), g)
        left = keyed_randint(room + 1, (batch,), g)
        return StepDraw(size, idx, top, left)

    def draw(
        self, images: ImageFiles, seed: int, step: int, rank: int = 0, world: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This process's share of step ``step``'s batch: ``(x in [0, 1], coords or None)``."""
        d = self.positions(len(images), seed, step)
        size, batch = d.size, len(d.images)
        if batch % world:
            raise ValueError(f"batch of {batch} does not split over {world} processes")
        mine = slice(rank * batch // world, (rank + 1) * batch // world)
        idx, top, left = d.images[mine], d.top[mine], d.left[mine]
        x = images.get(idx.tolist())
        if self.pad:  # zeros: black in [0, 1] units, as the zero margin at inference
            x = F.pad(x, (self.pad,) * 4)
        if size != self.canvas:
            x = torch.stack(
                [
                    im[:, t : t + size, l : l + size]
                    for im, t, l in zip(x, top.tolist(), left.tolist(), strict=True)
                ]
            )
        coords = None
        if self.coords:
            ar = torch.arange(size)
            # canvas index -> image index (minus pad): the function inference uses too
            coords = canvas_coordinates(
                top[:, None] - self.pad + ar,
                left[:, None] - self.pad + ar,
                self.image_size,
                self.image_size,
                self.pad,
            )
        return x, coords
