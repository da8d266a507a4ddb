#!/usr/bin/env python3
"""Start a Snakemake jobscript as a detached background process; print its job id.

The job runs in its own session (so cancel.py can stop it and its children) and
writes its exit status to ``<id>.rc`` when it ends, which status.py reads.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from jobs import STATE, files  # noqa: E402


def main() -> None:
    jobscript = Path(sys.argv[-1])
    STATE.mkdir(parents=True, exist_ok=True)
    job_id = f"lc{time.time_ns()}"
    paths = files(job_id)
    # Snakemake removes its jobscript when the job ends; keep our own copy.
    shutil.copyfile(jobscript, paths["script"])
    wrapper = 'bash "$0" > "$1" 2>&1; echo $? > "$2.tmp" && mv "$2.tmp" "$2"'
    proc = subprocess.Popen(
        ["bash", "-c", wrapper, str(paths["script"]), str(paths["log"]), str(paths["rc"])],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    paths["pid"].write_text(str(proc.pid))
    print(job_id)


if __name__ == "__main__":
    main()
