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
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple, Union

import psutil

PROC = "/proc"
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24

TCP_STATES = {
    "01": "established", "02": "syn_sent", "03": "syn_recv", "04": "fin_wait1",
    "05": "fin_wait2", "06": "time_wait", "07": "close", "08": "close_wait",
    "09": "last_ack", "0A": "listen", "0B": "closing", "0C": "new_syn_recv",
}


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


# --------------------------------------------------------------------------
# TCP sockets by state
#
# A process' sockets are its descriptors' ``socket:[<inode>]``; their states are in the
# table of its network namespace, which lists every socket of the namespace. Whoever
# runs a pod owns its namespace and chooses how many sockets that is (600,000
# listening sockets on 127/8 take them a gigabyte of kernel memory, and would take
# the exporter hundreds of MB and seconds to hold as a table): a table is streamed,
# only the sockets of the processes measured are kept, and its reading stops at
# TCP_LINES_MAX lines or at the deadline, saying so (TcpUnread).

#: lines (sockets) of one network namespace's TCP tables (IPv4 and IPv6) read at most
TCP_LINES_MAX = 1 << 17
#: lines read between two looks at the deadline (the kernel's part of a line costs some 10 us)
TCP_LINES_PER_LOOK = 1024
#: socket descriptors of one process looked up at most (the inodes kept: 64 bytes each)
TCP_SOCKETS_MAX = 1 << 16
#: the share of the time left in the deadline one namespace's table may take (the others, and
#: the rest of the JVMs' statistics, keep the rest); it stops anyway TCP_DEADLINE_MARGIN before the end
TCP_SHARE = 0.5
TCP_DEADLINE_MARGIN = 0.1

_STATE_BY_NUM = {int(k, 16): v for k, v in TCP_STATES.items()}
_STATE_BY_HEX = {k.encode(): v for k, v in TCP_STATES.items()}  # as the kernel writes them (%02X)
#: netlink answers are read into this much (a dump's messages come in buffers of 32 KiB at most)
_NETLINK_BUFFER = 1 << 16


class TcpUnread(Exception):
    """The TCP sockets of a process were not counted: its namespace's table was not read
    to its end (more than TCP_LINES_MAX sockets, the deadline), or it holds more than
    TCP_SOCKETS_MAX sockets itself. The message says which."""


def _open_table(path: str):
    return open(path, "rb")


class _Lines:
    """Counts the lines (sockets) of one namespace's tables; looks at ``out_of_time`` every
    TCP_LINES_PER_LOOK and raises TcpUnread past TCP_LINES_MAX or when the time is up."""

    def __init__(self, out_of_time: Optional[Callable[[], bool]]):
        self.n = 0
        self.out_of_time = out_of_time

    def step(self) -> None:
        self.n += 1
        if self.n > TCP_LINES_MAX:
            raise TcpUnread(f"its network namespace holds more than {TCP_LINES_MAX} sockets")
        if self.n % TCP_LINES_PER_LOOK == 0 and self.out_of_time is not None and self.out_of_time():
            raise TcpUnread(f"its network namespace's sockets were not all read in its share of the scrape "
                            f"deadline ({self.n} read)")


def netlink_tcp_table(wanted: Set[int], out_of_time: Optional[Callable[[], bool]] = None) -> Dict[int, str]:
    """socket inode -> state of the sockets among ``wanted`` in the exporter's own network
    namespace, through NETLINK_SOCK_DIAG (what ``ss`` uses; much cheaper than /proc/net/tcp,
    whose cost grows with the kernel's socket hash table). Every socket of the namespace
    counts towards TCP_LINES_MAX. Raises OSError when netlink is not available,
    :class:`TcpUnread` (see :class:`_Lines`)."""
    import socket as _socket
    import struct

    NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY = 4, 20
    NLM_F_REQUEST, NLM_F_DUMP, NLMSG_ERROR, NLMSG_DONE = 1, 0x300, 2, 3
    table: Dict[int, str] = {}
    lines = _Lines(out_of_time)
    buf = bytearray(_NETLINK_BUFFER)
    with _socket.socket(_socket.AF_NETLINK, _socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.settimeout(2.0)
        for seq, family in enumerate((_socket.AF_INET, _socket.AF_INET6), 1):
            # inet_diag_req_v2: family, protocol, ext, pad, states, inet_diag_sockid (48 bytes)
            req = struct.pack("=BBBxI", family, _socket.IPPROTO_TCP, 0, 0xFFFFFFFF) + b"\0" * 48
            nl.send(struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP,
                                seq, 0) + req)
            done = False
            while not done:
                size = nl.recv_into(buf)
                if not size:
                    raise OSError("netlink: empty answer")
                off = 0
                while off + 16 <= size:
                    length, mtype, _flags, mseq, _pid = struct.unpack_from("=IHHII", buf, off)
                    if length < 16:
                        raise OSError("netlink: bad message length")
                    if mseq == seq:
                        if mtype == NLMSG_DONE:
                            done = True
                            break
                        if mtype == NLMSG_ERROR:
                            raise OSError("netlink: error answer")
                        if mtype == SOCK_DIAG_BY_FAMILY and length >= 16 + 72 and off + 16 + 72 <= size:
                            lines.step()
                            # inet_diag_msg: family, state, timer, retrans, id (48), expires,
                            # rqueue, wqueue, uid, inode
                            inode = struct.unpack_from("=I", buf, off + 16 + 68)[0]
                            if inode in wanted:
                                st = _STATE_BY_NUM.get(buf[off + 17])
                                if st:
                                    table[inode] = st
                    off += (length + 3) & ~3
    return table


def proc_tcp_table(pid: int, wanted: Set[int], proc: str = PROC,
                   out_of_time: Optional[Callable[[], bool]] = None) -> Dict[int, str]:
    """socket inode -> state of the sockets among ``wanted`` in /proc/<pid>/net/tcp{,6}
    (the namespace of ``pid``), read line by line; it stops once all are found. Raises
    :class:`TcpUnread` (see :class:`_Lines`)."""
    table: Dict[int, str] = {}
    lines = _Lines(out_of_time)
    for name in ("tcp", "tcp6"):
        try:
            f = _open_table(f"{proc}/{pid}/net/{name}")
        except OSError:
            continue
        with f:
            f.readline()  # the header
            for line in f:
                lines.step()
                fields = line.split(None, 10)
                if len(fields) > 9:
                    try:
                        inode = int(fields[9])
                    except ValueError:
                        continue
                    if inode in wanted:
                        st = _STATE_BY_HEX.get(fields[3])
                        if st:
                            table[inode] = st
                            if len(table) == len(wanted):
                                return table
    return table


def _netns(pid: int, proc: str) -> str:
    try:
        return os.readlink(f"{proc}/{pid}/ns/net")
    except FileNotFoundError:
        raise ProcessGone(pid) from None
    except OSError:
        return f"pid:{pid}"


class TcpTables:
    """The TCP sockets of the processes one scrape measures, by state (:meth:`states`).

    Each network namespace's table is read once (:func:`netlink_tcp_table` for the
    exporter's own, :func:`proc_tcp_table` for the others), keeping only the sockets
    of the processes :meth:`expect` named (200 JVMs of one pod: one reading), within
    ``deadline`` (a :class:`sparkwatch.collector.Deadline`, or None). What could not be
    counted is in :attr:`unread`, one message per namespace or process."""

    def __init__(self, deadline=None, proc: str = PROC):
        self._deadline = deadline
        self._proc = proc
        self._expected: List[int] = []
        self._by_netns: Optional[Dict[str, List[int]]] = None
        #: pid -> its socket inodes (or why they are not known)
        self._inodes: Dict[int, Union[FrozenSet[int], TcpUnread]] = {}
        #: netns -> (the inodes looked for, inode -> state of those found), or why it was not read
        self._tables: Dict[str, Union[Tuple[Set[int], Dict[int, str]], TcpUnread]] = {}
        self.unread: List[str] = []

    def expect(self, pids: Iterable[int]) -> None:
        """The processes that will be measured: their namespaces' tables are read for all of them at once."""
        self._expected.extend(pids)
        self._by_netns = None

    def _out_of_time(self, reserve: float = 0.0) -> bool:
        return self._deadline is not None and self._deadline.remaining() <= max(reserve, TCP_DEADLINE_MARGIN)

    def _share(self) -> Optional[Callable[[], bool]]:
        """When the reading of one namespace's table is out of time (TCP_SHARE of what is left now)."""
        if self._deadline is None:
            return None
        reserve = self._deadline.remaining() * (1 - TCP_SHARE)
        return lambda: self._out_of_time(reserve)

    def states(self, pid: int) -> Dict[str, int]:
        """The TCP sockets of ``pid`` by state (every state, 0 for none). Raises
        :class:`ProcessGone`, :class:`TcpUnread`."""
        netns = _netns(pid, self._proc)
        inodes = self._inodes_of(pid)
        counts = {s: 0 for s in TCP_STATES.values()}
        if not inodes:
            return counts
        got = self._tables.get(netns)
        if isinstance(got, TcpUnread):
            raise got
        if got is None or not inodes <= got[0]:
            wanted = set(inodes)
            if got is None:  # every process expected in this namespace, read at once
                for other in self._expected_in(netns):
                    if other != pid:
                        try:
                            wanted |= self._inodes_of(other)
                        except (ProcessGone, TcpUnread, PermissionError):
                            continue
            try:
                table = self._read(pid, netns, wanted)
            except TcpUnread as e:
                self._tables[netns] = e
                self.unread.append(str(e))
                raise
            if got is None:
                got = self._tables[netns] = (wanted, table)
            else:  # a process not expected: its sockets added to what is known
                got[0].update(wanted)
                got[1].update(table)
        table = got[1]
        for ino in inodes:
            st = table.get(ino)
            if st:
                counts[st] += 1
        return counts

    def _expected_in(self, netns: str) -> List[int]:
        if self._by_netns is None:
            self._by_netns = {}
            for pid in self._expected:
                try:
                    self._by_netns.setdefault(_netns(pid, self._proc), []).append(pid)
                except ProcessGone:
                    continue
        return self._by_netns.get(netns, [])

    def _read(self, pid: int, netns: str, wanted: Set[int]) -> Dict[int, str]:
        out_of_time = self._share()
        if self._proc == PROC and netns == _netns(os.getpid(), PROC):
            try:
                return netlink_tcp_table(wanted, out_of_time)
            except OSError:
                pass
        return proc_tcp_table(pid, wanted, self._proc, out_of_time)

    def _inodes_of(self, pid: int) -> FrozenSet[int]:
        """The inodes of ``pid``'s sockets (kept for the scrape). Raises ProcessGone,
        PermissionError, TcpUnread (more than TCP_SOCKETS_MAX; the deadline)."""
        got = self._inodes.get(pid)
        if got is None:
            try:
                got = self._inodes[pid] = self._list_sockets(pid)
            except TcpUnread as e:
                got = self._inodes[pid] = e
                self.unread.append(f"{pid}: {e}")
        if isinstance(got, TcpUnread):
            raise got
        return got

    def _list_sockets(self, pid: int) -> FrozenSet[int]:
        fd_dir = f"{self._proc}/{pid}/fd"
        inodes: Set[int] = set()
        try:
            it = os.scandir(fd_dir)
        except FileNotFoundError:
            raise ProcessGone(pid) from None
        with it:
            for i, entry in enumerate(it, 1):
                if i % TCP_LINES_PER_LOOK == 0 and self._out_of_time():
                    raise TcpUnread("the scrape deadline came before its descriptors were all listed")
                try:
                    link = os.readlink(entry.path)
                except OSError:
                    continue
                if link.startswith("socket:["):
                    if len(inodes) >= TCP_SOCKETS_MAX:
                        raise TcpUnread(f"it holds more than {TCP_SOCKETS_MAX} sockets")
                    try:
                        inodes.add(int(link[8:-1]))
                    except ValueError:
                        continue
        return frozenset(inodes)


def tcp_states(pid: int, proc: str = PROC, tables: Optional[TcpTables] = None) -> Dict[str, int]:
    """TCP sockets of the process by state, from its own network namespace, matched to its
    file descriptors by inode (:class:`TcpTables`; pass the same one for all processes of
    one scrape and each namespace is read once). Raises ProcessGone, TcpUnread."""
    return (tables if tables is not None else TcpTables(proc=proc)).states(pid)


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
        try:
            s.tcp = tcp_states(pid, proc, tcp_cache)
        except PermissionError:
            s.tcp = {}
        except TcpUnread as e:
            s.tcp, s.tcp_unread = {}, str(e)
    if not os.path.exists(f"{proc}/{pid}"):
        raise ProcessGone(pid)
    return s
