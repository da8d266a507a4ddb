"""The tests' job server: one process that imports the package and torch once, and forks a
child for every ``patchpnp`` job of the session's Snakemake runs.

Why: a job that starts a fresh interpreter spends about 2 s of CPU importing torch and the
libraries around it before its work, and the tests' runs start some 180 such jobs (most of
them tiny grid cells that compute for a fraction of a second). On 2 cores that was about
half of the suite's CPU. A forked child shares the server's imported modules, so a job
starts in a few milliseconds and computes exactly what the fresh process would: the same
``patchpnp.cli.main`` on the same arguments, working folder, environment (``os.environ``
replaced before the command runs), standard streams (the client's own descriptors),
niceness and torch thread count, and its exit status goes back to Snakemake through the
client (tests/job_client.py, the ``patchpnp`` first on the runs' PATH).

What a fork cannot give is a fresh interpreter: one session run starts its jobs that way
(tests/test_faults.py's corrupt volume run: the installed console script under
Snakemake), the tests of single commands start them as subprocesses, and
``PATCHPNP_TESTS_FRESH_JOBS=1`` runs every job that way. The server itself never runs a
torch operation, so no thread pool exists when it forks.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from job_client import LENGTH, STATUS, receive_exactly

TESTS = Path(__file__).resolve().parent

# Libraries the commands import inside their functions: imported once here too.
LIBRARIES = (
    "torch.nn.functional", "torchvision", "lpips", "skimage.metrics", "scipy.stats",
    "scipy.ndimage", "yaml", "tqdm", "nibabel", "pydicom", "sigpy", "sigpy.mri.app", "deepinv",
)  # fmt: skip


def _preload() -> int:
    """Import every command's module and the libraries they import lazily, as a job would
    (collector off, then frozen); return torch's default CPU thread count."""
    from patchpnp.cli import resolve
    from patchpnp.commands import COMMANDS
    from patchpnp.startup import untraced_imports

    with untraced_imports():
        import importlib

        import torch

        for command in COMMANDS.values():
            resolve(command.target)
        for name in LIBRARIES:
            try:
                importlib.import_module(name)
            except ImportError:  # an optional library: the job imports it if it can
                pass
    return torch.get_num_threads()


def _exit_code(code) -> int:
    """The process exit status ``sys.exit(code)`` gives."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _run_job(request: dict, fds: list[int], default_threads: int) -> None:
    """In the forked child: become the job's process and run its command; never returns."""
    code = 1
    try:
        os.setpgid(0, 0)  # its own group: killed with whatever it starts
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        raise_by = request["nice"] - os.getpriority(os.PRIO_PROCESS, 0)
        if raise_by > 0:
            os.nice(raise_by)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        import torch

        # A fresh interpreter's default: OMP_NUM_THREADS where set, else the cores.
        threads = os.environ.get("OMP_NUM_THREADS", "")
        torch.set_num_threads(int(threads) if threads.isdigit() else default_threads)
        sys.argv = ["patchpnp", *request["argv"]]
        from patchpnp.cli import main

        try:
            code = _exit_code(main())
        except SystemExit as stop:
            code = _exit_code(stop.code)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        import atexit

        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _receive_request(conn: socket.socket) -> tuple[dict, list[int]] | None:
    """The client's request and its three descriptors; None (descriptors closed) when the
    client left before sending it all."""
    conn.settimeout(30)
    fds: list[int] = []
    try:
        head, fds, _, _ = socket.recv_fds(conn, LENGTH.size, 3)
        if len(head) == LENGTH.size and len(fds) == 3:
            size = LENGTH.unpack(head)[0]
            payload = receive_exactly(conn, size)
            if len(payload) == size:
                conn.settimeout(None)
                return json.loads(payload), fds
    except OSError:
        pass
    for fd in fds:
        os.close(fd)
    return None


def serve(socket_path: str) -> None:
    """Accept jobs on ``socket_path`` until terminated."""
    default_threads = _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    running: dict[int, socket.socket] = {}  # child pid -> its client's connection
    watched: dict[socket.socket, int] = {}  # connections whose client is still there
    while True:
        readable, _, _ = select.select([listener, *watched], [], [], 0.05)
        for sock in readable:
            if sock is listener:
                conn, _ = listener.accept()
                received = _receive_request(conn)
                if received is None:
                    conn.close()
                    continue
                request, fds = received
                pid = os.fork()
                if pid == 0:
                    listener.close()
                    conn.close()
                    for other in {*watched, *running.values()}:
                        other.close()
                    _run_job(request, fds, default_threads)
                for fd in fds:
                    os.close(fd)
                running[pid], watched[conn] = conn, pid
                # the server's log, a line per job: pid, folder, arguments
                print(json.dumps([pid, request["cwd"], request["argv"]]), flush=True)
            else:  # the client sends nothing more: readable means it is gone
                pid = watched.pop(sock)
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        while running:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            conn = running.pop(pid, None)
            if conn is None:
                continue
            watched.pop(conn, None)
            code = os.waitstatus_to_exitcode(status)
            try:
                conn.sendall(STATUS.pack(code))
            except OSError:
                pass
            conn.close()


class JobServer:
    """A running server and the ``patchpnp`` client command that reaches it (``bin``);
    ``log`` names each job it forked, a JSON line each: its pid, folder and arguments."""

    def __init__(self, folder: Path, env: dict):
        self.folder = folder
        self.bin = folder / "bin"
        self.bin.mkdir(parents=True)
        self.socket = folder / "jobs.sock"
        self.log = folder / "server.log"
        log = self.log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(TESTS)!r}); "
             f"import job_server; job_server.serve({str(self.socket)!r})"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        real = Path(sys.executable).parent / "patchpnp"
        client = self.bin / "patchpnp"
        client.write_text(
            f"#!{sys.executable} -IS\nimport sys\nsys.path.insert(0, {str(TESTS)!r})\n"
            f"import job_client\njob_client.main({str(self.socket)!r}, {str(real)!r}, "
            f"{env.get('PYTHONPATH', '')!r})\n"
        )
        client.chmod(0o755)

    def wait_ready(self, timeout: float = 120) -> bool:
        """Whether the server listens (it imports first); False if it died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.socket.exists():
                return True
            if self.process.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
