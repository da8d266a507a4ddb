"""Common random numbers: every random draw of a solve is keyed, never sequential.

docs/methods.md section 10. A draw of a solve comes from a generator built from
``(seed, image identity, purpose, step)`` and nothing else:

- purpose ``solver``: the initial state's noise, the re-noising of every step,
  DPS's ``z``;
- purpose ``grid``: the shifted grid's shifts and the noisy zero margin of
  PaDIS's padding (everything the patch wrapper draws);
- purpose ``guidance``: a data term's own draws (deepinv's ILVR re-noises the
  measurement at every step).

Two cells that differ only in the prior, the inference size or the padding
therefore see the same solver noise for the same image, step by step, however
many grid draws the patch wrapper makes: a patch-minus-whole difference then
measures the tiling, not two independent noise paths. With a pointwise
denoiser the whole and every patch cell agree bit for bit (tested).

The image identity is a stable integer (:func:`image_key`) of the image's name
(source file and slice), so a result does not depend on the image's position
in the evaluation file, on the batch it shares, or on the job's scheduling.
A ``sample`` index (posterior samples: several solves of one measurement)
keys every stream, the grid's included: two samples are two independent solves
of the same measurement, tiles and noisy margin as well as solver noise (a
shared grid would make the samples agree where the tiling errs and bias their
spread low). Sample 0 is keyed as before, so a grid cell (one sample) and its
first posterior sample are the same solve, and whole and patch cells stay paired
through the solver stream, which a whole-image cell is the only one to draw.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from patchpnp.runtime import keyed_generator

__all__ = [
    "INIT_STEP",
    "PURPOSES",
    "SequentialStreams",
    "SolveStreams",
    "image_key",
]

# Fixed codes, so renaming a purpose in the code never changes the numbers.
PURPOSES = {"solver": 1, "grid": 2, "guidance": 3}
INIT_STEP = -1  # the initial state's draw, before step 0


def image_key(name: str) -> int:
    """A stable 63-bit integer for an image name such as ``'file_1000.h5:17'``."""
    digest = hashlib.blake2b(str(name).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _check_key(purpose: str, step: int) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown stream purpose {purpose!r}; expected one of {list(PURPOSES)}")
    if int(step) < INIT_STEP:
        raise ValueError(f"step must be >= {INIT_STEP}, got {step}")


class SolveStreams:
    """The random streams of one batch: a generator per (image, purpose, step).

    Args:
        seed: the config's seed.
        image_keys: one non-negative integer per image of the batch (see
            :func:`image_key`; tests may use indices).
        sample: the posterior-sample index; keys every purpose (0 keys none).
    """

    def __init__(self, seed: int, image_keys: Sequence[int], sample: int = 0):
        keys = [int(k) for k in image_keys]
        if not keys:
            raise ValueError("SolveStreams: need at least one image key")
        if any(k < 0 for k in keys) or int(seed) < 0 or int(sample) < 0:
            raise ValueError(
                f"SolveStreams: seed, sample and image keys must be >= 0, got seed {seed}, "
                f"sample {sample}, keys {keys}"
            )
        self.seed, self.image_keys, self.sample = int(seed), keys, int(sample)

    @classmethod
    def for_names(cls, seed: int, names: Sequence[str], sample: int = 0) -> SolveStreams:
        """Streams keyed by image names (:func:`image_key`)."""
        return cls(seed, [image_key(n) for n in names], sample)

    def __len__(self) -> int:
        return len(self.image_keys)

    def generators(self, purpose: str, step: int) -> list[torch.Generator]:
        """One fresh generator per image for ``purpose`` at ``step`` (``INIT_STEP`` first)."""
        _check_key(purpose, step)
        extra = (self.sample,) if self.sample else ()
        return [
            keyed_generator(self.seed, k, PURPOSES[purpose], int(step) - INIT_STEP, *extra)
            for k in self.image_keys
        ]

    def solver(self, step: int) -> list[torch.Generator]:
        """The solver-noise generators of ``step``."""
        return self.generators("solver", step)

    def grid(self, step: int) -> list[torch.Generator]:
        """The grid generators of the denoiser call at ``step``."""
        return self.generators("grid", step)

    def subset(self, indices: Sequence[int]) -> SolveStreams:
        """The streams of some images of the batch, in the order given."""
        return SolveStreams(self.seed, [self.image_keys[i] for i in indices], self.sample)

    def __repr__(self) -> str:
        return f"SolveStreams(seed={self.seed}, images={len(self)}, sample={self.sample})"


class SequentialStreams(SolveStreams):
    """One generator per image that every draw advances, whatever its purpose or step.

    Not common random numbers: this is how a library that draws from torch's global
    generator in order (deepinv) consumes randomness, so seeding both alike pairs their
    noise draw for draw (:mod:`patchpnp.tools.crosscheck`). Use it with a whole-image denoiser:
    a patch wrapper would take its shifts from the same sequence.
    """

    def __init__(self, generators: Sequence[torch.Generator]):
        gens = list(generators)
        super().__init__(0, range(len(gens)))
        self._gens = gens

    def generators(self, purpose: str, step: int) -> list[torch.Generator]:
        _check_key(purpose, step)
        return self._gens

    def subset(self, indices: Sequence[int]) -> SequentialStreams:
        return SequentialStreams([self._gens[i] for i in indices])
