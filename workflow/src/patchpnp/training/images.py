"""Training images from extracted split files, read lazily when they are large.

The paper's training set (289k images at 256 x 256, 76 GB as float32) does not
fit in memory, so :class:`ImageFiles` reads the images a batch needs straight
from HDF5 (one chunk per image, see :mod:`patchpnp.data.extract`). Small sets, like
the demo's, are loaded once, which is faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from patchpnp.formats import SplitReader, split_geometry


class ImageFiles:
    """The concatenation of the ``images`` of several split files."""

    def __init__(self, paths: Sequence[str | Path], max_memory_mb: float = 2048):
        if not paths:
            raise ValueError("no training files given")
        self.paths = [Path(p) for p in paths]
        counts, shapes = [], set()
        for p in self.paths:
            count, shape = split_geometry(p)
            counts.append(count)
            shapes.add(shape)
        if len(shapes) != 1:
            raise ValueError(f"training files hold images of different shapes: {sorted(shapes)}")
        self.shape = shapes.pop()  # (C, H, W)
        self.offsets = np.concatenate([[0], np.cumsum(counts)])
        nbytes = self.offsets[-1] * int(np.prod(self.shape)) * 4
        self._memory: torch.Tensor | None = None
        if nbytes <= max_memory_mb * 2**20:
            self._memory = torch.cat(
                [torch.from_numpy(self._read_file(i)) for i in range(len(self.paths))]
            )
        self._readers = [SplitReader(p) for p in self.paths]

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def in_memory(self) -> bool:
        return self._memory is not None

    def _read_file(self, i: int) -> np.ndarray:
        reader = SplitReader(self.paths[i])
        try:
            return reader.read(slice(None))
        finally:
            reader.close()

    def get(self, indices: Sequence[int]) -> torch.Tensor:
        """Images ``indices`` (global) as float32 ``[n, C, H, W]``, in the given order."""
        idx = np.asarray(indices, dtype=np.int64)
        if self._memory is not None:
            return self._memory[torch.from_numpy(idx)]
        out = np.empty((len(idx), *self.shape), np.float32)
        file_of = np.searchsorted(self.offsets, idx, side="right") - 1
        for i in np.unique(file_of):
            sel = np.nonzero(file_of == i)[0]
            local = idx[sel] - self.offsets[i]
            order = np.argsort(local, kind="stable")
            uniq, inverse = np.unique(local[order], return_inverse=True)  # h5py wants increasing
            block = self._readers[int(i)].read(uniq)
            out[sel[order]] = block[inverse]
        return torch.from_numpy(out)

    def close(self) -> None:
        for reader in self._readers:
            reader.close()
