#!/usr/bin/env python3
"""Stop jobs started by submit.py: SIGTERM to each job's whole process group."""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import files  # noqa: E402

for job_id in sys.argv[1:]:
    pid_file = files(job_id)["pid"]
    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        except ProcessLookupError:
            pass
