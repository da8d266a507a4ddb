#!/usr/bin/env python3
"""The tiny demo workflow through the real SLURM executor on the one-node cluster of
start-slurm.sh, and its checks:

1. every job Snakemake runs outside ``localrules`` went through sbatch: SLURM holds
   one job per submission, under the run's name, with the rule in its comment;
2. one running ``train_prior`` job cancelled with ``scancel`` is retried (the
   profile's ``retries``) and the run finishes;
3. the resources reach SLURM as the profile says (``scontrol show job``: memory,
   time limit, CPUs, partition; the memory divided by ``memory_factor``), the
   retried job with its ``attempt`` 2 values;
4. the results equal those of a local run (``--cores 2``, no profile);
5. a ``gpu`` asked of this GPU-less cluster (a rule's own, under ``device: auto``)
   fails with SLURM's own sbatch message, and Snakemake's output shows it.

The workflow runs as ``snakemake --profile profiles/slurm --profile CI``: the paper
profile as it is, and over it a CI profile written from it (``ci_profile``) that
swaps only what this machine cannot honour. See .test/slurm/README.md.

Usage: run_slurm.py [--workdir DIR] (run-slurm.sh starts SLURM first).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from workflow_runner import (  # noqa: E402
    runner_env,
    snakemake_command,
    tiny_demo_config,
    write_config,
)

PAPER_PROFILE = ROOT / "profiles" / "slurm"
PARTITION = "debug"  # start-slurm.sh's only partition
CANCEL_RULE = "train_prior"  # the longest job of the tiny workflow
GRES_ERROR = "Invalid generic resource (gres) specification"
# What is measured rather than computed differs from run to run on any executor:
# timing columns, results/profile/ (time and memory), and the claims on memory,
# which are read from results/profile/.
TIMING = re.compile(r"second|time|per_s$", re.IGNORECASE)
MEASURED_CLAIMS = ("d_memory_",)

# This cluster answers job status through squeue: no slurmdbd, so sacct has no
# data ("Slurm accounting storage is disabled"). Its jobs take seconds, not hours,
# so the first status check comes after 5 s, not the plugin's 40 s.
STATUS_SETTINGS = {
    "slurm-status-command": "squeue",
    "slurm-init-seconds-before-status-checks": 5,
    "slurm-keep-successful-logs": True,
}


def say(msg: str) -> None:
    print(f"run-slurm: {msg}", flush=True)


def fail(msg: str) -> None:
    raise SystemExit(f"run-slurm: FAILED: {msg}")


def check(ok: bool, msg: str) -> None:
    if not ok:
        fail(msg)


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def node_memory_mb() -> int:
    return int(sh("sinfo", "-h", "-n", "localhost", "-o", "%m").split()[0])


def memory_factor(node_mb: int) -> int:
    """The power of two by which the CI profile divides the paper profile's memory:
    the smallest that fits its largest request, at the last attempt its retries
    allow, on this node."""
    paper = yaml.safe_load((PAPER_PROFILE / "config.yaml").read_text())
    last = paper["retries"] + 1
    largest = max(
        expected(r["mem_mb"], last) for r in paper["set-resources"].values() if "mem_mb" in r
    )
    factor = 1
    while largest // factor > node_mb:
        factor *= 2
    return factor


def ci_profile(folder: Path, factor: int) -> Path:
    """The CI profile over profiles/slurm: the paper profile's set-resources, rule by
    rule, with each ``mem_mb`` expression divided by ``factor`` (the paper's 16 to
    64 GB per job do not fit here; the rules keep their proportions and the growth
    with ``attempt``), plus the status settings. A later --profile replaces a
    top-level key whole, so set-resources is restated in full; every other setting
    (executor, retries, default-resources with the account and partition from the
    environment, ...) is the paper profile's own."""
    paper = yaml.safe_load((PAPER_PROFILE / "config.yaml").read_text())
    set_resources = {}
    for rule, resources in paper["set-resources"].items():
        ours = dict(resources)
        if "mem_mb" in ours:
            ours["mem_mb"] = f"({ours['mem_mb']}) // {factor}"
        set_resources[rule] = ours
    folder.mkdir(parents=True, exist_ok=True)
    profile = {**STATUS_SETTINGS, "set-resources": set_resources}
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def status_only_profile(folder: Path) -> Path:
    """Only the status settings: the paper profile's set-resources as they are."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(STATUS_SETTINGS, sort_keys=False))
    return folder


def expected(expr, attempt: int):
    """A profile's resource value: a number, or an expression of ``attempt``."""
    if isinstance(expr, str):
        return eval(expr, {"min": min, "max": max}, {"attempt": attempt})  # noqa: S307
    return expr


# -- Snakemake's log -------------------------------------------------------------
BLOCK = re.compile(r"^(local)?rule (\w+):$")
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")


def parse_log(text: str):
    """Every job block Snakemake printed (rule, local or not, jobid, resources), in
    order, and every SLURM submission (Snakemake jobid -> SLURM ids, in order)."""
    blocks = []
    current = None
    for line in text.splitlines():
        match = BLOCK.match(line.strip())
        if match and not line.startswith(" "):
            current = {"rule": match[2], "local": bool(match[1]), "threads": 1, "resources": {}}
            blocks.append(current)
            continue
        if not line.startswith("    "):
            current = None
        if current is None:
            continue
        key, _, value = line.strip().partition(": ")
        if key == "jobid":
            current["jobid"] = int(value)
        elif key == "threads":
            current["threads"] = int(value)
        elif key == "resources":
            for item in value.split(", "):
                name, _, val = item.partition("=")
                current["resources"][name] = val
    submissions = defaultdict(list)
    for match in SUBMITTED.finditer(text):
        submissions[int(match[1])].append(match[2])
    return blocks, submissions


def job_stats(text: str) -> dict[str, int]:
    """The first "Job stats" table: how many jobs of each rule the run plans."""
    lines = text.splitlines()
    start = lines.index("Job stats:") + 3
    stats = {}
    for line in lines[start:]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        stats[parts[0]] = int(parts[1])
    return stats


# -- SLURM -----------------------------------------------------------------------
def scontrol_job(slurm_id: str) -> dict[str, str]:
    out = sh("scontrol", "-o", "show", "job", slurm_id)
    fields = {}
    for token in out.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def minutes(limit: str) -> int:
    """SLURM's TimeLimit ([D-]HH:MM:SS) in minutes."""
    days, _, clock = limit.rpartition("-")
    h, m, s = (int(x) for x in clock.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


def squeue_run(name: str) -> list[tuple[str, str, str]]:
    out = sh("squeue", "-h", "--states=all", "--name", name, "-o", "%i|%T|%k")
    return [tuple(line.split("|", 2)) for line in out.splitlines() if line]


# -- the steps -------------------------------------------------------------------
def run_on_slurm(work: Path, configfile: Path, profile: Path) -> tuple[str, str, str]:
    """The workflow through profiles/slurm + the CI profile; one running CANCEL_RULE
    job is cancelled with scancel. Returns (Snakemake's output, run name, the
    cancelled SLURM id)."""
    cmd = snakemake_command(
        work, "--profile", str(PAPER_PROFILE), "--profile", str(profile), configfile=configfile
    )
    log_path = work / "snakemake.log"
    say("$ " + " ".join(cmd[1:]))
    env = runner_env({"PATCHPNP_SLURM_PARTITION": PARTITION})
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 1800
    run_name = cancelled = None
    target = None
    while proc.poll() is None and time.monotonic() < deadline:
        if run_name is None:
            match = re.search(r"SLURM run ID: (\S+)", log_path.read_text())
            run_name = match[1] if match else None
        elif cancelled is None:
            for slurm_id, state, comment in squeue_run(run_name):
                if comment.startswith(f"rule_{CANCEL_RULE}_") and state == "RUNNING":
                    target = target or (slurm_id, comment)
            if target:
                # Cancel it once its command has started: the rule's log exists.
                prior = target[1].removeprefix(f"rule_{CANCEL_RULE}_wildcards_")
                if (work / "results" / "logs" / "train" / f"{prior}.log").exists():
                    subprocess.run(["scancel", target[0]], check=True)
                    cancelled = target[0]
                    say(f"scancel {cancelled} ({target[1]}, RUNNING, its command started)")
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
        fail(f"the SLURM run took over 30 minutes; see {log_path}")
    text = log_path.read_text()
    if proc.returncode != 0:
        print(text[-6000:])
        fail(f"the SLURM run failed (exit {proc.returncode}); see {log_path}")
    check(run_name is not None, "no SLURM run ID in Snakemake's output")
    check(cancelled is not None, f"no {CANCEL_RULE} job was seen RUNNING to cancel")
    return text, run_name, cancelled


def check_every_job_through_sbatch(text: str, run_name: str) -> tuple[list, dict]:
    blocks, submissions = parse_log(text)
    stats = job_stats(text)
    remote = {b["jobid"]: b["rule"] for b in blocks if not b["local"] and "jobid" in b}
    local = {b["jobid"]: b["rule"] for b in blocks if b["local"] and "jobid" in b}
    # Every planned job ran exactly once as a job, local or remote (retries aside).
    ran = defaultdict(set)
    for jobid, rule in {**remote, **local}.items():
        ran[rule].add(jobid)
    counts = {rule: len(ids) for rule, ids in ran.items()}
    check(counts == stats, f"jobs run {counts} != jobs planned {stats}")
    check(set(remote) == set(submissions), "a non-local job without an sbatch, or the reverse")
    check(not set(local) & set(submissions), "a local rule's job was submitted")
    slurm_ids = [s for ids in submissions.values() for s in ids]
    seen = {slurm_id for slurm_id, _, _ in squeue_run(run_name)}
    check(set(slurm_ids) == seen, f"SLURM's jobs of the run {sorted(seen)} != {slurm_ids}")
    jobs = {}
    for jobid, ids in submissions.items():
        for slurm_id in ids:
            job = scontrol_job(slurm_id)
            check(job["JobName"] == run_name, f"{slurm_id}: JobName {job['JobName']}")
            check(
                job["Comment"].startswith(f"rule_{remote[jobid]}"),
                f"SLURM job {slurm_id}'s comment {job['Comment']} is not rule {remote[jobid]}",
            )
            jobs[slurm_id] = job
    local_rules = sorted(set(local.values()))
    say(
        f"every job went through sbatch: {len(remote)} jobs of {len(set(remote.values()))}"
        f" rules -> {len(slurm_ids)} SLURM jobs (retries included), all named {run_name}"
        f" with the rule in the comment; {len(local)} local jobs ({', '.join(local_rules)})"
        " ran on the submitting side and none was submitted"
    )
    return blocks, jobs


def check_cancel_and_retry(text: str, jobs: dict, cancelled: str) -> tuple[int, str]:
    _, submissions = parse_log(text)
    jobid = next(j for j, ids in submissions.items() if cancelled in ids)
    ids = submissions[jobid]
    check(ids[0] == cancelled and len(ids) == 2, f"job {jobid}'s submissions: {ids}")
    retry = ids[1]
    check(jobs[cancelled]["JobState"] == "CANCELLED", f"{cancelled}: {jobs[cancelled]}")
    check(jobs[retry]["JobState"] == "COMPLETED", f"the retry {retry}: {jobs[retry]}")
    check(f"SLURM-job '{cancelled}' failed" in text, "Snakemake did not report the cancel")
    check(f"Trying to restart job {jobid}." in text, "Snakemake did not restart the job")
    say(
        f"scancel/retry: SLURM job {cancelled} ({CANCEL_RULE}, Snakemake job {jobid}) is"
        f" CANCELLED; Snakemake reported it, restarted job {jobid} as SLURM job {retry}"
        " (COMPLETED) and the run finished"
    )
    return jobid, retry


def check_resources(blocks: list, jobs: dict, text: str, factor: int) -> None:
    """SLURM's job records against what Snakemake asked for, and for the rules in the
    paper profile's set-resources against its expressions (memory / ``factor``)."""
    _, submissions = parse_log(text)
    paper = yaml.safe_load((PAPER_PROFILE / "config.yaml").read_text())["set-resources"]
    per_job = defaultdict(list)
    for block in blocks:
        if not block["local"] and "jobid" in block:
            per_job[block["jobid"]].append({**block["resources"], "threads": block["threads"]})
    rows = []
    for jobid, ids in submissions.items():
        # The n-th submission of a job is its attempt n.
        for attempt, (slurm_id, asked) in enumerate(zip(ids, per_job[jobid], strict=True), 1):
            job = jobs[slurm_id]
            rule = job["Comment"].removeprefix("rule_").split("_wildcards_")[0]
            got = {
                "mem_mb": int(job["MinMemoryNode"].removesuffix("M")),
                "runtime": minutes(job["TimeLimit"]),
                "cpus": int(job["NumCPUs"]),
                "partition": job["Partition"],
            }
            # What Snakemake asked for is what SLURM holds.
            check(got["mem_mb"] == int(asked["mem_mb"]), f"{slurm_id}: {got} vs {asked}")
            check(got["runtime"] == int(asked["runtime"]), f"{slurm_id}: {got} vs {asked}")
            check(got["partition"] == asked["slurm_partition"] == PARTITION, f"{slurm_id}")
            check(got["cpus"] == asked["threads"], f"{slurm_id}: {got}")
            check("gres" not in job.get("TRES", ""), f"{slurm_id} holds a GPU: {job['TRES']}")
            note = "the rule's own resources"
            if rule in paper:
                # What the paper profile's expressions give at this attempt.
                mem = expected(paper[rule]["mem_mb"], attempt)
                runtime = expected(paper[rule]["runtime"], attempt)
                check(got["mem_mb"] == mem // factor, f"{slurm_id} ({rule}): {got} vs {mem}")
                check(got["runtime"] == runtime, f"{slurm_id} ({rule}): {got} vs {runtime}")
                note = f"profile: {paper[rule]['mem_mb']} = {mem} MB / {factor}"
            rows.append((rule, attempt, slurm_id, got, note))
    say("resources (scontrol show job), the first job of each rule and attempt:")
    shown = set()
    for rule, attempt, slurm_id, got, note in rows:
        if (rule, attempt) in shown:
            continue
        shown.add((rule, attempt))
        print(
            f"    {rule:<36} attempt {attempt}  SLURM {slurm_id:>4}: mem {got['mem_mb']:>5} MB,"
            f" time {got['runtime']:>4} min, {got['cpus']} CPU, partition {got['partition']}"
            f"  ({note})",
            flush=True,
        )
    say(
        f"resources: all {len(rows)} SLURM jobs hold the memory, time, CPUs and partition"
        " Snakemake asked for; the profile's rules what its expressions give"
    )


def comparable_files(results: Path) -> list[Path]:
    """Every CSV result; profiling timings (results/profile/) and logs aside."""
    return sorted(
        p.relative_to(results)
        for p in results.rglob("*.csv")
        if not {"logs", "profile"} & set(p.relative_to(results).parts)
    )


def compare_with_local(slurm_work: Path, local_work: Path) -> None:
    ours = comparable_files(slurm_work / "results")
    theirs = comparable_files(local_work / "results")
    check(ours == theirs, f"different result files: {set(ours) ^ set(theirs)}")
    dropped = set()
    for name in ours:
        a = pd.read_csv(slurm_work / "results" / name, dtype=str, keep_default_na=False)
        b = pd.read_csv(local_work / "results" / name, dtype=str, keep_default_na=False)
        timing = [c for c in a.columns if TIMING.search(c)]
        dropped.update(timing)
        a, b = a.drop(columns=timing), b.drop(columns=timing)
        if name.name == "claims.csv":
            a, b = (t[~t["claim"].str.startswith(MEASURED_CLAIMS)] for t in (a, b))
        if not a.equals(b):
            fail(f"results/{name} differs from the local run's:\n{a.compare(b)}")
    say(
        f"results: {len(ours)} CSV files (metrics, tables, checks) equal the local run's,"
        f" value for value as text; measurements aside (columns {', '.join(sorted(dropped))};"
        " results/profile/; the memory claims in claims.csv)"
    )


def check_gpu_refused(work: Path, configfile: Path, profile: Path) -> None:
    """One denoise_check job, forced, with ``device: auto``, under which the rule asks
    for its GPU (``gpu=gpus_for(1)``); its inputs are the finished run's (mtime alone
    decides: nothing upstream reruns)."""
    target = "results/priors/whole/denoise_check.csv"
    args = [
        "--profile",
        str(PAPER_PROFILE),
        "--profile",
        str(profile),
        target,
        "--config",
        "device=auto",
        "--force",
        "--rerun-triggers",
        "mtime",
    ]
    env = runner_env()
    dry = subprocess.run(
        snakemake_command(work, *args, "-n", configfile=configfile),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    check(dry.returncode == 0, f"dry run: {dry.stderr[-2000:]}")
    planned = job_stats(dry.stdout + dry.stderr)
    check(planned == {"denoise_check": 1}, f"not one denoise_check job: {planned}")
    res = subprocess.run(
        snakemake_command(work, *args, configfile=configfile),
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = res.stdout + res.stderr
    (work / "snakemake-gpu.log").write_text(out)
    check(res.returncode != 0, "a gpu job on a cluster without GPUs did not fail")
    lines = [line.strip() for line in out.splitlines() if GRES_ERROR in line]
    check(bool(lines), f"SLURM's message ({GRES_ERROR}) is not in Snakemake's output")
    check("--gpus=1" in out, "the sbatch call did not ask for --gpus=1")
    say(f"gpu: denoise_check with device: auto (gpu=1) -> sbatch --gpus=1 -> {lines[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new one)")
    args = parser.parse_args()
    scratch = args.workdir or Path(tempfile.mkdtemp(prefix="patchpnp-slurm-"))
    if scratch.exists():
        shutil.rmtree(scratch)
    slurm_work, local_work = scratch / "slurm", scratch / "local"
    configfile = write_config(scratch, tiny_demo_config())
    for work in (slurm_work, local_work):
        work.mkdir(parents=True)
    factor = memory_factor(node_memory_mb())
    profile = ci_profile(scratch / "ci-profile", factor)
    say(f"scratch folder {scratch}; CI profile {profile}/config.yaml (mem_mb / {factor})")

    start = time.monotonic()
    text, run_name, cancelled = run_on_slurm(slurm_work, configfile, profile)
    say(f"the SLURM run finished in {time.monotonic() - start:.0f} s")
    blocks, jobs = check_every_job_through_sbatch(text, run_name)
    check_cancel_and_retry(text, jobs, cancelled)
    check_resources(blocks, jobs, text, factor)

    start = time.monotonic()
    local = subprocess.run(
        snakemake_command(local_work, "--cores", "2", configfile=configfile),
        cwd=local_work,
        env=runner_env(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    (local_work / "snakemake.log").write_text(local.stdout + local.stderr)
    check(local.returncode == 0, f"the local run failed: {local.stderr[-3000:]}")
    say(f"the local run finished in {time.monotonic() - start:.0f} s")
    compare_with_local(slurm_work, local_work)

    check_gpu_refused(slurm_work, configfile, status_only_profile(scratch / "status-profile"))
    say("all checks passed")


if __name__ == "__main__":
    main()
