"""A real ZooKeeper server (Debian's ``zookeeper`` package) for the tests,
the lab and the benchmarks.

The server runs standalone on a free port with its own zoo.cfg and data
directory under a temporary directory, four-letter words allowed, the admin
server off. It can be stopped and started again on the same port and data
directory (the recovery tests need that). Whatever happens, the JVM is killed
on teardown.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional

import psutil

from .procs import free_port, stop_process_group

CLASSPATH = "/usr/share/java/zookeeper.jar:/usr/share/zookeeper/*"
MAIN = "org.apache.zookeeper.server.quorum.QuorumPeerMain"


def available() -> bool:
    return Path("/usr/share/java/zookeeper.jar").is_file()


def four_letter(port: int, cmd: bytes, timeout: float = 2.0) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(cmd)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    return out.decode()


class ZooKeeperServer:
    def __init__(self, workdir: Path, port: Optional[int] = None, whitelist: str = "*"):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.data = self.workdir / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.cfg = self.workdir / "zoo.cfg"
        self.cfg.write_text(
            "tickTime=500\n"  # sessions from 1 s to 10 s: the outage tests stay short
            "initLimit=10\nsyncLimit=5\n"
            f"dataDir={self.data}\n"
            f"clientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\n"
            "maxClientCnxns=0\n"
            f"4lw.commands.whitelist={whitelist}\n"
            "admin.enableServer=false\n"
            "forceSync=no\n"  # tests: no fsync per write
            "jute.maxbuffer=4194304\n"
        )
        self.log = self.workdir / "zookeeper.log"
        self.proc: Optional[subprocess.Popen] = None

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "ZooKeeperServer":
        assert self.proc is None
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
             "-Dzookeeper.admin.enableServer=false", "-Djute.maxbuffer=4194304",
             "-cp", CLASSPATH, MAIN, str(self.cfg)],
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        logf.close()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if four_letter(self.port, b"ruok", 1.0) == "imok" and "Mode:" in four_letter(self.port, b"srvr", 1.0):
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"ZooKeeper not ready within {timeout}s: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is not None:
            stop_process_group(p, grace=0)  # no grace: a stop is a crash (what the recovery tests replay)

    def pause(self, timeout: float = 30) -> None:
        """SIGSTOP: the server keeps its sockets open but answers nothing (a hung ZooKeeper).

        Returns once every thread of the JVM is stopped: the signal only starts
        a group stop, and on a loaded machine a thread that is running, or in
        the kernel, may still answer a request or two before it stops."""
        os.killpg(self.proc.pid, signal.SIGSTOP)  # a raw signal: freezing the server is the point
        end = time.monotonic() + timeout
        while not _all_threads_stopped(self.proc.pid):
            if time.monotonic() > end:
                raise RuntimeError(f"ZooKeeper (pid {self.proc.pid}) not stopped within {timeout}s of SIGSTOP")
            time.sleep(0.01)

    def resume(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)


def _all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is in the stopped state."""
    stopped = (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    threads = psutil.Process(pid).threads()
    for t in threads:
        try:
            if psutil.Process(t.id).status() not in stopped:
                return False
        except psutil.NoSuchProcess:  # a thread that has just exited
            continue
    return bool(threads)


@contextmanager
def zookeeper_server(workdir: Path, **kw) -> Iterator[ZooKeeperServer]:
    srv = ZooKeeperServer(workdir, **kw)
    try:
        srv.start()
        yield srv
    finally:
        try:
            if srv.proc is not None:
                srv.resume()
        except ProcessLookupError:
            pass
        srv.stop()


# --------------------------------------------------------------------------
# Livy's state store, written exactly as Livy writes it


def batch_record(sid: int) -> bytes:
    """BatchRecoveryMetadata as Livy's Jackson mapper serialises it (None -> null)."""
    return json.dumps({"id": sid, "name": None, "appId": f"application_1700000000000_{sid:05d}",
                       "appTag": f"livy-batch-{sid}-{sid % 99999999:08d}", "owner": "etl",
                       "proxyUser": None, "version": 1}, separators=(",", ":")).encode()


def interactive_record(sid: int) -> bytes:
    return json.dumps({"id": sid, "name": None, "appId": f"application_1700000000000_{sid:05d}",
                       "appTag": f"livy-session-{sid}-abcdefgh", "kind": "pyspark", "heartbeatTimeoutS": 0,
                       "owner": "etl", "proxyUser": None, "rscDriverUri": None, "version": 1},
                      separators=(",", ":")).encode()


def write_livy_store(client, prefix: str, kind: str, n: int, acl: Optional[List] = None, batch: int = 1000) -> None:
    """Create ``/<prefix>/v1/<kind>`` with ``n`` session records and the ``state`` node,
    fast: transactions of ``batch`` creates, all in flight at once."""
    base = f"/{prefix}/v1/{kind}"
    client.ensure_path(f"/{prefix}/v1", acl=acl)
    client.create(base, b"", acl=acl)
    make = batch_record if kind == "batch" else interactive_record
    pending = []
    for start in range(0, n, batch):
        tx = client.transaction()
        for sid in range(start, min(n, start + batch)):
            tx.create(f"{base}/{sid}", make(sid), acl=acl)
        pending.append(tx.commit_async())
    for p in pending:
        results = p.get(timeout=120)
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, errors[:3]
    client.create(f"{base}/state", json.dumps({"nextSessionId": n}, separators=(",", ":")).encode(), acl=acl)
