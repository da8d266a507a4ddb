"""Atomic file output: a job either writes its whole result or nothing.

Every writer in patchpnp goes through :func:`atomic_path`: it hands out a
temporary name in the destination's folder, and only a block that finishes
without an exception renames it onto the destination (``os.replace`` is atomic
on POSIX). A crash, a kill or a validation error therefore never leaves a
partial HDF5 file where Snakemake (or a user) would take it for a result.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; move it onto ``dest`` on success."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # A writer killed outright (SIGKILL, node failure) cannot clean up; its
    # leftovers are removed by the next writer of the same destination (Snakemake
    # runs one job per output at a time).
    for stale in dest.parent.glob(f".{glob.escape(dest.name)}.*.part"):
        stale.unlink(missing_ok=True)
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


class OutputLocationError(OSError):
    """The results folder cannot hold results: not a folder, or not writable."""


def check_writable_dir(path: str | os.PathLike) -> None:
    """Fail early, naming ``path``, when results cannot be written there.

    A missing folder is fine when its nearest existing ancestor takes new files
    (the jobs create it). The check writes and removes one probe file, so it sees
    what permission bits alone do not (read-only mounts, root on NFS).
    """
    path = Path(path)
    probe_dir = path
    while not probe_dir.exists():
        if probe_dir.is_symlink():
            raise OutputLocationError(f"{path}: {probe_dir} is a broken symbolic link")
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise OutputLocationError(f"{path}: results must go to a folder, but {probe_dir} is a file")
    try:
        with tempfile.TemporaryFile(dir=probe_dir, prefix=".patchpnp-write-probe-"):
            pass
    except OSError as err:
        raise OutputLocationError(
            f"{path}: cannot write results there ({probe_dir}: {err.strerror or err})"
        ) from err
