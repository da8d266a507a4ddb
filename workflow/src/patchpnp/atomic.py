"""Atomic file output: a job either writes its whole result or nothing.

Every writer in patchpnp goes through :func:`atomic_path`: it hands out a
temporary name in the destination's folder, and only a block that finishes
without an exception renames it onto the destination (``os.replace`` is atomic
on POSIX). A crash, a kill or a validation error therefore never leaves a
partial HDF5 file where Snakemake (or a user) would take it for a result.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; move it onto ``dest`` on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    # mkstemp creates the file 0600; results are shared files, so honour the umask.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
