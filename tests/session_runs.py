"""Heavy work a test module hands to the session's background threads (tests/conftest.py).

A test whose cost is a command in other processes (a training under torchrun, a
profile in fresh interpreters, a Snakemake run) registers that command here as a
function of a fresh folder and of the environment the session started with (which a
test's monkeypatched variables never reach: start every process with it). The
registration is also the session fixture of the same name: it returns what the command
returned, and the test checks it. The commands run in a background thread from the
session's first test, beside the other tests, instead of in turn on the one core the
tests run on.

    @background("ddp_training")
    def _ddp_training(work: Path, env: dict) -> Path: ...

    def test_ddp(ddp_training): ...
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# name -> build(work folder, environment); in the order the modules registered them (a
# thread runs them in this order)
REGISTERED: dict[str, Callable[[Path, dict], Any]] = {}


def background(name: str) -> Callable:
    """Register ``build(work, env)`` as the session run ``name``; the decorated name
    becomes the session fixture ``name``, which waits for the run (conftest's ``runs``)."""

    def register(build: Callable[[Path, dict], Any]):
        if name in REGISTERED:
            raise ValueError(f"session run {name!r} is registered twice")
        REGISTERED[name] = build

        def fixture(runs):
            return runs.get(name)

        fixture.__doc__ = build.__doc__
        return pytest.fixture(scope="session", name=name)(fixture)

    return register
