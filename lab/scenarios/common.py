"""What the scenarios share: the exporter, Prometheus and alert watcher of a
scenario (:class:`Stack`), a Spark driver of the lab (:class:`SparkDriver`,
``lab/apps/spark_app.py``), the exporter's targets for it, and a busy Livy."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import psutil

from testbed.spark import loopback_env

from ..core import LAB, SPARK_PYTHON, AlertWatch, Exporter, LabError, Prometheus, View, free_port, kill, start, tail

SPARK_APP = LAB / "apps" / "spark_app.py"


class Stack:
    """Exporter + Prometheus + alert watcher for one scenario, stopped in reverse order."""

    def __init__(self, stack: ExitStack, wd: Path, config: Dict, views: Tuple[View, ...] = ()):
        self.exporter = Exporter(wd, config).start()
        stack.callback(self.exporter.stop)
        self.prom = Prometheus(wd, self.exporter.url, views=views).start()
        stack.callback(self.prom.stop)
        self.watch = AlertWatch(self.prom).start()
        stack.callback(self.watch.stop)


# --------------------------------------------------------------------------
# Spark drivers


class SparkDriver:
    """lab/apps/spark_app.py in its own process group; reads its READY and EVENT lines."""

    def __init__(self, wd: Path, mode: str, args: List[str] = (), user: Optional[str] = None,
                 nproc: Optional[int] = None, tag: Optional[str] = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mode = mode
        tag = tag or mode
        self.app_name = f"lab-{tag}-{self.port}"
        self.log = wd / f"spark-{tag}.log"
        self.events: List[tuple] = []
        self.app_id: Optional[str] = None
        self.ready = threading.Event()
        self.home: Optional[Path] = None
        py = str(SPARK_PYTHON)
        env = loopback_env()  # the venv's pyspark finds its own SPARK_HOME
        env.update(PYSPARK_PYTHON=py, PYSPARK_DRIVER_PYTHON=py, PYTHONUNBUFFERED="1")
        cmd = [py, str(SPARK_APP), "--mode", mode, "--ui-port", str(self.port), "--app-name", self.app_name, *args]
        if user is not None:
            home = Path(tempfile.mkdtemp(prefix="sparkwatch-lab-home-"))
            self.home = home
            pw = pwd.getpwnam(user)
            os.chown(home, pw.pw_uid, pw.pw_gid)
            env.update(HOME=str(home), USER=user, LOGNAME=user)
            cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"] + cmd
        if nproc is not None:
            cmd = ["prlimit", f"--nproc={nproc}:{nproc}", "--"] + cmd
        self.proc = start(cmd, self.log, env=env, stdout=subprocess.PIPE,
                          cwd=str(self.home) if user is not None else str(wd))
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        with open(self.log, "a") as f:
            for line in self.proc.stdout:  # type: ignore[union-attr]
                f.write(line)
                f.flush()
                if line.startswith("LAB READY "):
                    self.app_id = line.split()[2]
                    self.ready.set()
                elif line.startswith("LAB EVENT "):
                    parts = line.rstrip("\n").split(" ", 4)
                    self.events.append((float(parts[2]), parts[3], parts[4] if len(parts) > 4 else ""))

    def wait_ready(self, timeout: float = 240) -> "SparkDriver":
        end = time.monotonic() + timeout
        while not self.ready.wait(0.5):
            if self.proc.poll() is not None:
                raise LabError(f"Spark driver ({self.mode}) exited with {self.proc.returncode}" + tail(self.log))
            if time.monotonic() > end:
                raise LabError(f"Spark driver ({self.mode}) not ready within {timeout:.0f}s" + tail(self.log))
        return self

    def event(self, name: str) -> Optional[tuple]:
        for e in self.events:
            if e[1] == name:
                return e
        return None

    def jvm_pid(self) -> Optional[int]:
        """The driver JVM (SparkSubmit) started by this driver's Python."""
        for p in psutil.process_iter(["cmdline"]):
            args = p.info["cmdline"] or []
            if "org.apache.spark.deploy.SparkSubmit" in args and f"spark.app.name={self.app_name}" in args:
                return p.pid
        return None

    def stop(self) -> None:
        kill(self.proc)
        if getattr(self, "home", None) is not None:
            shutil.rmtree(self.home, ignore_errors=True)


def shared_dir(stack: ExitStack, name: str) -> Path:
    """A directory other users can read, directly under the temp dir (the lab's work
    directory may sit under a 0700 one, e.g. pytest's), removed when the stack closes."""
    d = Path(tempfile.mkdtemp(prefix=f"sparkwatch-lab-{name}-"))
    os.chmod(d, 0o755)
    stack.callback(shutil.rmtree, d, True)
    return d


def spark_targets(drv: SparkDriver, attach: bool = False, name: str = "driver") -> Dict:
    """The exporter's targets for a driver: its UI, and its JVM on this host."""
    return {
        "spark": [{"name": name, "url": drv.url, "timeout": 5}],
        "jvm": [{"name": name, "match": rf"spark\.app\.name={re.escape(drv.app_name)}\b", "attach": attach,
                 "attach_interval": 1}],
    }


def jcmd(pid: int, *cmd: str) -> str:
    r = subprocess.run(["jcmd", str(pid), *cmd], capture_output=True, text=True, timeout=30)
    return r.stdout


def busy_livy(srv, stop: threading.Event) -> None:
    """20 Livy sessions running at any time; each finishes after 10 s and is deleted 10 s later."""
    born: Dict[int, float] = {}
    while not stop.is_set():
        now = time.monotonic()
        with srv.lock:
            sess = srv.state.sessions["batch"]
            for sid, t in list(born.items()):
                if now - t > 20:
                    sess.pop(sid, None)
                    born.pop(sid)
                elif now - t > 10:
                    sess[sid]["state"] = "success"
            while sum(1 for s in sess.values() if s["state"] == "running") < 20:
                (sid,) = srv.state.add("batch", 1, state="running")
                born[sid] = now
        stop.wait(0.5)

