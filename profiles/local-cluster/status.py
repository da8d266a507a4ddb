#!/usr/bin/env python3
"""Print running, success or failed for a job id from submit.py."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import alive, files  # noqa: E402


def status(job_id: str) -> str:
    paths = files(job_id)
    if paths["rc"].exists():
        return "success" if paths["rc"].read_text().strip() == "0" else "failed"
    if not paths["pid"].exists():
        return "failed"
    if alive(int(paths["pid"].read_text())):
        return "running"
    # It may have written its status between the two checks.
    if paths["rc"].exists():
        return "success" if paths["rc"].read_text().strip() == "0" else "failed"
    return "failed"  # gone without an exit status: killed


if __name__ == "__main__":
    print(status(sys.argv[1]))
