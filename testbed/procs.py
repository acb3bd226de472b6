"""Processes and ports: a free port, stopping a process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from contextlib import ExitStack
from typing import List


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]


def free_ports(n: int) -> List[int]:
    """``n`` different TCP ports on 127.0.0.1 that were free a moment ago (all held
    until every one is chosen: separate calls may return the same port twice
    when the first has not been bound by its user yet)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(n):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
        return ports


def stop_process_group(p: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM ``p``'s process group, wait up to ``grace`` seconds, then SIGKILL the group.
    ``grace`` 0: SIGKILL at once (a crash: no shutdown hook runs).

    The group is killed even when its leader has already exited: pyspark's JVM
    and Python workers can outlive the process that started them. A process
    that leads no group (started without ``start_new_session``) shares its
    caller's: it is signalled alone."""
    try:
        pgid = os.getpgid(p.pid)
    except ProcessLookupError:
        pgid = p.pid

    def send(sig: int) -> None:
        try:
            if pgid == p.pid:
                os.killpg(pgid, sig)
            else:
                p.send_signal(sig)
        except (ProcessLookupError, PermissionError):
            pass

    if grace > 0:
        send(signal.SIGTERM)
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    send(signal.SIGKILL)  # also what outlived the leader
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
