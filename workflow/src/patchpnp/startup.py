"""What a short process that imports torch pays before and after its work, and less of it.

Importing torch (and pandas, h5py, ...) creates some hundreds of thousands of objects that
live as long as the process. Python's cyclic garbage collector traverses every tracked
object at each full collection: several times while the imports create them, and once
more when the interpreter shuts down. None of them is garbage, so that work is wasted: it
was about 0.7 s of CPU of the 3.0 s that a job importing ``patchpnp.inference.cell``
spends on starting and stopping (2 cores, torch 2.14; eight interleaved runs of each).
A workflow run starts hundreds of such processes.

The remedy is the one :func:`gc.freeze` exists for: after the imports, move every tracked
object to the collector's permanent generation, which it never traverses again. Objects
made later are collected as usual, and the collector is back on when the work starts.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def untraced_imports() -> Iterator[None]:
    """No cyclic collection while the block imports; what it imported is frozen after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def freeze_imported() -> None:
    """For a worker whose imports already ran (``python -m``): freeze what exists now."""
    gc.freeze()
