#!/usr/bin/env bash
# The paper config at fastMRI's shapes, end to end: writes fastMRI-shaped folders
# (.test/write_fastmri.py) and AAPM-shaped DICOM CT folders (.test/write_ct_dicom.py,
# for snakemake padis), then runs config/paper.yaml's whole `all` with the CI
# overlay .test/config.yaml (same image, patch, mask, acceleration and coil settings;
# a tiny network, few steps, few images) in a scratch folder, so nothing mixes with
# the repository's results/. Prints the number of jobs and the wall time; fails when
# any job fails.
#
#   .test/run-paper.sh [SCRATCH]   # SCRATCH is kept; without it a temporary folder
#                                  # is used and removed after a successful run
#
# PATCHPNP_CORES sets --cores (default 2). Needs the package's environment active
# (`snakemake` and `patchpnp` on PATH).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cores=${PATCHPNP_CORES:-2}
if [[ $# -gt 0 ]]; then
    scratch=$(mkdir -p "$1" && cd "$1" && pwd)
    keep=1
else
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/patchpnp-paper.XXXXXX")
    keep=0
fi
fastmri="$scratch/fastmri"
ct="$scratch/ct"
work="$scratch/work"
log="$scratch/snakemake.log"
mkdir -p "$work"

echo "== fastMRI-shaped folders in $fastmri, DICOM CT in $ct"
SECONDS=0
python "$root/.test/write_fastmri.py" "$fastmri" --config "$root/.test/config.yaml"
python "$root/.test/write_ct_dicom.py" "$ct" --config "$root/.test/config.yaml"
echo "written in ${SECONDS} s"

echo "== snakemake --configfile config/paper.yaml .test/config.yaml (all, --cores $cores)"
echo "   working directory $work, log $log"
SECONDS=0
status=0
# Snakemake's own CPU is taken from the jobs' 2 cores: the greedy scheduler solves no
# program per round, and a job rate limit checked every 10 s instead of every second
# keeps the scheduler from waking hundreds of times a second late in the run (each
# finished job starts one more 1 s re-evaluation timer that never stops).
snakemake --snakefile "$root/Snakefile" --directory "$work" --cores "$cores" \
    --scheduler greedy --max-jobs-per-timespan 1000/10s \
    --configfile "$root/config/paper.yaml" "$root/.test/config.yaml" \
    --config fastmri_root="$fastmri" "padis={ct: {root: $ct}}" >"$log" 2>&1 || status=$?
wall=$SECONDS
jobs=$(awk '/^total/ {print $2; exit}' "$log")
if [[ $status -ne 0 ]]; then
    tail -n 100 "$log"
    echo "FAILED: the paper config at fastMRI shapes (exit $status after ${wall} s;" \
        "${jobs:-?} jobs planned); log and results kept in $scratch" >&2
    exit "$status"
fi
done_jobs=$(grep -c "^Finished jobid" "$log" || true)
echo "paper config at fastMRI shapes: ${done_jobs} of ${jobs:-?} jobs done in ${wall} s" \
    "($((wall / 60)) min $((wall % 60)) s) on $cores cores"
if [[ $keep -eq 0 ]]; then
    rm -rf "$scratch"
else
    echo "tables (table1, claims, mri, solvers, uncertainty, padis) in $work/results/tables"
fi
