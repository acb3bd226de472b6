"""The attach client against a hostile pod's /tmp (exporter/hotspot/attach.py).

With ``variants/all-users-attach`` the exporter is root with ``DAC_OVERRIDE``:
whatever the pod lays out under ``/proc/<pid>/root/tmp`` and its working
directory must not steer where it connects or creates files. A "pod" here is a
process chrooted into a directory tree of the test (its ``/proc/<pid>/root``),
that catches SIGQUIT as a JVM does; a decoy Unix socket records every
connection and byte it gets. Real JVMs check that the attach still works.
"""

from __future__ import annotations

import ctypes
import os
import socket
import struct
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

import pytest

from sparkwatch.hotspot import attach as hs_attach
from testbed.jvm import running_jvm
from testbed.procs import stop_process_group
from tests.helpers import os_user, requires_java

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chroot, other uids), as the exporter has")

NOBODY = 65534

# the pod: chroot into its root, catch SIGQUIT (counted on stdout), drop to its uid, wait for stdin to close
POD = r"""
import os, signal, sys
root, uid = sys.argv[1], int(sys.argv[2])
signal.signal(signal.SIGQUIT, lambda *a: print("quit", flush=True))
os.chroot(root)
os.chdir("/")
if uid:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
print("ready", os.getpid(), flush=True)
sys.stdin.read()
"""


class Pod:
    def __init__(self, proc: subprocess.Popen, root: Path):
        self.proc = proc
        self.root = root
        line = proc.stdout.readline().split()
        assert line[:1] == ["ready"], line
        self.pid = int(line[1])

    def quits(self) -> int:
        """How many SIGQUITs the pod got (ends it)."""
        self.proc.stdin.close()
        out = self.proc.stdout.read()
        self.proc.wait(10)
        return out.split().count("quit")


@contextmanager
def pod(root: Path, uid: int = 0) -> Iterator[Pod]:
    p = subprocess.Popen([sys.executable, "-c", POD, str(root), str(uid)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, cwd="/", start_new_session=True)
    try:
        yield Pod(p, root)
    finally:
        stop_process_group(p, grace=0)


class Decoy:
    """A listening Unix socket that records the connections it gets and every byte sent."""

    def __init__(self, path: Path):
        self.path = path
        self.connections = 0
        self.received = b""
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(8)
        self.srv.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except socket.timeout:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(5)
                try:
                    self.received += conn.recv(4096)  # the attach request comes at once, or EOF
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.srv.close()


@contextmanager
def decoy(path: Path) -> Iterator[Decoy]:
    d = Decoy(path)
    try:
        yield d
    finally:
        d.close()


IN_CREATE, IN_MOVED_TO = 0x100, 0x80


@contextmanager
def created_in(directory: Path) -> Iterator[List[str]]:
    """The names created in (or moved into) ``directory`` while the block runs (inotify)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0, os.strerror(ctypes.get_errno())
    names: List[str] = []
    try:
        assert libc.inotify_add_watch(fd, str(directory).encode(), IN_CREATE | IN_MOVED_TO) >= 0
        yield names
        try:
            buf = os.read(fd, 65536)
        except BlockingIOError:
            buf = b""
        while buf:
            _, _, _, n = struct.unpack_from("iIII", buf)
            names.append(buf[16:16 + n].rstrip(b"\0").decode())
            buf = buf[16 + n:]
    finally:
        os.close(fd)


def pod_root(tmp_path: Path) -> Path:
    root = tmp_path / "pod"
    (root / "tmp").mkdir(parents=True)
    os.chmod(root, 0o755)
    os.chmod(root / "tmp", 0o1777)
    return root


def attach(pid: int, timeout: float = 2.0) -> hs_attach.AttachError:
    with pytest.raises(hs_attach.AttachError) as e:
        hs_attach.jcmd(pid, "Compiler.codecache", timeout=timeout)
    return e.value


# ------------------------------------------------------------------ the socket


def test_a_symlinked_socket_gets_nothing(tmp_path):
    """The pod makes its /tmp/.java_pid<n> an absolute symbolic link: followed from
    outside, it resolves against the exporter's root, here a decoy socket of the
    node. Not a byte, not even a connection, goes there."""
    root = pod_root(tmp_path)
    with pod(root) as p, decoy(tmp_path / "decoy.sock") as d:
        os.symlink(str(d.path), root / "tmp" / f".java_pid{p.pid}")
        e = attach(p.pid)
        assert p.quits() == 0
    assert (d.connections, d.received) == (0, b"")
    assert "symbolic link" in e.message


@pytest.mark.parametrize("uid", [NOBODY, 0], ids=["owned-by-another-uid", "same-uid-another-listener"])
def test_a_socket_that_is_not_the_jvms_gets_no_byte(tmp_path, uid):
    """A real socket at the pod's /tmp/.java_pid<n>, listened on by another process
    (the node's, root's): when it is owned by another uid than the JVM's it is not
    even connected to; when the owner matches, the listener's pid (SO_PEERCRED) is
    not the JVM's, and the connection is closed before a byte is sent."""
    root = pod_root(tmp_path)
    with pod(root, uid) as p:
        with decoy(root / "tmp" / f".java_pid{p.pid}") as d:
            e = attach(p.pid)
        assert p.quits() == 0
    assert d.received == b""
    if uid:
        assert d.connections == 0
        assert f"uid 0, not the JVM's uid {NOBODY}" in e.message
    else:
        assert d.connections == 1
        assert f"pid {os.getpid()}" in e.message and "nothing sent" in e.message


# ------------------------------------------------------------------ the pod's /tmp, the trigger file


@pytest.mark.parametrize("with_socket", [False, True], ids=["no-socket", "decoy-socket"])
def test_a_symlinked_tmp_is_not_followed(tmp_path, with_socket):
    """The pod's /tmp is a symbolic link to a directory of the node (its working
    directory holds a symlinked trigger, so that /tmp is the one left to use). No
    trigger file is created in that directory, nothing connects to a socket there,
    the pod is not signalled."""
    root = tmp_path / "pod"
    root.mkdir()
    os.chmod(root, 0o755)
    victim = tmp_path / "victim"
    victim.mkdir()
    os.chmod(victim, 0o1777)
    os.symlink(str(victim), root / "tmp")
    with pod(root) as p:
        os.symlink(str(tmp_path / "elsewhere"), root / f".attach_pid{p.pid}")
        with decoy(victim / f".java_pid{p.pid}") if with_socket else _nothing() as d, created_in(victim) as created:
            e = attach(p.pid)
        assert p.quits() == 0
    assert created == []
    assert sorted(os.listdir(victim)) == ([f".java_pid{p.pid}"] if with_socket else [])
    assert not (tmp_path / "elsewhere").exists()
    if with_socket:
        assert (d.connections, d.received) == (0, b"")
    assert "/tmp" in e.message and "symbolic link" in e.message


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def test_trigger_only_where_the_jvms_user_could_write_it(tmp_path):
    """The pod's user cannot write its working directory (root's, 0755): root with
    DAC_OVERRIDE could, but the trigger goes to the pod's /tmp, where its user may
    write, and is removed afterwards."""
    root = pod_root(tmp_path)
    with pod(root, NOBODY) as p:
        with created_in(root) as in_cwd, created_in(root / "tmp") as in_tmp:
            e = attach(p.pid, timeout=1.5)
        assert e.reason == "timeout" and e.signalled_in_vain
        assert p.quits() == 1
    assert in_cwd == []
    assert in_tmp == [f".attach_pid{p.pid}"]
    assert os.listdir(root / "tmp") == []


def test_a_trigger_name_the_pod_took_is_left_alone(tmp_path):
    """The pod put a symbolic link at /tmp/.attach_pid<n> (and its working directory is
    not its user's): the link is neither followed nor removed, nothing is signalled."""
    root = pod_root(tmp_path)
    target = tmp_path / "target"
    with pod(root, NOBODY) as p:
        link = root / "tmp" / f".attach_pid{p.pid}"
        os.symlink(str(target), link)
        e = attach(p.pid)
        assert p.quits() == 0
    assert "attach trigger" in e.message
    assert os.path.islink(link) and not target.exists()


# ------------------------------------------------------------------ real JVMs still attach


@requires_java
def test_a_real_jvm_attaches(jvm_classes):
    """The listener's socket passes every check: owned by the JVM's uid, listened on by its pid."""
    with running_jvm(jvm_classes, "Workload", args=["attach-hostile-test"]) as jvm:
        for _ in range(2):  # the first starts the listener, the second finds it running
            cc = hs_attach.parse_codecache(hs_attach.jcmd(jvm.pid, "Compiler.codecache", timeout=20))
            assert cc.compilation_enabled is True and cc.heaps
        assert jvm.proc.poll() is None


@requires_java
def test_a_real_jvm_of_another_user_in_a_directory_it_cannot_write(jvm_classes, tmp_path):
    """Another user's JVM whose working directory is root's: the trigger goes to /tmp
    (never to the working directory, which root could write but the JVM's user could
    not), and the attach works."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    os.chmod(cwd, 0o755)
    os.chmod(tmp_path, 0o755)
    with os_user() as user, running_jvm(jvm_classes, "Workload", args=["attach-cwd-test"], user=user,
                                        cwd=str(cwd)) as jvm:
        with created_in(cwd) as created:
            cc = hs_attach.parse_codecache(hs_attach.jcmd(jvm.pid, "Compiler.codecache", timeout=20))
        assert cc.compilation_enabled is True
        assert created == []
        assert jvm.proc.poll() is None
