"""Shared fixtures. The end-to-end tests' data, priors and runs are built once per test
run, into a folder of their own, and never written to afterwards except by the rerun
tests' dry runs: a test that runs Snakemake for real works on a copy
(``workflow_runner.copy_workdir``). Under pytest-xdist the workers share them: the first
worker that needs one builds it under a lock, the others wait for it."""

import copy
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastmri_files import write_folder
from workflow_runner import (
    copy_workdir,
    dry_run,
    result_files,
    runner_env,
    snakemake,
    snakemake_command,
    tiny_demo_config,
    write_config,
)

ROOT = Path(__file__).resolve().parents[1]


# The modules that run the tiny workflow end to end go first: under pytest-xdist their
# long chains (data and priors, the killed run, the runs on copies of them) start at
# once, and the short tests fill the other worker meanwhile. Modules stay whole, so
# their module-scoped fixtures are built once.
END_TO_END_FIRST = ("test_scaleout.py", "test_workflow.py")


def pytest_collection_modifyitems(session, config, items):
    def rank(item):
        name = item.path.name
        return END_TO_END_FIRST.index(name) if name in END_TO_END_FIRST else len(END_TO_END_FIRST)

    items.sort(key=rank)  # stable: the order within each module stays


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session", autouse=True)
def no_slurm_controller(tmp_path_factory):
    """Every Snakemake start imports the SLURM executor plugin, which asks `scontrol show
    config` for MinJobAge when SLURM's commands are installed. With no controller (or
    munge) running, as on CI's machine before .test/slurm starts them, each ask waits
    about 9 s. The tests submit nothing to SLURM: their commands (Snakemake runs and
    the jobs they start inherit the environment) read a configuration whose controller
    refuses at once. .test/slurm's real cluster is tested outside pytest."""
    conf = tmp_path_factory.mktemp("slurm") / "slurm.conf"
    conf.write_text(
        "ClusterName=patchpnp-tests\nSlurmctldHost=localhost\nSlurmctldPort=1\n"
        "AuthType=auth/none\nMessageTimeout=1\nTCPTimeout=1\n"
        "NodeName=localhost CPUs=1\nPartitionName=none Nodes=localhost\n"
    )
    before = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    yield conf
    if before is None:
        del os.environ["SLURM_CONF"]
    else:
        os.environ["SLURM_CONF"] = before


@contextmanager
def _locked(path: Path):
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def built_once(tmp_path_factory, name: str, build) -> dict:
    """``build(folder)`` once per test run, whatever the number of xdist workers: in a
    folder every worker sees, under a lock. It returns what ``build`` returned (JSON);
    a failed build fails the other workers' tests at once instead of running again."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, done = root / name, root / f"{name}.json"
    with _locked(root / f"{name}.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            try:
                result = {"ok": build(folder)}
            except BaseException as err:
                done.write_text(json.dumps({"error": f"{type(err).__name__}: {err}"[-3000:]}))
                raise
            done.write_text(json.dumps(result))
    result = json.loads(done.read_text())
    if "error" in result:
        pytest.fail(f"building {name} failed (see the test that built it): {result['error']}")
    return result["ok"]


@pytest.fixture(scope="session")
def paper_fastmri(tmp_path_factory) -> Path:
    """A fastMRI location with the paper's folders, holding small valid volumes. Read
    only: a test that removes a folder works on a copy."""
    root = tmp_path_factory.mktemp("paper") / "fastmri"
    write_folder(root / "knee_singlecoil_train", 4, "singlecoil", n_slices=12, size=16)
    write_folder(root / "knee_singlecoil_val", 72, "singlecoil", n_slices=3, size=16)
    write_folder(root / "brain_multicoil_train", 3, "multicoil", n_slices=12, size=16, coils=2)
    write_folder(root / "brain_multicoil_val", 210, "multicoil", n_slices=3, size=16, coils=2)
    return root


def _build_tiny_demo_priors(work: Path) -> str:
    res = snakemake(
        work, "priors", "--cores", "2", configfile=write_config(work, tiny_demo_config())
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return str(work)


@pytest.fixture(scope="session")
def tiny_demo_priors(tmp_path_factory) -> Path:
    """`snakemake priors` on the tiny demo (workflow_runner.tiny_demo_config): the demo
    volumes, the splits, both priors and their denoising checks. The working folder is
    read only: copy it (copy_workdir) to run Snakemake on it."""
    return Path(built_once(tmp_path_factory, "tiny_demo_priors", _build_tiny_demo_priors))


def _kill_and_restart(priors: Path, work: Path) -> dict:
    copy_workdir(priors, work)
    config = tiny_demo_config()
    configfile = write_config(work, config)
    log = (work / "first.log").open("w")
    first = subprocess.Popen(
        snakemake_command(work, "--cores", "2", configfile=configfile),
        cwd=work,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=runner_env(),
        start_new_session=True,
    )
    metrics = work / "results" / "metrics"
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and first.poll() is None:
        if len(list(metrics.rglob("*.csv"))) >= 3:
            break
        time.sleep(0.2)
    assert first.poll() is None, "the workflow ended before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    log.close()
    before = result_files(work / "results")

    unlock = snakemake(work, "--unlock", configfile=configfile)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    pending = dry_run(work, config)
    second = snakemake(work, "--cores", "2", configfile=configfile)
    assert second.returncode == 0, second.stderr[-3000:]
    return {
        "work": str(work),
        "before": before,
        "pending": pending,
        "after": result_files(work / "results"),
        "second": [second.returncode, second.stdout, second.stderr],
    }


@pytest.fixture(scope="session")
def killed_and_restarted(tmp_path_factory, tiny_demo_priors):
    """The tiny workflow (from a copy of tiny_demo_priors: data and priors are built)
    killed outright (SIGKILL to Snakemake and its jobs) once some grid cells are done,
    then started again and run to the end. Its folder is the rerun tests' own; a test
    that runs more than a dry run, a report or a run with nothing to do works on a copy."""
    run = built_once(
        tmp_path_factory, "killed", lambda work: _kill_and_restart(tiny_demo_priors, work)
    )
    returncode, stdout, stderr = run["second"]
    return {
        **run,
        "work": Path(run["work"]),
        "config": copy.deepcopy(tiny_demo_config()),
        "pending": [(rule, outs) for rule, outs in run["pending"]],
        "second": subprocess.CompletedProcess([], returncode, stdout, stderr),
    }
