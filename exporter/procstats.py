"""Process and host thread statistics from psutil, /proc and the cgroup files.

What "unable to create new native thread" depends on (S2, the Livy restart) is not the
heap but three limits, each counted differently:

- ``RLIMIT_NPROC`` (soft) of the process, compared by the kernel with the
  number of threads (tasks) of all processes of its *real* user. Not enforced
  for root or a process with ``CAP_SYS_ADMIN`` / ``CAP_SYS_RESOURCE``.
- the cgroup's ``pids.max``, compared with ``pids.current`` of that cgroup
  (and of each ancestor; the tightest one counts). cgroup v1 and v2.
- the kernel's ``threads-max``, compared with all threads of the host.

A limit that is unlimited is reported as None (left out, not a huge number).
Every function here reads one process; a process that has gone away raises
:class:`ProcessGone`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import psutil

if TYPE_CHECKING:
    from .tcptables import TcpTables

PROC = "/proc"
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24



class ProcessGone(Exception):
    """The process exited (or its /proc entry cannot be read any more)."""


# --------------------------------------------------------------------------
# Host-wide snapshot: one pass over /proc


@dataclass
class ProcInfo:
    """One process as ``/proc/<pid>/status`` showed it during a host snapshot: its
    pid (in our namespace), real and effective uid, effective gid, threads, its
    pid in every nested pid namespace and its mount namespace (``""`` when it
    cannot be read). A snapshot of a moment: the pid may be reused by the time
    it is read again."""

    pid: int
    ruid: int
    euid: int
    egid: int
    threads: int
    nspid: Tuple[int, ...]  # outermost (our namespace) first, innermost last
    mntns: str


@dataclass
class HostSnapshot:
    """One pass over ``/proc`` (:func:`host_snapshot`): every process, threads per
    real user (what RLIMIT_NPROC counts) and in all, and our own mount namespace.
    Taken once per scrape and shared by every jvm target (and the doctor)."""

    procs: Dict[int, ProcInfo] = field(default_factory=dict)
    threads_by_uid: Dict[int, int] = field(default_factory=dict)
    total_threads: int = 0
    self_mntns: str = ""


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def cmdline(pid: int, proc: str = PROC) -> Optional[List[str]]:
    """The arguments process ``pid`` was started with, or None if they cannot be read."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def parse_status(text: str) -> Dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k] = v.strip()
    return out


def _proc_info(pid: int, proc: str = PROC) -> ProcInfo:
    try:
        st = parse_status(_read(f"{proc}/{pid}/status"))
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(pid) from None
    except OSError as e:
        raise ProcessGone(f"{pid}: {e}") from None
    try:
        uids = st["Uid"].split()
        gids = st["Gid"].split()
        threads = int(st.get("Threads", "1"))
        nspid = tuple(int(x) for x in st.get("NSpid", str(pid)).split()) or (pid,)
    except (KeyError, ValueError, IndexError):
        raise ProcessGone(f"{pid}: unreadable status") from None
    try:
        mntns = os.readlink(f"{proc}/{pid}/ns/mnt")
    except OSError:
        mntns = ""
    return ProcInfo(pid, int(uids[0]), int(uids[1]), int(gids[1]), threads, nspid, mntns)


def host_snapshot(proc: str = PROC) -> HostSnapshot:
    """Every process of this PID namespace: owner, threads, namespaces."""
    snap = HostSnapshot()
    try:
        snap.self_mntns = os.readlink(f"{proc}/self/ns/mnt")
    except OSError:
        pass
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            pi = _proc_info(int(name), proc)
        except ProcessGone:
            continue
        snap.procs[pi.pid] = pi
        snap.threads_by_uid[pi.ruid] = snap.threads_by_uid.get(pi.ruid, 0) + pi.threads
        snap.total_threads += pi.threads
    return snap


def host_threads(proc: str = PROC) -> Optional[int]:
    """Threads on the host as the kernel counts them for threads-max (``nr_threads``,
    the 4th field of /proc/loadavg)."""
    try:
        return int(_read(f"{proc}/loadavg").split()[3].split("/")[1])
    except (OSError, IndexError, ValueError):
        return None


def threads_max(proc: str = PROC) -> Optional[int]:
    try:
        return int(_read(f"{proc}/sys/kernel/threads-max").strip())
    except (OSError, ValueError):
        return None


# --------------------------------------------------------------------------
# One process


def parse_limits(text: str) -> Dict[str, Tuple[Optional[int], Optional[int]]]:
    """/proc/<pid>/limits -> {"Max processes": (soft, hard)}; None = unlimited."""
    out = {}
    lines = text.splitlines()
    for line in lines[1:]:
        name = line[:26].strip()
        parts = line[26:].split()
        if not name or len(parts) < 2:
            continue

        def num(s):
            return None if s == "unlimited" else int(s)

        try:
            out[name] = (num(parts[0]), num(parts[1]))
        except ValueError:
            continue
    return out


def nproc_enforced(status: Dict[str, str]) -> bool:
    """Whether the kernel applies RLIMIT_NPROC to this process (copy_process():
    not for the root user, nor with CAP_SYS_ADMIN or CAP_SYS_RESOURCE)."""
    try:
        if int(status["Uid"].split()[0]) == 0:
            return False
        cap = int(status.get("CapEff", "0"), 16)
    except (KeyError, ValueError, IndexError):
        return True
    return not (cap >> CAP_SYS_ADMIN & 1 or cap >> CAP_SYS_RESOURCE & 1)


def _cgroup_mounts(proc: str = PROC) -> Tuple[Optional[str], Optional[str]]:
    """(cgroup v2 mount point, cgroup v1 pids controller mount point) of the exporter."""
    v2 = v1 = None
    try:
        text = _read(f"{proc}/self/mountinfo")
    except OSError:
        return None, None
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields = pre.split()
        fstype, _src, *opts = post.split()
        if len(fields) < 5:
            continue
        mp = fields[4]
        if fstype == "cgroup2" and v2 is None:
            v2 = mp
        elif fstype == "cgroup" and opts and "pids" in opts[-1].split(","):
            v1 = mp
    return v2, v1


_MOUNTS: Optional[Tuple[Optional[str], Optional[str]]] = None


def cgroup_pids(pid: int, proc: str = PROC) -> Tuple[Optional[int], Optional[int]]:
    """(pids.current, pids.max) of the tightest limited cgroup of ``pid``.

    Walks from the process' cgroup up to the root; among the ancestors with a
    ``pids.max``, the one with the least headroom counts. Without any limit:
    (pids.current of the process' own cgroup, None).
    """
    global _MOUNTS
    if _MOUNTS is None:
        _MOUNTS = _cgroup_mounts(proc)
    v2mnt, v1mnt = _MOUNTS
    try:
        text = _read(f"{proc}/{pid}/cgroup")
    except FileNotFoundError:
        raise ProcessGone(pid) from None
    except OSError:
        return None, None
    base = rel = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, ctrls, path = parts
        if ctrls and "pids" in ctrls.split(",") and v1mnt:
            base, rel = v1mnt, path
            break
        if hid == "0" and ctrls == "" and v2mnt and base is None:
            base, rel = v2mnt, path
    if base is None or rel is None or rel.startswith("/.."):
        return None, None  # outside our cgroup namespace view
    own_current: Optional[int] = None
    best: Optional[Tuple[int, int, int]] = None  # (headroom, current, max)
    path = rel.rstrip("/")
    while True:
        d = os.path.join(base, path.lstrip("/"))
        cur = _read_int(os.path.join(d, "pids.current"))
        mx = _read_int(os.path.join(d, "pids.max"))
        if own_current is None:
            own_current = cur
        if cur is not None and mx is not None:
            if best is None or mx - cur < best[0]:
                best = (mx - cur, cur, mx)
        if not path or path == "/":
            break
        path = os.path.dirname(path)
        if path == "/":
            path = ""
    if best is not None:
        return best[1], best[2]
    return own_current, None


def _read_int(path: str) -> Optional[int]:
    try:
        s = _read(path).strip()
    except OSError:
        return None
    if s == "max":
        return None
    try:
        return int(s)
    except ValueError:
        return None


@dataclass
class ProcessStats:
    """The statistics of one process (:func:`process_stats`): threads, fds, memory,
    its thread limits and what each is compared with, TCP sockets by state.
    A value that could not be read, or a limit that is unlimited, is None (the
    metric is then absent, never zero)."""

    threads: Optional[int] = None
    open_fds: Optional[int] = None
    max_fds: Optional[int] = None
    rss_bytes: Optional[int] = None
    nproc_limit: Optional[int] = None  # RLIMIT_NPROC soft; None = unlimited
    nproc_enforced: bool = True
    user_threads: Optional[int] = None
    cgroup_pids: Optional[int] = None
    cgroup_pids_max: Optional[int] = None
    host_threads: Optional[int] = None
    host_threads_max: Optional[int] = None
    tcp: Dict[str, int] = field(default_factory=dict)
    #: why ``tcp`` is empty when its sockets could not be counted (:class:`TcpUnread`)
    tcp_unread: Optional[str] = None
    ruid: Optional[int] = None

    def limits(self) -> List[Tuple[int, int]]:
        """(limit, what it is compared with) for every limit that applies."""
        out = []
        if self.nproc_limit is not None and self.nproc_enforced and self.user_threads is not None:
            out.append((self.nproc_limit, self.user_threads))
        if self.cgroup_pids_max is not None and self.cgroup_pids is not None:
            out.append((self.cgroup_pids_max, self.cgroup_pids))
        if self.host_threads_max is not None and self.host_threads is not None:
            out.append((self.host_threads_max, self.host_threads))
        return out

    @property
    def thread_limit(self) -> Optional[int]:
        """The smallest limit that applies to this process' threads (see module doc)."""
        lim = self.limits()
        return min(l for l, _ in lim) if lim else None

    @property
    def thread_headroom(self) -> Optional[int]:
        """Threads the process could still start before the first limit is hit."""
        lim = self.limits()
        return max(0, min(l - used for l, used in lim)) if lim else None


def process_stats(pid: int, snap: Optional[HostSnapshot] = None, proc: str = PROC,
                  tcp: bool = True, tcp_cache: Optional[TcpTables] = None) -> ProcessStats:
    """Everything above for one process (its TCP sockets through ``tcp_cache``, the
    scrape's :class:`TcpTables`). Raises :class:`ProcessGone`."""
    s = ProcessStats()
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            s.threads = p.num_threads()
            s.rss_bytes = p.memory_info().rss
            try:
                s.open_fds = p.num_fds()
            except psutil.AccessDenied:
                s.open_fds = None
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        raise ProcessGone(pid) from None
    except psutil.AccessDenied:
        pass
    try:
        status = parse_status(_read(f"{proc}/{pid}/status"))
        limits = parse_limits(_read(f"{proc}/{pid}/limits"))
    except FileNotFoundError:
        raise ProcessGone(pid) from None
    except OSError:
        status, limits = {}, {}
    if status.get("State", "").startswith("Z"):
        raise ProcessGone(pid)
    s.max_fds = limits.get("Max open files", (None, None))[0]
    s.nproc_limit = limits.get("Max processes", (None, None))[0]
    s.nproc_enforced = nproc_enforced(status)
    try:
        s.ruid = int(status["Uid"].split()[0])
    except (KeyError, ValueError, IndexError):
        s.ruid = None
    if snap is None:
        snap = host_snapshot(proc)
    if s.ruid is not None:
        s.user_threads = snap.threads_by_uid.get(s.ruid)
    s.cgroup_pids, s.cgroup_pids_max = cgroup_pids(pid, proc)
    s.host_threads = host_threads(proc)
    if s.host_threads is None:
        s.host_threads = snap.total_threads
    s.host_threads_max = threads_max(proc)
    if tcp:
        from .tcptables import TcpUnread, tcp_states  # it builds on this module's ProcessGone

        try:
            s.tcp = tcp_states(pid, proc, tcp_cache)
        except PermissionError:
            s.tcp = {}
        except TcpUnread as e:
            s.tcp, s.tcp_unread = {}, str(e)
    if not os.path.exists(f"{proc}/{pid}"):
        raise ProcessGone(pid)
    return s
