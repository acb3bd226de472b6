"""A process' TCP sockets by state, read from the table of its network namespace.

A process' sockets are its descriptors' ``socket:[<inode>]``; their states are in the
table of its network namespace (``/proc/<pid>/net/tcp{,6}``, or the kernel's sock_diag
netlink answer), which lists every socket of the namespace. Whoever runs a pod owns its
namespace and chooses how many sockets that is: a table is streamed, only the sockets
of the processes measured are kept, and its reading is bounded in lines, sockets and
time (:class:`TcpTables`, one per scrape: each namespace read once for all its JVMs).
Split out of :mod:`sparkwatch.procstats`, which reads everything else of a process.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, FrozenSet, Iterable, List, Optional, Set, Tuple, Union

from .procstats import PROC, ProcessGone

TCP_STATES = {
    "01": "established", "02": "syn_sent", "03": "syn_recv", "04": "fin_wait1",
    "05": "fin_wait2", "06": "time_wait", "07": "close", "08": "close_wait",
    "09": "last_ack", "0A": "listen", "0B": "closing", "0C": "new_syn_recv",
}

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
