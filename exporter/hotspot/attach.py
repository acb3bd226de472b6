"""Pure-Python client of the HotSpot attach mechanism on Linux (what ``jcmd`` does).

Protocol (HotSpot ``attachListener_linux.cpp``, the JDK's
``VirtualMachineImpl``; jattach does the same):

1. If the JVM's socket ``/tmp/.java_pid<nspid>`` does not exist yet, create
   the trigger file ``.attach_pid<nspid>`` in the JVM's working directory (or
   its ``/tmp``) and send ``SIGQUIT``; the JVM sees the file, starts its
   "Attach Listener" thread and creates the socket. A socket that is there but
   refuses the connection is a stale one (an exited process that had the same
   pid): the JVM replaces it when its listener starts, so after the signal we
   wait for a new socket, not for the stale one.
2. Connect, send ``1\\0jcmd\\0<command>\\0\\0\\0`` (protocol version 1,
   operation ``jcmd``, three arguments), read until EOF: the first line is the
   result code (0 = success), the rest is the command's output.

Both paths are taken through ``/proc/<pid>/root`` and ``/proc/<pid>/cwd``, so
a JVM in a container (another mount namespace) is reached without entering
its namespace; ``nspid`` is the JVM's pid inside its own pid namespace.

Whoever runs the JVM lays out its ``/tmp`` and working directory, and the
exporter may be root with ``DAC_OVERRIDE``: nothing there may steer where it
connects or what it creates. So (like the JDK's client, and stricter):

- ``/tmp`` is opened once, as a directory that is not a symbolic link
  (``O_NOFOLLOW``; followed from outside, an absolute link resolves against
  the exporter's root, the node's); everything else happens relative to that
  file descriptor, the connection too (``/proc/self/fd/<fd>/.java_pid<n>``), so
  a ``/tmp`` swapped meanwhile redirects nothing;
- the trigger file is created with ``O_CREAT|O_EXCL|O_NOFOLLOW``, only in a
  directory the JVM's own user may write (its mode says so), and removed only
  if the name still is the file created;
- before connecting, the socket must be a socket (not a symbolic link) owned
  by the JVM's uid; once connected, the peer's pid (``SO_PEERCRED``) must be the
  JVM's, or the connection is closed before a byte is sent.

Credentials: the JVM accepts a peer only if it is root or has the JVM's
effective uid *and* gid (``os::Posix::matches_effective_uid_and_gid_or_root``);
the trigger file must be owned by root or the JVM's user. So an exporter
running as root attaches to every user's JVM as is, and an exporter running
as a user attaches to JVMs of exactly that uid/gid. Nothing here changes the
exporter's credentials (``seteuid`` in a multithreaded process would switch
every thread). Before sending SIGQUIT we check that the JVM catches it
(``SigCgt``): a JVM started with ``-Xrs`` would otherwise dump core and die.

A JVM in another *user* namespace (a rootless container) does not see host
root as root: for it the attach runs in a short-lived child process (a fresh,
single-threaded interpreter) that enters the JVM's user namespace, takes the
JVM's uid and gid there and then speaks the protocol; the exporter process
itself never changes its credentials or namespaces.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import socket
import stat
import struct
import time
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, Optional, Tuple

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


#: directories are opened as paths only (no read permission needed), never inherited
_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


class _NoListener(Exception):
    """Nothing listens on the JVM's socket: there is none yet, or a stale one."""


class _Unusable(Exception):
    """A directory the trigger file cannot go to; the message says why."""


def _ids(pid: int, status: Dict[str, str]) -> Tuple[int, FrozenSet[int]]:
    """The JVM's effective uid, and its effective and supplementary gids."""
    try:
        egid = int(status["Gid"].split()[1])
        return int(status["Uid"].split()[1]), frozenset(int(g) for g in status.get("Groups", "").split()) | {egid}
    except (KeyError, ValueError, IndexError):
        raise AttachError("connection", f"JVM {pid}: cannot read its uid and gid") from None


def _open_tmp(pid: int, proc: str) -> int:
    """The JVM's ``/tmp``, opened: ``/proc/<pid>/root`` (the kernel's own link to the JVM's
    root, whatever its mount namespace), then ``tmp`` in it, which must be a directory and
    not a symbolic link: followed from here, an absolute link resolves against the
    exporter's root, the node's, and a relative one may climb out of the JVM's root."""
    try:
        root = os.open(f"{proc}/{pid}/root", _DIR)
    except FileNotFoundError:
        raise AttachError("connection", f"process {pid} is gone") from None
    except PermissionError:
        raise AttachError("auth", f"JVM {pid}: no permission to open its root directory") from None
    except OSError as e:
        raise AttachError("connection", f"JVM {pid}: cannot open its root directory: {e.strerror}") from None
    try:
        return os.open("tmp", _DIR | os.O_NOFOLLOW, dir_fd=root)
    except OSError as e:
        try:
            link = stat.S_ISLNK(os.stat("tmp", dir_fd=root, follow_symlinks=False).st_mode)
        except OSError:
            link = False
        what = "is a symbolic link (not followed)" if link else f"cannot be opened: {e.strerror}"
        raise AttachError("connection", f"JVM {pid}: its /tmp {what}") from None
    finally:
        os.close(root)


def _connect(pid: int, nspid: int, tmp: int, euid: int, end: float) -> socket.socket:
    """Connect to the JVM's socket in its ``/tmp`` (the directory ``tmp``), only if it is
    one: a socket, not a symbolic link, owned by the JVM's uid (lstat), and, once
    connected, listened on by the JVM's own process (``SO_PEERCRED``, a pid the kernel
    translates into our pid namespace). Anything else is closed before a byte is sent.
    Raises :class:`_NoListener` when there is no socket or it refuses the connection."""
    name = f".java_pid{nspid}"
    try:
        st = os.stat(name, dir_fd=tmp, follow_symlinks=False)
    except FileNotFoundError:
        raise _NoListener() from None
    except OSError as e:
        raise AttachError("connection", f"JVM {pid}: cannot look at /tmp/{name}: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise AttachError("auth", f"JVM {pid}: /tmp/{name} is a symbolic link, not the JVM's socket; not connecting")
    if not stat.S_ISSOCK(st.st_mode):
        raise AttachError("auth", f"JVM {pid}: /tmp/{name} is not a socket; not connecting")
    if st.st_uid != euid:
        raise AttachError("auth", f"JVM {pid}: /tmp/{name} is owned by uid {st.st_uid}, not the JVM's uid {euid}; "
                                  "not connecting")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(max(0.001, end - time.monotonic()))
        # through the directory opened above: a /tmp renamed or replaced since cannot redirect us
        s.connect(f"/proc/self/fd/{tmp}/{name}")
        peer = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]
    except BaseException as e:
        s.close()
        if isinstance(e, (FileNotFoundError, ConnectionRefusedError)):
            raise _NoListener() from None
        if isinstance(e, socket.timeout):
            raise AttachError("timeout", f"JVM {pid}: connecting to the attach socket timed out") from None
        if isinstance(e, PermissionError):
            raise AttachError("auth", f"JVM {pid}: no permission for the attach socket") from None
        if isinstance(e, OSError):
            raise AttachError("connection", f"JVM {pid}: cannot connect to the attach socket: {e.strerror}") from None
        raise
    if peer != pid:
        s.close()
        who = f"pid {peer}" if peer else "a process outside our pid namespace"
        raise AttachError("auth", f"JVM {pid}: /tmp/{name} is listened on by {who}, not the JVM; closed, nothing sent")
    return s


def _writable_by(st: os.stat_result, euid: int, gids: FrozenSet[int]) -> bool:
    """Whether the JVM's user may create a file in the directory ``st`` (its mode; ACLs aside)."""
    if st.st_uid == euid:
        return bool(st.st_mode & stat.S_IWUSR)
    if st.st_gid in gids:
        return bool(st.st_mode & stat.S_IWGRP)
    return bool(st.st_mode & stat.S_IWOTH)


def _place_trigger(d: int, name: str, euid: int, gids: FrozenSet[int]) -> Optional[Tuple[int, int]]:
    """Create the trigger file ``name`` in the directory ``d``, only where the JVM's own user
    could (root with DAC_OVERRIDE could anywhere), never through a symbolic link, never
    over an existing name. Returns its (device, inode); None when a trigger the JVM accepts
    (a regular file of root or the JVM's user) is there already, left as it is."""
    if not _writable_by(os.fstat(d), euid, gids):
        raise _Unusable("not writable by the JVM's user")
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=d)
    except FileExistsError:
        try:
            st = os.stat(name, dir_fd=d, follow_symlinks=False)
        except OSError as e:
            raise _Unusable(e.strerror) from None
        if stat.S_ISREG(st.st_mode) and st.st_uid in (0, euid):
            return None
        raise _Unusable(f"{name} is there already, not a file of root or of the JVM's user") from None
    except OSError as e:
        raise _Unusable(e.strerror) from None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    made = (st.st_dev, st.st_ino)
    # the JVM ignores a trigger owned by someone else than root or itself (root squashed on NFS)
    if st.st_uid not in (0, euid):
        _remove_trigger(d, name, made)
        raise _Unusable(f"the file created is owned by uid {st.st_uid}")
    return made


def _remove_trigger(d: int, name: str, made: Tuple[int, int]) -> None:
    """Remove the trigger we made, if the name still is that file."""
    try:
        st = os.stat(name, dir_fd=d, follow_symlinks=False)
        if (st.st_dev, st.st_ino) == made:
            os.unlink(name, dir_fd=d)
    except OSError:
        pass


def _start_listener(pid: int, nspid: int, status: Dict[str, str], ids: Tuple[int, FrozenSet[int]], end: float,
                    proc: str, tmp: int) -> None:
    if not _catches_sigquit(status):
        raise AttachError("connection", f"JVM {pid} does not handle SIGQUIT (-Xrs?); not attaching")
    name = f".attach_pid{nspid}"
    refused = []
    placed = None
    cwd = None
    try:
        try:
            cwd = os.open(f"{proc}/{pid}/cwd", _DIR)
        except OSError as e:
            refused.append(f"working directory: {e.strerror}")
        for where, d in (("working directory", cwd), ("/tmp", tmp)):
            if d is not None:
                try:
                    placed = d, _place_trigger(d, name, *ids)
                    break
                except _Unusable as e:
                    refused.append(f"{where}: {e}")
        if placed is None:
            raise AttachError("connection", f"cannot create the attach trigger file for JVM {pid} "
                                            f"({'; '.join(refused)})")
        sock = f".java_pid{nspid}"
        # a socket that is there already refused us: a stale one, left by an earlier process with this
        # pid (pids are reused). HotSpot replaces it when its listener starts: wait for a new one.
        stale = _identity(tmp, sock)
        try:
            os.kill(pid, signal.SIGQUIT)
            delay = 0.02
            while _identity(tmp, sock) in (None, stale):
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
        except PermissionError:
            # another user's JVM without CAP_KILL (a container without it): nothing was signalled
            raise AttachError("auth", f"JVM {pid}: no permission to signal it (another user's JVM needs "
                                      "root with CAP_KILL)") from None
    finally:
        if placed is not None and placed[1] is not None:
            _remove_trigger(placed[0], name, placed[1])
        if cwd is not None:
            os.close(cwd)


def _identity(d: int, name: str) -> Optional[tuple]:
    """Which file ``name`` in the directory ``d`` is (device, inode, change time), or None if there is none."""
    try:
        st = os.stat(name, dir_fd=d, follow_symlinks=False)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


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
    if os.geteuid() == 0 and proc == PROC and _other_userns(pid, proc):
        return _jcmd_in_child(pid, nspid, command, end, may_signal)
    return _jcmd_here(pid, nspid, command, end, may_signal, status, proc)


def _jcmd_here(pid: int, nspid: int, command: str, end: float, may_signal: bool, status: Dict[str, str],
               proc: str) -> str:
    if os.geteuid() != 0:
        try:
            ok = (int(status["Uid"].split()[1]), int(status["Gid"].split()[1])) == (os.geteuid(), os.getegid())
        except (KeyError, ValueError, IndexError):
            ok = False
        if not ok:
            raise AttachError("auth", f"JVM {pid} runs as another user; attaching needs root or its uid and gid")
    ids = _ids(pid, status)
    tmp = _open_tmp(pid, proc)
    try:
        try:
            s = _connect(pid, nspid, tmp, ids[0], end)
        except _NoListener:
            # no listener yet (or a stale socket of a JVM that has exited)
            if not may_signal:
                raise AttachError("connection", f"JVM {pid} has no attach listener (not signalling it again)") from None
            _start_listener(pid, nspid, status, ids, end, proc, tmp)
            try:
                s = _connect(pid, nspid, tmp, ids[0], end)
            except _NoListener:
                raise AttachError("connection", f"JVM {pid}: its attach socket refuses the connection") from None
    finally:
        os.close(tmp)
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
    """What ``Compiler.codecache`` reported (:func:`parse_codecache`): each code heap's
    size, use and peak in bytes, whether the JIT still compiles, how often the
    code cache was full. A line the JVM did not print leaves its field None."""

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


# --------------------------------------------------------------------------
# JVMs in another user namespace: attach from a child process

CLONE_NEWUSER = 0x10000000


def _other_userns(pid: int, proc: str) -> bool:
    try:
        return os.readlink(f"{proc}/{pid}/ns/user") != os.readlink(f"{proc}/self/ns/user")
    except OSError:
        return False


def _map_id(map_path: str, host_id: int) -> int:
    """Translate a host uid/gid into the namespace of ``map_path`` (uid_map/gid_map)."""
    with open(map_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3:
                inside, outside, count = (int(x) for x in parts)
                if outside <= host_id < outside + count:
                    return inside + host_id - outside
    raise AttachError("auth", f"id {host_id} is not mapped in {map_path}")


def _jcmd_in_child(pid: int, nspid: int, command: str, end: float, may_signal: bool) -> str:
    import subprocess
    import sys

    timeout = end - time.monotonic()
    if timeout <= 0:
        raise AttachError("timeout", f"JVM {pid}: no time left to attach")
    argv = [sys.executable, "-m", "sparkwatch.hotspot.attach", str(pid), str(nspid), command,
            repr(timeout), "1" if may_signal else "0"]
    try:
        r = subprocess.run(argv, capture_output=True, timeout=timeout + 1.0, close_fds=True,
                           cwd="/", env={"PYTHONPATH": os.pathsep.join(sys.path)})
    except subprocess.TimeoutExpired:
        raise AttachError("timeout", f"JVM {pid}: the attach helper process did not finish in time") from None
    except OSError as e:
        raise AttachError("connection", f"JVM {pid}: cannot start the attach helper: {e}") from None
    out = r.stdout.decode("utf-8", "replace")
    if r.returncode == 0:
        return out
    head, _, msg = out.partition("\n")
    parts = head.split()
    if r.returncode == 3 and len(parts) == 3 and parts[0] == "ERR":
        raise AttachError(parts[1], msg.strip(), signalled_in_vain=parts[2] == "1")
    err = r.stderr.decode("utf-8", "replace").strip().splitlines()
    raise AttachError("connection", f"JVM {pid}: attach helper failed: {err[-1] if err else r.returncode}")


def _child_main(argv) -> int:
    """``python -m sparkwatch.hotspot.attach PID NSPID COMMAND TIMEOUT MAY_SIGNAL``: enter the
    JVM's user namespace as its uid/gid, run the command, print the answer."""
    import ctypes
    import sys

    pid, nspid, command, timeout, may_signal = int(argv[0]), int(argv[1]), argv[2], float(argv[3]), argv[4] == "1"
    end = time.monotonic() + timeout
    try:
        status = _status(pid, PROC)
        euid, egid = int(status["Uid"].split()[1]), int(status["Gid"].split()[1])
        uid = _map_id(f"{PROC}/{pid}/uid_map", euid)
        gid = _map_id(f"{PROC}/{pid}/gid_map", egid)
        fd = os.open(f"{PROC}/{pid}/ns/user", os.O_RDONLY)
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWUSER) != 0:
            raise AttachError("auth", f"cannot enter the user namespace of JVM {pid}: "
                                      f"{os.strerror(ctypes.get_errno())}")
        os.close(fd)
        try:
            os.setgroups([])
        except OSError:
            pass  # setgroups may be denied in the namespace; the JVM checks uid and gid only
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        # from here on ids are seen from inside the namespace
        status = dict(status, Uid=f"{uid} {uid} {uid} {uid}", Gid=f"{gid} {gid} {gid} {gid}", Groups="")
        out = _jcmd_here(pid, nspid, command, end, may_signal, status, PROC)
    except AttachError as e:
        sys.stdout.write(f"ERR {e.reason} {1 if e.signalled_in_vain else 0}\n{e.message}\n")
        return 3
    except (OSError, KeyError, ValueError, IndexError) as e:
        sys.stdout.write(f"ERR connection 0\nJVM {pid}: {e}\n")
        return 3
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_child_main(sys.argv[1:]))
