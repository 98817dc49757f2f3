"""The load generator's server probe counts a server with workers whole: CPU and RSS summed over
the process and its descendants, and the listening socket's owner is the supervisor, not one of
the workers that share its socket. Not timed: only that a child's CPU and memory are counted."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

from simulator.load import ServerProbe, cpu_seconds, listening_pid, rss_mb


def busy_child(*, pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    """A child burning CPU (for 30 s at most: the tests kill it), holding `pass_fds` open."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nend = time.time() + 30\nwhile time.time() < end: pass",
        ],
        pass_fds=pass_fds,
    )


def test_the_tree_holds_the_process_and_its_children() -> None:
    child = busy_child()
    try:
        members = ServerProbe.tree(os.getpid())
        assert members[0] == os.getpid()
        assert child.pid in members
        assert rss_mb(os.getpid()) > rss_mb([os.getpid()])
    finally:
        child.kill()
        child.wait()


def test_window_cpu_counts_the_children() -> None:
    probe = ServerProbe(os.getpid())
    child = busy_child()
    try:
        time.sleep(0.2)  # the child is in the tree when the window opens
        probe.window_start()
        assert child.pid in probe.pids
        time.sleep(0.5)
        probe.window_end()
        # This process sleeps: nearly all of the window's CPU is the child's.
        assert probe.cpu_pct is not None and probe.cpu_pct > 10.0
        assert cpu_seconds(os.getpid()) > cpu_seconds([os.getpid()])
    finally:
        child.kill()
        child.wait()


def test_listening_pid_is_the_supervisor_not_a_worker() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        worker = busy_child(pass_fds=(listener.fileno(),))  # shares the socket, as workers do
        try:
            time.sleep(0.2)
            assert listening_pid(port) == os.getpid()
        finally:
            worker.kill()
            worker.wait()
