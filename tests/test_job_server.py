"""The tests' job server (tests/job_server.py): a job forked from it answers as the console
script would, in the client's folder and environment, and dies with its client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from job_client import FRESH_JOBS_ENV
from test_training import blobs, tiny_settings, write_split
from workflow_runner import runner_env

REAL = Path(sys.executable).parent / "patchpnp"


@pytest.fixture
def server(job_server):
    if job_server is None:
        pytest.skip(f"{FRESH_JOBS_ENV} is set: the session runs no job server")
    assert job_server.wait_ready(), job_server.log.read_text()[-3000:]
    return job_server


def _forked(server, cwd: Path) -> list[tuple[int, list[str]]]:
    """(pid, arguments) of every job the server forked in ``cwd`` (the session's runs
    send it theirs too)."""
    jobs = [json.loads(line) for line in server.log.read_text().splitlines()]
    return [(pid, args) for pid, folder, args in jobs if folder == str(cwd)]


def _job(args: list[str], cwd: Path, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = runner_env(extra_env)
    return subprocess.run(["patchpnp", *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.parametrize(
    "args", [["--help"], ["merge", "missing.h5", "--output", "out.h5"], ["no-such-command"]]
)
def test_a_forked_job_answers_as_the_console_script(server, args, tmp_path):
    forked = _job(args, tmp_path)
    real = subprocess.run([str(REAL), *args], cwd=tmp_path, capture_output=True, text=True)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        real.returncode, real.stdout, real.stderr,
    )  # fmt: skip
    assert [job[1] for job in _forked(server, tmp_path)] == [args]


def test_a_forked_job_works_in_the_clients_folder_and_environment(server, tmp_path):
    write_split(tmp_path / "shard.h5", blobs(3, 16))
    settings = {"image_size": 16, "crop_size": 16, "edge_slices": 0, "scale_percentile": 99.0}
    with h5py.File(tmp_path / "shard.h5", "a") as f:  # an extraction shard's settings
        f.attrs.update(settings | {"n_volumes": 1})
    res = _job(["merge", "shard.h5", "--output", "split.h5"], tmp_path)
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "split.h5") as f:
        assert f["images"].shape[0] == 3
    fault = {"PATCHPNP_INJECT_FAULT": "split-again.h5"}
    res = _job(["merge", "shard.h5", "--output", "split-again.h5"], tmp_path, fault)
    assert res.returncode == 3 and "injected fault" in res.stderr
    assert not (tmp_path / "split-again.h5").exists()


@pytest.mark.parametrize("env", [{FRESH_JOBS_ENV: "1"}, {"PYTHONPATH": "/elsewhere"}])
def test_a_job_asking_for_a_fresh_interpreter_or_other_code_runs_the_console_script(
    server, env, tmp_path
):
    res = _job(["--help"], tmp_path, env)
    assert res.returncode == 0 and res.stdout.startswith("usage: patchpnp")
    assert not _forked(server, tmp_path)


def _alive(pid: int) -> bool:
    """Running (not a zombie) or not yet reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_killed_client_takes_its_job_with_it_and_the_job_keeps_its_niceness(server, tmp_path):
    """Snakemake stops a job, and the killed-run tests kill Snakemake, by signalling the
    client's process group: the forked job must not outlive it."""
    data = write_split(tmp_path / "train.h5", blobs(16, 16))
    settings = tiny_settings(steps=100_000, checkpoint_every=100_000)
    settings = json.dumps(settings)
    args = ["train", str(data), "--out-dir", str(tmp_path / "p"), "--settings", settings,
            "--threads", "1", "--device", "cpu"]  # fmt: skip
    client = subprocess.Popen(
        ["patchpnp", *args], env=runner_env(), cwd=tmp_path, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: os.nice(5),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _forked(server, tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        ((pid, forked_args),) = _forked(server, tmp_path)
        assert forked_args == args
        time.sleep(0.5)
        assert _alive(pid) and client.poll() is None
        nice = int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[16])
        assert nice == os.getpriority(os.PRIO_PROCESS, 0) + 5
    finally:  # never leave the job running, whatever failed
        os.killpg(client.pid, signal.SIGKILL)
        client.wait()
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)
