"""The TCP tables a jvm target reads (``jvm_process_tcp_connections``) cost what the
processes measured hold, not what their network namespace holds.

/proc/<pid>/net/tcp lists every socket of the namespace; whoever runs a pod owns its
namespace and chooses how many sockets it holds (a listening socket on 127/8 costs
them two kilobytes of kernel memory). Its JVMs' sockets are counted from a
namespace of 50,000 listening sockets here, within a small memory bound, the
table read once for two JVMs, and the reading stops at the deadline or at the
cap on lines read, saying so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc

import pytest

from sparkwatch import procstats, tcptables
from testbed.exporter import find, running_exporter, samples, scrape, value
from testbed.jvm import running_jvm
from testbed.procs import stop_process_group
from tests.helpers import requires_java

#: listening sockets of the crowded namespace
CROWD = 50_000
#: what counting the sockets of a process may allocate (Python's allocations, tracemalloc's peak)
MEMORY_BOUND = 1 << 20

#: run as `unshare -n python -c CROWDED <n>`: loopback up; two processes that are measured (A: a
#: listener, a client and the connection it accepted; B: a client of A's listener, never accepted,
#: so A's count does not change); then <n> listening sockets, held by processes of 18,000 each (the
#: hard RLIMIT_NOFILE here is 20,000 and root lacks CAP_SYS_RESOURCE); the pids of A and B printed
#: when all is in place
CROWDED = r"""
import fcntl, os, socket, struct, sys, time
n = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(s, 0x8914, struct.pack("16sH", b"lo", 0x1 | 0x8 | 0x40))  # SIOCSIFFLAGS: up, loopback, running
s.close()

def child(body):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the test reads the pids until EOF
        keep = body()
        os.write(w, b"x")
        while True:
            time.sleep(60)  # killed with the group
    os.close(w)
    if os.read(r, 1) != b"x":
        sys.exit("a child failed")
    return pid

def a():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 80))
    srv.listen(8)
    cli = socket.create_connection(("127.0.0.1", 80))
    return srv, cli, srv.accept()[0]

def crowd(first, last):
    held = []
    for i in range(first, last):
        l = socket.socket()
        l.bind((f"127.0.{1 + i // 60000}.1", 1024 + i % 60000))
        l.listen(1)
        held.append(l)
    return held

a_pid = child(a)
b_pid = child(lambda: socket.create_connection(("127.0.0.1", 80)))
for first in range(0, n, 18000):
    child(lambda: crowd(first, min(n, first + 18000)))
print(a_pid, b_pid, flush=True)
sys.stdin.read()
"""

NONE = {s: 0 for s in tcptables.TCP_STATES.values()}


@pytest.fixture(scope="module")
def crowded():
    """(the crowded namespace's owner, A's pid, B's pid)."""
    if os.geteuid() != 0:
        pytest.skip("needs root (unshare -n, nsenter)")
    p = subprocess.Popen(["unshare", "-n", sys.executable, "-c", CROWDED, str(CROWD)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, start_new_session=True, text=True)
    try:
        line = p.stdout.readline()
        if not line:
            pytest.fail(f"the crowded namespace did not start (exit {p.wait(timeout=10)})")
        a_pid, b_pid = (int(x) for x in line.split())
        yield p, a_pid, b_pid
    finally:
        stop_process_group(p, grace=0)


def _table_lines(pid: int) -> int:
    n = 0
    for name in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{name}", "rb") as f:
            n += sum(1 for _ in f) - 1
    return n


def test_the_crowd_is_there(crowded):
    """(what the other tests rely on: the namespace really holds the crowd)"""
    owner, a_pid, _ = crowded
    assert _table_lines(a_pid) >= CROWD
    assert os.readlink(f"/proc/{a_pid}/ns/net") == os.readlink(f"/proc/{owner.pid}/ns/net") \
        != os.readlink("/proc/self/ns/net")


def test_counting_a_processes_sockets_costs_what_it_holds_not_its_namespace(crowded):
    _, a_pid, b_pid = crowded
    tracemalloc.start()
    try:
        got_a = tcptables.tcp_states(a_pid)
        got_b = tcptables.tcp_states(b_pid)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got_a == {**NONE, "listen": 1, "established": 2}
    assert got_b == {**NONE, "established": 1}
    assert peak < MEMORY_BOUND, f"{peak} bytes allocated to count 4 sockets among {CROWD}"


def test_through_netlink_too(crowded):
    """In the exporter's own namespace the table comes through NETLINK_SOCK_DIAG: the same bound
    (run in the crowded namespace, as an exporter of that namespace would)."""
    owner, a_pid, _ = crowded
    code = ("import sys, tracemalloc; from sparkwatch import tcptables; tracemalloc.start(); "
            "got = tcptables.tcp_states(int(sys.argv[1])); "
            "print(got['listen'], got['established'], tracemalloc.get_traced_memory()[1])")
    out = subprocess.run(["nsenter", f"--net=/proc/{owner.pid}/ns/net", sys.executable, "-c", code, str(a_pid)],
                         capture_output=True, text=True, timeout=120, check=True).stdout.split()
    listen, established, peak = (int(x) for x in out)
    assert (listen, established) == (1, 2)
    assert peak < MEMORY_BOUND, f"{peak} bytes allocated to count 3 sockets among {CROWD}"


def test_one_reading_of_a_namespace_for_all_its_processes(crowded, monkeypatch):
    _, a_pid, b_pid = crowded
    opened = []
    real_open = tcptables._open_table
    monkeypatch.setattr(tcptables, "_open_table", lambda path: opened.append(path) or real_open(path))
    tables = tcptables.TcpTables()
    tables.expect([a_pid, b_pid])
    assert tables.states(a_pid) == {**NONE, "listen": 1, "established": 2}
    assert tables.states(b_pid) == {**NONE, "established": 1}
    assert opened and len(opened) == len(set(opened))  # each table once at most (tcp6 not at all if all are found)
    assert not tables.unread


class FakeDeadline:
    """A deadline that has ``looks`` looks left (a fake clock: nothing here depends on speed)."""

    def __init__(self, looks: int):
        self.left = looks
        self.looks = 0

    def remaining(self) -> float:
        self.looks += 1
        self.left -= 1
        return 10.0 if self.left >= 0 else 0.0


def test_the_reading_stops_at_the_deadline(crowded):
    _, a_pid, b_pid = crowded
    deadline = FakeDeadline(3)
    tables = tcptables.TcpTables(deadline)
    tables.expect([a_pid, b_pid])
    with pytest.raises(tcptables.TcpUnread, match="deadline"):
        tables.states(a_pid)
    # it stopped at the first look that found the time up (the first look: its share of the time),
    # far from the end of the table
    assert deadline.looks == 4 < CROWD // tcptables.TCP_LINES_PER_LOOK
    looks = deadline.looks
    with pytest.raises(tcptables.TcpUnread):  # B's namespace is the same one: not read again
        tables.states(b_pid)
    assert deadline.looks == looks
    assert len(tables.unread) == 1


def test_one_namespace_takes_its_share_of_the_time_left(crowded):
    """A crowded namespace read first does not take the others' time: it stops when half of
    what was left when it started is gone."""
    _, a_pid, _ = crowded

    class Clock:
        now = 0.0

        def remaining(self):
            self.now += 2.0  # two seconds per look: 25 looks, half the table, take half the time
            return 100.0 - self.now

    deadline = Clock()
    tables = tcptables.TcpTables(deadline)
    with pytest.raises(tcptables.TcpUnread, match="share"):
        tables.states(a_pid)
    assert 100.0 - deadline.now == pytest.approx(98.0 * (1 - tcptables.TCP_SHARE), abs=2.0)


def test_the_lines_read_are_capped(crowded, monkeypatch):
    _, a_pid, _ = crowded
    monkeypatch.setattr(tcptables, "TCP_LINES_MAX", CROWD // 2)
    tables = tcptables.TcpTables()
    tables.expect([a_pid])
    with pytest.raises(tcptables.TcpUnread, match="more than 25000 sockets"):
        tables.states(a_pid)
    stats = procstats.process_stats(a_pid, tcp=True, tcp_cache=tables)
    assert stats.tcp == {} and "more than 25000 sockets" in stats.tcp_unread


@requires_java
def test_a_jvm_whose_sockets_were_not_counted_is_a_partial_error(jvm_classes, monkeypatch):
    """The jvm target says so (a partial error), leaves out jvm_process_tcp_connections of
    that JVM, and reports the rest of it."""
    jdwp = "-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=127.0.0.1:0"  # a listening socket
    cfg = {"jvm": [{"name": "sockets", "match": r"\bWorkload tcp-tables-test$", "attach": False}]}
    with running_jvm(jvm_classes, "Workload", args=["tcp-tables-test"], jvm_opts=[jdwp]) as jvm, \
            running_exporter(cfg) as (url, _):
        ss = samples(scrape(url))
        assert value(ss, "jvm_process_tcp_connections", process="sockets", state="listen") >= 1
        assert not find(ss, "sparkwatch_target_scrape_errors_total", target="sockets")
        monkeypatch.setattr(tcptables, "TCP_LINES_MAX", 0)
        ss = samples(scrape(url))
        assert not find(ss, "jvm_process_tcp_connections", process="sockets")
        assert value(ss, "jvm_threads_live", process="sockets") > 0
        assert value(ss, "sparkwatch_target_scrape_errors_total", target="sockets", reason="partial") == 1
        assert jvm.pid
