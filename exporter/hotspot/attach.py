"""Pure-Python client of the HotSpot attach mechanism on Linux (what ``jcmd`` does).

Protocol (HotSpot ``attachListener_linux.cpp``, the JDK's
``VirtualMachineImpl``; jattach does the same):

1. If the JVM's socket ``/tmp/.java_pid<nspid>`` does not exist yet, create
   the trigger file ``.attach_pid<nspid>`` in the JVM's working directory (or
   its ``/tmp``) and send ``SIGQUIT``; the JVM sees the file, starts its
   "Attach Listener" thread and creates the socket.
2. Connect, send ``1\\0jcmd\\0<command>\\0\\0\\0`` (protocol version 1,
   operation ``jcmd``, three arguments), read until EOF: the first line is the
   result code (0 = success), the rest is the command's output.

Both paths are taken through ``/proc/<pid>/root`` and ``/proc/<pid>/cwd``, so
a JVM in a container (another mount namespace) is reached without entering
its namespace; ``nspid`` is the JVM's pid inside its own pid namespace.

Credentials: the JVM accepts a peer only if it is root or has the JVM's
effective uid *and* gid (``os::Posix::matches_effective_uid_and_gid_or_root``);
the trigger file must be owned by root or the JVM's user. So an exporter
running as root attaches to every user's JVM as is, and an exporter running
as a user attaches to JVMs of exactly that uid/gid. Nothing here changes the
exporter's credentials (``seteuid`` in a multithreaded process would switch
every thread). Before sending SIGQUIT we check that the JVM catches it
(``SigCgt``): a JVM started with ``-Xrs`` would otherwise dump core and die.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Dict, Optional

PROC = "/proc"
MAX_RESPONSE = 4 * 1024 * 1024


class AttachError(Exception):
    """The attach failed. ``reason`` is a TargetError reason (connection, timeout, auth, invalid_response)."""

    def __init__(self, reason: str, message: str, signalled_in_vain: bool = False):
        super().__init__(message)
        self.reason = reason
        self.message = message
        #: SIGQUIT was sent but no listener came up: signalling again would only
        #: make the JVM print another thread dump
        self.signalled_in_vain = signalled_in_vain


def _status(pid: int, proc: str) -> Dict[str, str]:
    out = {}
    try:
        with open(f"{proc}/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k] = v.strip()
    except OSError:
        raise AttachError("connection", f"process {pid} is gone") from None
    return out


def _catches_sigquit(status: Dict[str, str]) -> bool:
    try:
        return bool(int(status.get("SigCgt", "0"), 16) >> (signal.SIGQUIT - 1) & 1)
    except ValueError:
        return False


def socket_path(pid: int, nspid: int, proc: str = PROC) -> str:
    return f"{proc}/{pid}/root/tmp/.java_pid{nspid}"


def _connect(path: str, timeout: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(max(0.001, timeout))
    try:
        s.connect(path)
    except BaseException:
        s.close()
        raise
    return s


def _start_listener(pid: int, nspid: int, status: Dict[str, str], end: float, proc: str) -> None:
    if not _catches_sigquit(status):
        raise AttachError("connection", f"JVM {pid} does not handle SIGQUIT (-Xrs?); not attaching")
    trigger = None
    for d in (f"{proc}/{pid}/cwd", f"{proc}/{pid}/root/tmp"):
        path = f"{d}/.attach_pid{nspid}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o660)
            os.close(fd)
        except OSError:
            continue
        # the JVM ignores a trigger owned by someone else than root or itself
        try:
            st = os.stat(path)
            euid = int(status["Uid"].split()[1])
        except (OSError, KeyError, ValueError, IndexError):
            st, euid = None, -1
        if st is not None and st.st_uid not in (0, euid):
            try:
                os.unlink(path)
            except OSError:
                pass
            continue
        trigger = path
        break
    if trigger is None:
        raise AttachError("connection", f"cannot create the attach trigger file for JVM {pid}")
    try:
        os.kill(pid, signal.SIGQUIT)
        delay = 0.02
        sock = socket_path(pid, nspid, proc)
        while not os.path.exists(sock):
            left = end - time.monotonic()
            if left <= 0:
                raise AttachError("timeout", f"JVM {pid} did not start its attach listener in time",
                                  signalled_in_vain=True)
            time.sleep(min(delay, left))
            delay = min(delay * 1.5, 0.2)
            if not os.path.exists(f"{proc}/{pid}"):
                raise AttachError("connection", f"JVM {pid} exited")
    except ProcessLookupError:
        raise AttachError("connection", f"JVM {pid} exited") from None
    finally:
        try:
            os.unlink(trigger)
        except OSError:
            pass


def jcmd(pid: int, command: str, timeout: float, nspid: Optional[int] = None, proc: str = PROC,
         may_signal: bool = True) -> str:
    """Run a diagnostic command in JVM ``pid`` and return its output.

    Raises :class:`AttachError`; never waits longer than ``timeout`` seconds
    in total (the JVM's own work included). With ``may_signal=False`` only an
    already running attach listener is used.
    """
    end = time.monotonic() + timeout
    if nspid is None:
        nspid = pid
    status = _status(pid, proc)
    if os.geteuid() != 0:
        try:
            ok = (int(status["Uid"].split()[1]), int(status["Gid"].split()[1])) == (os.geteuid(), os.getegid())
        except (KeyError, ValueError, IndexError):
            ok = False
        if not ok:
            raise AttachError("auth", f"JVM {pid} runs as another user; attaching needs root or its uid and gid")
    path = socket_path(pid, nspid, proc)
    s = None
    try:
        s = _connect(path, end - time.monotonic())
    except (FileNotFoundError, ConnectionRefusedError):
        # no listener yet (or a stale socket of a JVM that has exited)
        if not may_signal:
            raise AttachError("connection", f"JVM {pid} has no attach listener (not signalling it again)")
        _start_listener(pid, nspid, status, end, proc)
        try:
            s = _connect(path, end - time.monotonic())
        except socket.timeout:
            raise AttachError("timeout", f"JVM {pid}: connecting to the attach socket timed out") from None
        except OSError as e:
            raise AttachError("connection", f"JVM {pid}: cannot connect to the attach socket: {e.strerror}") from None
    except socket.timeout:
        raise AttachError("timeout", f"JVM {pid}: connecting to the attach socket timed out") from None
    except PermissionError:
        raise AttachError("auth", f"JVM {pid}: no permission for the attach socket") from None
    except OSError as e:
        raise AttachError("connection", f"JVM {pid}: cannot connect to the attach socket: {e.strerror}") from None
    try:
        req = b"1\0jcmd\0" + command.encode("utf-8") + b"\0\0\0"
        s.settimeout(max(0.001, end - time.monotonic()))
        s.sendall(req)
        chunks = []
        size = 0
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AttachError("timeout", f"JVM {pid} did not answer {command!r} in time")
            s.settimeout(left)
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
            size += len(b)
            if size > MAX_RESPONSE:
                raise AttachError("invalid_response", f"JVM {pid}: answer to {command!r} too large")
    except socket.timeout:
        raise AttachError("timeout", f"JVM {pid} did not answer {command!r} in time") from None
    except OSError as e:
        if e.errno in (errno.ECONNRESET, errno.EPIPE):
            raise AttachError("auth", f"JVM {pid} closed the attach connection (credentials refused?)") from None
        raise AttachError("connection", f"JVM {pid}: attach failed: {e.strerror}") from None
    finally:
        s.close()
    text = b"".join(chunks).decode("utf-8", "replace")
    head, _, body = text.partition("\n")
    if not head:
        raise AttachError("auth", f"JVM {pid} closed the attach connection without an answer (credentials refused?)")
    try:
        code = int(head.strip())
    except ValueError:
        raise AttachError("invalid_response", f"JVM {pid}: unexpected attach answer {head[:80]!r}") from None
    if code != 0:
        raise AttachError("invalid_response", f"JVM {pid}: {command!r} failed ({code}): {body.strip()[:200]}")
    return body


# --------------------------------------------------------------------------
# Compiler.codecache

_HEAP = re.compile(
    r"^(?:CodeHeap '(?P<name>[^']+)'|(?P<whole>CodeCache)):\s+size=(?P<size>\d+)Kb\s+used=(?P<used>\d+)Kb\s+"
    r"max_used=(?P<max_used>\d+)Kb\s+free=(?P<free>\d+)Kb", re.M)
_COMPILATION = re.compile(r"^\s*compilation:\s*(enabled|disabled)", re.M)
_FULL = re.compile(r"^\s*full_count=(\d+)", re.M)
_STOPPED = re.compile(r"stopped_count=(\d+),\s*restarted_count=(\d+)")


@dataclass
class CodeCache:
    #: heap name ("non-nmethods", "profiled nmethods", "non-profiled nmethods", or
    #: "CodeCache" when not segmented) -> {"size", "used", "max_used", "free"} in bytes
    heaps: Dict[str, Dict[str, int]] = field(default_factory=dict)
    compilation_enabled: Optional[bool] = None
    full_count: Optional[int] = None
    stopped_count: Optional[int] = None
    restarted_count: Optional[int] = None


def parse_codecache(text: str) -> CodeCache:
    """Parse ``Compiler.codecache`` output (JDK 9+). Raises ValueError without any heap line."""
    cc = CodeCache()
    for m in _HEAP.finditer(text):
        name = m.group("name") or m.group("whole")
        cc.heaps[name] = {k: int(m.group(k)) * 1024 for k in ("size", "used", "max_used", "free")}
    if not cc.heaps:
        raise ValueError("no code heap in the Compiler.codecache output")
    m = _COMPILATION.search(text)
    if m:
        cc.compilation_enabled = m.group(1) == "enabled"
    m = _FULL.search(text)
    if m:
        cc.full_count = int(m.group(1))
    m = _STOPPED.search(text)
    if m:
        cc.stopped_count, cc.restarted_count = int(m.group(1)), int(m.group(2))
    return cc
