"""What one training step sees: whole images, random patches, or PaDIS patches.

docs/methods.md section 3.

- ``whole``: full images (the paper's 256 x 256 prior).
- ``patch``: Patch Diffusion crops of ``train_patch`` at uniformly random
  positions, no padding, no coordinates (the paper's 128 x 128 prior).
- ``padis``: crops with two coordinate channels ``(i/(R-1) - 0.5) * 2`` over the
  full image, and a mixture of patch sizes (PaDIS / Patch Diffusion). The batch
  grows as the patch shrinks, ``batch_size * (train_patch / p)^2``, so every step
  sees about the same number of pixels.

Every draw of step ``s`` comes from a generator seeded by ``(seed, s)``: a
resumed run sees exactly the batches an uninterrupted run would, without any
sampler state to checkpoint. Under DDP every process draws the same global
batch and keeps its own slice of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from patchpnp.prior import coordinate_channels
from patchpnp.runtime import keyed_choice, keyed_generator, keyed_randint
from patchpnp.training.images import ImageFiles

SCHEMES = ("whole", "patch", "padis")


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A generator for step ``step`` that depends on nothing else."""
    return keyed_generator(seed, step, stream)


@dataclass(frozen=True)
class Scheme:
    name: str
    image_size: int
    batch_size: int
    train_patch: int | None = None
    patch_sizes: tuple[int, ...] = ()
    patch_probs: tuple[float, ...] = ()
    coords: bool = field(init=False)

    def __post_init__(self):
        if self.name not in SCHEMES:
            raise ValueError(f"unknown training scheme '{self.name}'; expected one of {SCHEMES}")
        object.__setattr__(self, "coords", self.name == "padis")
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

    def batch_for(self, size: int) -> int:
        if self.name != "padis":
            return self.batch_size
        return max(1, round(self.batch_size * (self.train_patch / size) ** 2))

    def draw(
        self, images: ImageFiles, seed: int, step: int, rank: int = 0, world: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This process's share of step ``step``'s batch: ``(x in [0, 1], coords or None)``."""
        g = step_generator(seed, step)
        if self.name == "padis":
            probs = torch.tensor(self.patch_probs, dtype=torch.float64)
            size = self.sizes[keyed_choice(probs, g)]
        else:
            size = self.sizes[0]
        batch = self.batch_for(size)
        idx = keyed_randint(len(images), (batch,), g)
        room = self.image_size - size
        top = keyed_randint(room + 1, (batch,), g)
        left = keyed_randint(room + 1, (batch,), g)
        if batch % world:
            raise ValueError(f"batch of {batch} does not split over {world} processes")
        mine = slice(rank * batch // world, (rank + 1) * batch // world)
        idx, top, left = idx[mine], top[mine], left[mine]
        x = images.get(idx.tolist())
        if size != self.image_size:
            x = torch.stack(
                [
                    im[:, t : t + size, l : l + size]
                    for im, t, l in zip(x, top.tolist(), left.tolist(), strict=True)
                ]
            )
        coords = None
        if self.coords:
            ar = torch.arange(size)
            coords = coordinate_channels(
                top[:, None] + ar, left[:, None] + ar, self.image_size, self.image_size
            )
        return x, coords
