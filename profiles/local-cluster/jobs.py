"""Shared by submit.py, status.py and cancel.py: where the stand-in cluster keeps
each job's state (``.snakemake/local-cluster/`` in the working directory)."""

from __future__ import annotations

import os
from pathlib import Path

STATE = Path(".snakemake") / "local-cluster"


def files(job_id: str) -> dict[str, Path]:
    if not job_id.startswith("lc") or not job_id[2:].replace("-", "").isdigit():
        raise SystemExit(f"local-cluster: {job_id!r} is not a job id of this cluster")
    base = STATE / job_id
    return {
        "script": base.with_suffix(".sh"),
        "log": base.with_suffix(".log"),
        "pid": base.with_suffix(".pid"),
        "rc": base.with_suffix(".rc"),
    }


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A finished child that nobody reaped is a zombie: not running.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
