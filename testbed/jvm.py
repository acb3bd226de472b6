"""Real JVMs for the jvm collector tests, the lab and the benchmark: compile
testbed/jvmapps, start, stop.

Every JVM started here is killed when its context ends (also on failure).
A dedicated system user can be created for tests that need a JVM of another
user (RLIMIT_NPROC is ignored for root) and is removed afterwards.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import psutil

from .procs import stop_process_group

#: the Java sources: Workload (driven through stdin) and Payload (classes it defines)
APPS = Path(__file__).resolve().parent / "jvmapps"


def have_java() -> bool:
    return all(shutil.which(t) for t in ("java", "javac", "jcmd"))


def compile_apps(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p) for p in APPS.glob("*.java"))
    subprocess.run(["javac", "-d", str(dest)] + sources, check=True, capture_output=True, timeout=120)
    # other users (the JVMs of test users) must be able to read the classes
    for root, dirs, files in os.walk(dest):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    return dest


class Jvm:
    """A running JVM started from testbed/jvmapps; talk to it through stdin/stdout."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.pid = proc.pid  # replaced by the java pid when started through a wrapper
        self.output: List[str] = []  # every line read so far

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, prefix: str, timeout: float = 60) -> str:
        """Read stdout lines until one starts with ``prefix``; return it."""
        end = time.monotonic() + timeout
        seen = []
        while time.monotonic() < end:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"JVM exited (rc={self.proc.poll()}) before {prefix!r}; output: {seen[-20:]}")
            line = line.rstrip("\n")
            seen.append(line)
            self.output.append(line)
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no {prefix!r} within {timeout}s; output: {seen[-20:]}")

    def command(self, line: str, timeout: float = 120) -> str:
        self.send(line)
        return self.expect("done", timeout)

    def kill(self) -> None:
        """Kill the JVM at once with its process group (a crash: no shutdown hook runs, its
        perf-data file stays)."""
        stop_process_group(self.proc, grace=0)


@contextmanager
def running_jvm(classes: Path, main: str, args: List[str] = (), jvm_opts: List[str] = (),
                user: Optional[str] = None, nproc: Optional[int] = None,
                cwd: Optional[str] = None) -> Iterator[Jvm]:
    """Start ``java <jvm_opts> -cp classes main args``; waits for its ``ready pid=N`` line."""
    cmd = ["java", "-Xmx256m", "-Xss256k", *jvm_opts, "-cp", str(classes), main, *args]
    if user is not None:
        pw = pwd.getpwnam(user)
        cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
               "--reset-env", "--"] + cmd
        # --reset-env drops PATH for non-root users: use the absolute java
        cmd[cmd.index("java")] = shutil.which("java")
    if nproc is not None:
        cmd = ["prlimit", f"--nproc={nproc}:{nproc}", "--"] + cmd
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=cwd or "/", start_new_session=True)
    jvm = Jvm(proc)
    try:
        line = jvm.expect("ready", 60)
        m = re.search(r"pid=(\d+)", line)
        if m:
            jvm.pid = int(m.group(1))
        yield jvm
    finally:
        jvm.kill()


@contextmanager
def os_user(prefix: str = "swjvm") -> Iterator[str]:
    """A fresh system user (no home), removed with its processes afterwards. Needs root."""
    if os.geteuid() != 0:
        raise PermissionError("creating a user needs root")
    name = f"{prefix}{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True, timeout=30)
    try:
        yield name
    finally:
        uid = pwd.getpwnam(name).pw_uid
        # every process of the user, whoever started it (no one process group holds them all)
        procs = [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
        for p in procs:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=5)
        subprocess.run(["userdel", name], capture_output=True, timeout=30)
        shutil.rmtree(f"/tmp/hsperfdata_{name}", ignore_errors=True)


def jcmd(pid: int, *command: str, timeout: float = 60) -> str:
    r = subprocess.run(["jcmd", str(pid), *command], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"jcmd failed: {r.stdout}{r.stderr}"
    return r.stdout


def perf_counters(pid: int) -> Dict[str, str]:
    """``jcmd <pid> PerfCounter.print`` as a dict of raw values (strings unquoted)."""
    out = {}
    for line in jcmd(pid, "PerfCounter.print").splitlines():
        if "=" not in line:
            continue
        k, v = line.split("=", 1)
        if v.startswith('"') and v.endswith('"'):
            v = v[1:-1]
        out[k.strip()] = v
    return out


def proc_threads(pid: int) -> int:
    """The threads of process ``pid`` (psutil: /proc/<pid>/status)."""
    return psutil.Process(pid).num_threads()


def threads_of_uid(uid: int) -> int:
    """The threads of every process whose real uid is ``uid`` (what RLIMIT_NPROC counts)."""
    total = 0
    for p in psutil.process_iter(["uids", "num_threads"]):
        if p.info["uids"] and p.info["uids"].real == uid and p.info["num_threads"]:
            total += p.info["num_threads"]
    return total
