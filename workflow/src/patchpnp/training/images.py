"""Training images from extracted split files, read lazily when they are large.

The paper's training set (289k images at 256 x 256, 76 GB as float32) does not
fit in memory, so :class:`ImageFiles` reads the images a batch needs straight
from HDF5 (one chunk per image, see :mod:`patchpnp.extract`). Small sets, like
the demo's, are loaded once, which is faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch


class ImageFiles:
    """The concatenation of the ``images`` of several split files."""

    def __init__(self, paths: Sequence[str | Path], max_memory_mb: float = 2048):
        if not paths:
            raise ValueError("no training files given")
        self.paths = [Path(p) for p in paths]
        counts, shapes = [], set()
        for p in self.paths:
            with h5py.File(p, "r") as f:
                if "images" not in f:
                    raise ValueError(f"{p}: no 'images' dataset; is this an extracted split?")
                counts.append(f["images"].shape[0])
                shapes.add(tuple(f["images"].shape[1:]))
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
        self._handles: dict[int, h5py.File] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def in_memory(self) -> bool:
        return self._memory is not None

    def _read_file(self, i: int, index=slice(None)) -> np.ndarray:
        with h5py.File(self.paths[i], "r") as f:
            return np.asarray(f["images"][index], dtype=np.float32)

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
            handle = self._handles.get(int(i))
            if handle is None:
                handle = self._handles[int(i)] = h5py.File(self.paths[i], "r")
            block = handle["images"][uniq]
            out[sel[order]] = block[inverse]
        return torch.from_numpy(out)

    def close(self) -> None:
        for h in self._handles.values():
            h.close()
        self._handles.clear()
