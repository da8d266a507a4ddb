"""Fault injection, so that tests can show the workflow survives a failing job.

Set ``PATCHPNP_INJECT_FAULT`` to one or more rules ``PATTERN[@TIMES]`` separated by
``;``. A ``patchpnp`` command whose command line contains ``PATTERN`` fails with exit
status 3 before doing any work: always, or only its first ``TIMES`` runs, counted in
files under ``PATCHPNP_INJECT_FAULT_STATE`` (a folder; required with ``@TIMES``).
Unset, nothing happens: the check costs one environment lookup.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

ENV = "PATCHPNP_INJECT_FAULT"
STATE_ENV = "PATCHPNP_INJECT_FAULT_STATE"


class InjectedFault(RuntimeError):
    """The failure a test asked for."""


def parse_rules(spec: str) -> list[tuple[str, int | None]]:
    """``"a@1;b"`` -> ``[("a", 1), ("b", None)]`` (``None``: fail every time)."""
    rules = []
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        pattern, _, times = item.partition("@")
        if not pattern:
            raise ValueError(f"{ENV}: empty pattern in {spec!r}")
        try:
            count = int(times) if times else None
        except ValueError:
            raise ValueError(f"{ENV}: {times!r} after '@' in {item!r} is not a count") from None
        rules.append((pattern, count))
    return rules


def maybe_fail(command_line: str) -> None:
    """Raise :class:`InjectedFault` when a rule in ``PATCHPNP_INJECT_FAULT`` matches."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    for pattern, times in parse_rules(spec):
        if pattern not in command_line:
            continue
        if times is None:
            raise InjectedFault(f"injected fault: command line contains {pattern!r} ({ENV})")
        state = os.environ.get(STATE_ENV)
        if not state:
            raise ValueError(f"{ENV}: {pattern}@{times} needs {STATE_ENV} (a folder)")
        counter = Path(state) / hashlib.sha1(pattern.encode()).hexdigest()[:16]
        counter.parent.mkdir(parents=True, exist_ok=True)
        done = int(counter.read_text()) if counter.exists() else 0
        if done < times:
            counter.write_text(str(done + 1))
            raise InjectedFault(
                f"injected fault {done + 1} of {times}: command line contains {pattern!r} ({ENV})"
            )
