#!/usr/bin/env bash
# The tiny workflow through `snakemake --profile profiles/slurm` on a real one-node
# SLURM (start-slurm.sh), with the checks of run_slurm.py: every job through
# sbatch, a scancel'd job retried, the resources in SLURM's records, the results
# equal to a local run's, a gpu request refused by SLURM in the log. Run as root,
# from anywhere, with the project's environment active (or .venv present).
#   .test/slurm/run-slurm.sh [--workdir DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=python3
if [[ -z ${VIRTUAL_ENV:-} && -x $root/.venv/bin/python ]]; then
	python=$root/.venv/bin/python
fi
start=$(date +%s)
"$here/start-slurm.sh"
"$python" "$here/run_slurm.py" "$@"
echo "run-slurm: wall time $(($(date +%s) - start)) s (SLURM start included)"
