"""Measure in a fresh interpreter: one configuration per process, its result as JSON.

Memory peaks and first-call costs are only comparable when nothing measured
before shares the process (allocator caches, oneDNN primitives, loaded
libraries), so the profiles (:mod:`patchpnp.evaluation.profiling`) and the
benchmarks here run each configuration through :func:`run_fresh`. The worker is
the module's own command line; it prints its result as the last line of stdout.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence


class FreshProcessError(RuntimeError):
    """A worker process failed; the message holds the end of its stderr."""


def run_fresh(module: str, args: Sequence[str], what: str) -> dict:
    """Run ``python -m module *args`` in a new interpreter; return its last stdout line,
    parsed as JSON. ``what`` names the configuration in the error if it fails."""
    cmd = [sys.executable, "-m", module, *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise FreshProcessError(f"{what} failed (exit {res.returncode}):\n{res.stderr[-2000:]}")
    lines = res.stdout.strip().splitlines()
    if not lines:
        raise FreshProcessError(f"{what}: the worker printed no result")
    return json.loads(lines[-1])
