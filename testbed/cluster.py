"""A real Spark standalone cluster on loopback: a master and workers from the
pyspark a venv has, whose executors are separate JVMs
(``CoarseGrainedExecutorBackend``, with ``--app-id`` and ``--executor-id`` on
their command lines).

Everything binds and advertises loopback only: ``SPARK_LOCAL_IP=127.0.0.1``
and ``SPARK_LOCAL_HOSTNAME=localhost`` for the master, the workers and (in
testbed.spark) every application; the master's and workers' web UIs take free
ports.

    with standalone_cluster("4.0") as c:
        c.master_url   # spark://127.0.0.1:P   (for spark-submit / --master)
        c.web_url      # http://127.0.0.1:W    (the master's web UI: discover: standalone)
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import psutil
import requests

from .procs import free_ports, stop_process_group
from .spark import SPARK_PYTHONS, loopback_env, spark_home


@dataclass
class Cluster:
    version: str
    spark_home: str
    master_url: str
    web_url: str
    worker_web_urls: List[str] = field(default_factory=list)
    logs: List[str] = field(default_factory=list)
    work_dir: str = ""

    def log_tail(self, n: int = 30) -> str:
        out = []
        for p in self.logs:
            try:
                out.append(f"--- {p}\n" + "".join(Path(p).read_text(errors="replace").splitlines(True)[-n:]))
            except OSError:
                pass
        return "\n".join(out)

    def state(self) -> dict:
        return requests.get(self.web_url + "/json/", timeout=10).json()


def _start(cmd: List[str], env: dict, log_prefix: str, logs: List[str]) -> subprocess.Popen:
    log = tempfile.NamedTemporaryFile(prefix=log_prefix, suffix=".log", delete=False)
    logs.append(log.name)
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)


@contextmanager
def standalone_cluster(version: str = "4.0", workers: int = 1, worker_cores: int = 2,
                       worker_memory: str = "3g", python: Optional[Path] = None,
                       master_conf: Optional[Dict[str, str]] = None,
                       timeout: float = 180.0) -> Iterator[Cluster]:
    """A master and ``workers`` workers; yields once every worker has registered. ``master_conf``:
    Spark settings of the master alone (``SPARK_MASTER_OPTS``), e.g. ``spark.ui.reverseProxy``."""
    python = python or SPARK_PYTHONS[version]
    home = spark_home(python)
    env = loopback_env(home)
    env.update(PYSPARK_PYTHON=str(python))
    spark_class = os.path.join(home, "bin", "spark-class")
    port, web, *worker_webs = free_ports(2 + workers)
    work_dir = tempfile.mkdtemp(prefix="sparkwatch-cluster-")
    os.chmod(work_dir, 0o755)
    c = Cluster(version, home, f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web}", work_dir=work_dir)
    procs: List[subprocess.Popen] = []
    with ExitStack() as stack:
        def stop_all():
            for p in reversed(procs):
                stop_process_group(p, grace=15)

        stack.callback(stop_all)
        master_env = dict(env)
        if master_conf:
            master_env["SPARK_MASTER_OPTS"] = " ".join(f"-D{k}={v}" for k, v in master_conf.items())
        procs.append(_start([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                             "--port", str(port), "--webui-port", str(web)], master_env, "spark-master-", c.logs))
        _wait(lambda: requests.get(c.web_url + "/json/", timeout=5).status_code == 200, timeout,
              "the master's web UI", c, procs)
        for wweb in worker_webs:
            c.worker_web_urls.append(f"http://127.0.0.1:{wweb}")
            procs.append(_start([spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                                 "--cores", str(worker_cores), "--memory", worker_memory, "--webui-port",
                                 str(wweb), "--work-dir", work_dir, c.master_url], env, "spark-worker-", c.logs))
        _wait(lambda: sum(1 for w in c.state().get("workers", []) if w.get("state") == "ALIVE") >= workers,
              timeout, f"{workers} alive worker(s)", c, procs)
        yield c


def _wait(check, timeout: float, what: str, c: Cluster, procs: List[subprocess.Popen]) -> None:
    end = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (requests.RequestException, ValueError):
            pass
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"a cluster process exited with {p.returncode} waiting for {what}:\n"
                                   + c.log_tail())
        if time.monotonic() > end:
            raise RuntimeError(f"no {what} within {timeout:.0f}s:\n" + c.log_tail())
        time.sleep(0.5)


# --------------------------------------------------------------------------
# The lab's executor-side leaks: Java UDFs (testbed/sparkjars/*.java) in a jar


SPARKJARS = Path(__file__).resolve().parent / "sparkjars"


def lab_udf_jar(dest: Path, python: Optional[Path] = None) -> Path:
    """Compile ``testbed/sparkjars/*.java`` against the Spark jars of the venv's pyspark
    and package them as ``dest/sparkwatch-lab-udfs.jar`` (for ``--jars`` and
    ``spark.udf.registerJavaFunction``)."""
    home = spark_home(python or SPARK_PYTHONS["4.0"])
    classes = Path(dest) / "classes"
    classes.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p) for p in SPARKJARS.glob("*.java"))
    subprocess.run(["javac", "-nowarn", "--release", "17", "-cp", os.path.join(home, "jars", "*"), "-d", str(classes),
                    *sources], check=True, capture_output=True, text=True, timeout=300)
    jar = Path(dest) / "sparkwatch-lab-udfs.jar"
    subprocess.run(["jar", "cf", str(jar), "-C", str(classes), "."], check=True, capture_output=True, text=True,
                   timeout=120)
    return jar


def executor_pids(app_id: str) -> List[int]:
    """The executor JVMs (CoarseGrainedExecutorBackend) of application ``app_id`` on this host."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        args = p.info["cmdline"] or []
        if "org.apache.spark.executor.CoarseGrainedExecutorBackend" in args and "--app-id" in args:
            i = args.index("--app-id")
            if i + 1 < len(args) and args[i + 1] == app_id:
                out.append(p.pid)
    return sorted(out)
