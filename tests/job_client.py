"""The ``patchpnp`` command of the tests' Snakemake runs: hands the job to the session's job
server (tests/job_server.py) and exits as the job did.

It runs as ``python -IS`` (no site, no packages: the standard library only), so it starts
in milliseconds. It sends its arguments, working folder, environment and niceness, and its
standard input, output and error as open file descriptors; the server forks a child that
has imported the package and torch already, and the child runs ``patchpnp.cli.main`` on
them. The client waits for the child's status: when the client is killed (Snakemake
stopping a job, a test killing a run), the server sees its socket close and kills the
child with it.

A job whose environment imports other code than the server has (another ``PYTHONPATH``),
that asks for a fresh interpreter (``PATCHPNP_TESTS_FRESH_JOBS``), or that finds no server
(yet: it imports before it listens), runs the real ``patchpnp`` in this process's place.
"""

import json
import os
import signal
import socket
import struct
import sys

FRESH_JOBS_ENV = "PATCHPNP_TESTS_FRESH_JOBS"  # set (to 1): every job in a fresh interpreter
STATUS = struct.Struct("!i")  # the child's exit code, or minus the signal that ended it
LENGTH = struct.Struct("!I")


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes, or fewer where the other end closed first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return data
        data += chunk
    return data


def _exit_as(status: int) -> None:
    if status >= 0:
        sys.exit(status)
    signal.signal(-status, signal.SIG_DFL)
    os.kill(os.getpid(), -status)
    sys.exit(128 - status)  # not reached for a signal that ends the process


def main(socket_path: str, real_command: str, server_pythonpath: str) -> None:
    args = sys.argv[1:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if os.environ.get("PYTHONPATH", "") != server_pythonpath:
            raise ConnectionError("the job imports other code than the server")
        if os.environ.get(FRESH_JOBS_ENV):
            raise ConnectionError("a fresh interpreter was asked for")
        sock.connect(socket_path)
    except OSError:
        sock.close()
        os.execv(real_command, [real_command, *args])
    request = {
        "argv": args,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
    }
    payload = json.dumps(request).encode()
    socket.send_fds(sock, [LENGTH.pack(len(payload))], [0, 1, 2])
    sock.sendall(payload)
    reply = receive_exactly(sock, STATUS.size)
    if len(reply) < STATUS.size:
        print("patchpnp: the tests' job server went away before the job ended", file=sys.stderr)
        sys.exit(1)
    _exit_as(STATUS.unpack(reply)[0])
