"""The scenarios: each reproduces one war story on real software and watches the
shipped alerts catch it. Each returns one or more :class:`~lab.core.Result`."""

from __future__ import annotations

import json
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
from typing import Callable, Dict, List, Optional

from testbed.jvm import compile_apps, os_user, running_jvm, threads_of_uid
from testbed.livy_server import livy_server
from testbed.zookeeper import ZooKeeperServer, batch_record, write_livy_store

from .core import (
    LAB,
    SPARK_PYTHON,
    AlertWatch,
    Expect,
    Exporter,
    LabError,
    Prometheus,
    Result,
    evaluate,
    free_port,
    kill,
    log,
    start,
    wait_for,
)

SPARK_APP = LAB / "apps" / "spark_app.py"


class Stack:
    """Exporter + Prometheus + alert watcher for one scenario, stopped in reverse order."""

    def __init__(self, stack: ExitStack, wd: Path, config: Dict):
        self.exporter = Exporter(wd, config).start()
        stack.callback(self.exporter.stop)
        self.prom = Prometheus(wd, self.exporter.url).start()
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
        env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARK_LOCAL_HOSTNAME="localhost", PYSPARK_PYTHON=py, PYSPARK_DRIVER_PYTHON=py,
                   PYTHONUNBUFFERED="1")
        env.pop("SPARK_HOME", None)
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
                raise LabError(f"Spark driver ({self.mode}) exited with {self.proc.returncode}" + _tail(self.log))
            if time.monotonic() > end:
                raise LabError(f"Spark driver ({self.mode}) not ready within {timeout:.0f}s" + _tail(self.log))
        return self

    def event(self, name: str) -> Optional[tuple]:
        for e in self.events:
            if e[1] == name:
                return e
        return None

    def jvm_pid(self) -> Optional[int]:
        """The driver JVM (SparkSubmit) started by this driver's Python."""
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    args = f.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if "org.apache.spark.deploy.SparkSubmit" in args and f"spark.app.name={self.app_name}" in args:
                return int(d)
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


def _tail(p: Path) -> str:
    from .core import tail

    return tail(p)


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


# --------------------------------------------------------------------------
# S1: Livy sessions pile up


def s1(wd: Path) -> List[Result]:
    rate = 1.0  # batches submitted per second, never DELETEd
    capacity = 300  # finished sessions the stand-in's "heap" holds before it fails
    res = Result("S1", "Livy sessions pile up",
                 trouble=f"a scheduler submits {rate:g} batch/s to the Livy stand-in and never DELETEs them",
                 failure=f"Livy out of memory, refuses every request ({capacity} sessions held)",
                 lead_meaning="the failure is the stand-in refusing every request (HTTP 500, "
                              "OutOfMemoryError) once it holds its capacity of sessions; the stand-in has no "
                              "heap, so this capacity stands for Livy's",
                 started_at=time.time())
    with ExitStack() as stack:
        srv = stack.enter_context(livy_server())
        srv.thread_dump_enabled = True
        st = Stack(stack, wd, {"livy": [{"name": "livy", "url": srv.url, "timeout": 5, "finished_retention": 60}]})
        res.trouble_at = time.time()
        stop = threading.Event()

        def scheduler():
            pending = []
            while not stop.is_set():
                with srv.lock:
                    (sid,) = srv.state.add("batch", 1, state="running")
                    pending.append((time.monotonic() + 3, sid))
                    while pending and pending[0][0] <= time.monotonic():
                        srv.state.sessions["batch"][pending.pop(0)[1]]["state"] = "success"
                    held = len(srv.state.sessions["batch"])
                if held >= capacity and res.failure_at is None:
                    srv.fault = "500"  # java.lang.OutOfMemoryError: GC overhead limit exceeded
                    res.failure_at = time.time()
                    log(f"S1: Livy holds {held} sessions: out of memory, it refuses every request")
                stop.wait(1 / rate)

        t = threading.Thread(target=scheduler, daemon=True)
        t.start()
        stack.callback(t.join, 5)
        stack.callback(stop.set)
        wait_for("S1 failure", lambda: res.failure_at, capacity / rate + 120)
        st.watch.wait(["LivyTargetDown"], 90)
        return [evaluate(res, st.watch, [Expect("LivyFinishedSessionsNotCollected"),
                                         Expect("LivyFinishedSessionsPilingUp"),
                                         Expect("LivyTargetDown", "after")])]


# --------------------------------------------------------------------------
# S2: a Livy restart becomes impossible


def s2(wd: Path) -> List[Result]:
    from kazoo.client import KazooClient

    if os.geteuid() != 0:
        raise LabError("S2 needs root: it creates a dedicated user (root ignores RLIMIT_NPROC)")
    limit = 400  # RLIMIT_NPROC of the Livy user
    in_use = 60  # threads the Livy JVM runs (Jetty, monitors, ...)
    initial, rate = 150, 1.0  # sessions in the store at the start; sessions added per second
    res = Result("S2", "Livy restart becomes impossible",
                 trouble=f"Livy's ZooKeeper store grows by {rate:g} session/s from {initial}; the Livy JVM "
                         f"runs {in_use} threads under RLIMIT_NPROC={limit} as its own user",
                 failure="restart impossible: stored sessions + threads in use >= RLIMIT_NPROC",
                 lead_meaning="how long before a restart became impossible the alert fired; that moment is "
                              "measured (ZooKeeper numChildren + the user's threads in /proc against the limit), "
                              "then confirmed by really restarting: a JVM under the same user and limit that "
                              "starts one thread per recovered session dies with \"unable to create native "
                              "thread\"",
                 started_at=time.time())
    with ExitStack() as stack:
        classes = compile_apps(shared_dir(stack, "classes"))
        zk = ZooKeeperServer(wd / "zk")
        stack.callback(zk.stop)
        zk.start()
        user = stack.enter_context(os_user("swlab"))
        uid = pwd.getpwnam(user).pw_uid
        livy_jvm = stack.enter_context(running_jvm(classes, "Workload", args=["lab-livy-server"], user=user,
                                                   nproc=limit))
        livy_jvm.command(f"threads {in_use}")
        srv = stack.enter_context(livy_server())
        client = KazooClient(hosts=zk.hosts, timeout=10)
        client.start(timeout=30)
        stack.callback(client.stop)
        write_livy_store(client, "livy", "batch", initial)
        srv.state.add("batch", initial, state="success")
        cfg = {
            "livy": [{"name": "livy", "url": srv.url, "timeout": 5, "process": "livy"}],
            "zookeeper": [{"name": "zk", "hosts": [zk.hosts], "livy_state_store": {"process": "livy"}}],
            "jvm": [{"name": "livy", "match": r"\bWorkload\b.*lab-livy-server"}],
        }
        st = Stack(stack, wd, cfg)
        res.trouble_at = time.time()
        stored = initial
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            client.create(f"/livy/v1/batch/{stored}", batch_record(stored))
            client.set("/livy/v1/batch/state", json.dumps({"nextSessionId": stored + 1}).encode())
            srv.state.add("batch", 1, state="success")
            stored += 1
            n = client.get_children("/livy/v1/batch")
            sessions = len(n) - 1
            threads = threads_of_uid(uid)
            if res.failure_at is None and sessions + threads >= limit:
                res.failure_at = time.time()
                log(f"S2: {sessions} stored sessions + {threads} threads >= {limit}: a restart would fail now")
            if res.failure_at and st.watch.first("LivyRestartWouldExhaustThreads") \
                    and time.time() - res.failure_at > 5:
                break
            time.sleep(1 / rate)
        # the proof: restart Livy (a JVM under the same user and limit that starts one thread
        # per recovered session on top of what it ran before)
        sessions = len(client.get_children("/livy/v1/batch")) - 1
        before = threads_of_uid(uid)
        livy_jvm.kill()
        with running_jvm(classes, "Workload", args=["lab-livy-restart"], user=user, nproc=limit) as again:
            out = again.command(f"threads {before + sessions}")
        failed = "failed=true" in out
        res.notes.append(f"restart with {sessions} stored sessions (+{before} threads before): "
                         + ("died with OutOfMemoryError: unable to create native thread" if failed
                            else f"succeeded?! ({out})"))
        if not failed:
            res.problems.append("the restart did not fail: the failure point was not real")
        return [evaluate(res, st.watch, [Expect("LivyRestartRiskRising"),
                                         Expect("LivyRestartWouldExhaustThreads")])]


# --------------------------------------------------------------------------
# S5: loaded classes and the code cache


def s5(wd: Path) -> List[Result]:
    size = "32m"
    res = Result("S5-local", "code cache fills in a local-mode driver, JIT disabled",
                 trouble=f"a Spark driver (-XX:ReservedCodeCacheSize={size}, -XX:-SegmentedCodeCache, "
                         "-XX:-UseCodeCacheFlushing) runs a loop of queries with distinct expressions",
                 failure="JIT disabled (`jcmd Compiler.codecache`: \"compilation: disabled\")",
                 lead_meaning="the failure is the first time jcmd, polled every second, reports the JIT "
                              "disabled",
                 started_at=time.time())
    with ExitStack() as stack:
        drv = SparkDriver(wd, "codecache", ["--java-opts",
                                            f"-XX:ReservedCodeCacheSize={size} -XX:-SegmentedCodeCache "
                                            "-XX:-UseCodeCacheFlushing"])
        stack.callback(drv.stop)
        drv.wait_ready()
        pid = wait_for("driver JVM", drv.jvm_pid, 30)
        st = Stack(stack, wd, spark_targets(drv, attach=True))
        res.trouble_at = time.time()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and res.failure_at is None:
            if drv.proc.poll() is not None:
                raise LabError("the S5 driver exited" + _tail(drv.log))
            out = jcmd(pid, "Compiler.codecache")
            if "compilation: disabled" in out:
                res.failure_at = time.time()
                log("S5: " + " ".join(ln.strip() for ln in out.splitlines() if "CodeCache" in ln or "compilation" in ln))
            time.sleep(1)
        if res.failure_at is None:
            res.problems.append("the JIT was never disabled")
        st.watch.wait(["JvmJitCompilationDisabled"], 90)
        return [evaluate(res, st.watch, [Expect("JvmCodeCachePredictedFull"), Expect("JvmCodeCacheNearlyFull"),
                                         Expect("JvmJitCompilationDisabled", "after")])]


# --------------------------------------------------------------------------
# S4: a stalled query, a dead driver


def s4(wd: Path) -> List[Result]:
    stall = Result("S4a", "streaming query stalls",
                   trouble="the query's foreachBatch blocks forever; input keeps arriving",
                   failure="the stall itself (a batch that never ends)",
                   lead_meaning="no lead time: the failure is the stall; the figure is the time to detect it",
                   started_at=time.time())
    dead = Result("S4b", "driver dies",
                  trouble="the driver process is killed (as by the OOM killer)",
                  failure="the driver is gone",
                  lead_meaning="no lead time: the failure is the exit; the figure is the time to detect it",
                  started_at=time.time())
    with ExitStack() as stack:
        drv = SparkDriver(wd, "stall", ["--stall-after", "45"])
        stack.callback(drv.stop)
        drv.wait_ready()
        st = Stack(stack, wd, spark_targets(drv))
        ev = wait_for("the stall", lambda: drv.event("stall"), 180, alive=drv.proc, logfile=drv.log)
        stall.trouble_at = stall.failure_at = ev[0]
        st.watch.wait(["SparkStreamingQueryStalled"], 180)
        evaluate(stall, st.watch, [Expect("SparkStreamingQueryStalled", "after")])
        # the driver dies
        dead.started_at = time.time()
        dead.trouble_at = dead.failure_at = time.time()
        drv.stop()
        log("S4: driver killed")
        seen = set(st.watch.fired)
        st.watch.wait(["SparkTargetDown"], 120)
        # the alerts of the first case are not those of the second: a fresh watch view
        sub = _Since(st.watch, seen)
        evaluate(dead, sub, [Expect("SparkTargetDown", "after")])
        return [stall, dead]


class _Since:
    """The alerts a watch saw after a set of alerts it had already seen."""

    def __init__(self, watch: AlertWatch, seen):
        self.fired = {k: v for k, v in watch.fired.items() if k not in seen}

    def first(self, name):
        got = [f for f in self.fired.values() if f.alertname == name]
        return min(got, key=lambda f: f.fired_at) if got else None

    def names(self):
        return sorted({f.alertname for f in self.fired.values()})


# --------------------------------------------------------------------------
# S3: leaks with flat state


def oom_event(drv: SparkDriver) -> Optional[tuple]:
    """The first OutOfMemoryError the driver reported: the leaking code's own, or the one
    that killed the query (whichever thread got it first)."""
    for e in drv.events:
        if e[1] == "failure" or (e[1] == "query-terminated" and re.search(r"OutOfMemory|heap space|native thread",
                                                                           e[2])):
            return e
    return None


def wait_for_oom(drv: SparkDriver, res: Result, watch: AlertWatch) -> None:
    """Wait (at most 15 minutes) until the leaking driver reports an OutOfMemoryError or
    exits; record that as ``res``'s failure, then give SparkTargetDown a minute to fire."""
    wait_for("the OutOfMemoryError", lambda: oom_event(drv) or drv.proc.poll() is not None, 900)
    ev = oom_event(drv)
    res.failure_at = ev[0] if ev else time.time()
    res.notes.append(f"failure: {ev[2]}" if ev else
                     f"the driver exited ({drv.proc.returncode}) without reporting the error")
    watch.wait(["SparkTargetDown"], 60)


def s3_heap(wd: Path) -> List[Result]:
    res = Result("S3a-local", "heap leak with flat state, in a local-mode driver",
                 trouble="a stateful query (20 keys: flat state rows) whose foreachBatch keeps 5 MB in the "
                         "driver JVM every 5 s batch; -Xmx512m",
                 failure="`OutOfMemoryError: Java heap space` in the driver",
                 lead_meaning="the failure is the first OutOfMemoryError the leaking code gets",
                 started_at=time.time())
    with ExitStack() as stack:
        drv = SparkDriver(wd, "leak-heap", ["--leak-bytes", str(5 * 1024 * 1024)])
        stack.callback(drv.stop)
        drv.wait_ready()
        res.trouble_at = time.time()
        st = Stack(stack, wd, spark_targets(drv))
        wait_for_oom(drv, res, st.watch)
        return [evaluate(res, st.watch, [Expect("SparkHeapFloorRisingWithFlatState")])]


def s3_threads(wd: Path) -> List[Result]:
    if os.geteuid() != 0:
        raise LabError("S3b needs root: it creates a dedicated user (root ignores RLIMIT_NPROC)")
    limit = 1000
    res = Result("S3b-local", "thread leak (unclosed clients), in a local-mode driver",
                 trouble=f"a stateful query whose foreachBatch starts 10 threads (java.util.Timer, never "
                         f"cancelled) every 5 s batch; the driver runs as its own user, RLIMIT_NPROC={limit}",
                 failure="`OutOfMemoryError: unable to create native thread` in the driver",
                 lead_meaning="the failure is the first OutOfMemoryError the leaking code gets",
                 started_at=time.time())
    with ExitStack() as stack:
        user = stack.enter_context(os_user("swlab"))
        drv = SparkDriver(wd, "leak-threads", ["--leak-threads", "10"], user=user, nproc=limit)
        stack.callback(drv.stop)
        drv.wait_ready()
        res.trouble_at = time.time()
        st = Stack(stack, wd, spark_targets(drv))
        wait_for_oom(drv, res, st.watch)
        return [evaluate(res, st.watch, [Expect("JvmThreadsPredictedToHitLimit"), Expect("JvmThreadsLeaking")])]



# --------------------------------------------------------------------------
# The healthy baseline: nothing may fire


def baseline(wd: Path, minutes: float = 10.0) -> List[Result]:
    res = Result("baseline-local", "healthy local-mode service",
                 trouble=f"a healthy stateful streaming application and a busy Livy whose clients delete "
                         f"finished sessions, watched for {minutes:g} minutes",
                 failure="none",
                 lead_meaning="no alert may fire (false-positive check)",
                 started_at=time.time())
    with ExitStack() as stack:
        drv = SparkDriver(wd, "healthy")
        stack.callback(drv.stop)
        srv = stack.enter_context(livy_server())
        drv.wait_ready()
        cfg = spark_targets(drv, attach=True)
        cfg["livy"] = [{"name": "livy", "url": srv.url, "timeout": 5}]
        st = Stack(stack, wd, cfg)
        res.trouble_at = time.time()
        stop = threading.Event()

        def busy_livy():
            # 20 sessions running at any time; each finishes after 10 s and is deleted 10 s later
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

        t = threading.Thread(target=busy_livy, daemon=True)
        t.start()
        stack.callback(t.join, 5)
        stack.callback(stop.set)
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            if drv.proc.poll() is not None:
                res.problems.append(f"the healthy driver exited ({drv.proc.returncode})")
                break
            time.sleep(2)
        # the rules read the exporter's series: make sure they were there (silence must not be blindness)
        for metric in ("spark_streaming_state_rows", "spark_driver_jvm_heap_used_bytes", "jvm_threads_live",
                       "jvm_codecache_used_bytes", "livy_sessions"):
            if not st.prom.query(f"count_over_time({metric}[{int(minutes * 60)}s])"):
                res.problems.append(f"Prometheus has no {metric}: the silence would prove nothing")
        return [evaluate(res, st.watch, [], forbid_all=True)]





# --------------------------------------------------------------------------
# The cluster: the signatures where they happened, in the executors of a real standalone
# cluster, next to a busy healthy service and short applications coming and going. One
# cluster, one exporter (discover: standalone, JVM discovery) and one Prometheus for all of
# them, as in production; each alert belongs to the scenario whose application (app_id) or
# JVM (pid) it names, and everything else to the baseline, which must stay silent.

EXECUTOR_MEMORY = "512m"
HEAP_LEAK_BYTES = 40 * 1024  # per row, 20 rows/s: about 0.8 MB/s in a 512 MB executor
THREAD_LEAK_EVERY = 10  # one thread every 10th row, 20 rows/s: 2 threads/s
THREAD_HEADROOM = 900  # pids.max of the leaking executor's cgroup: its threads + this
CODE_CACHE = "-XX:ReservedCodeCacheSize=32m -XX:-SegmentedCodeCache -XX:-UseCodeCacheFlushing"
PIDS_CGROUP = Path("/sys/fs/cgroup/pids")


#: the jar of testbed/sparkjars (set by :func:`cluster`)
_JAR: List[Path] = []


def _cluster_conf(extra: Optional[Dict[str, str]] = None, periodic_gc: bool = True) -> List[str]:
    conf = {"spark.executor.memory": EXECUTOR_MEMORY, "spark.executor.cores": "1", "spark.cores.max": "1",
            "spark.deploy.maxExecutorRetries": "20"}
    if _JAR and periodic_gc:
        # a full GC every 15 s in every executor (testbed/sparkjars/PeriodicGc.java): what
        # spark.cleaner.periodicGC.interval does in the drivers, which Spark does not do in executors
        conf.update({"spark.plugins": "sparkwatch.lab.PeriodicGc", "spark.sparkwatch.lab.executorGcSeconds": "15",
                     "spark.executor.extraClassPath": str(_JAR[0]), "spark.driver.extraClassPath": str(_JAR[0])})
    conf.update(extra or {})
    out: List[str] = []
    for k, v in conf.items():
        out += ["--conf", f"{k}={v}"]
    return out


class _Claims:
    """Which scenario an alert belongs to: by the app_id it names, or the pid of a JVM."""

    def __init__(self):
        self.apps: Dict[str, set] = {}
        self.pids: Dict[str, set] = {}
        self.lock = threading.Lock()

    def claim(self, scen: str, app_id: Optional[str] = None, pids=()) -> None:
        with self.lock:
            if app_id:
                self.apps.setdefault(scen, set()).add(app_id)
            self.pids.setdefault(scen, set()).update(int(p) for p in pids if p)

    def owner(self, labels: Dict[str, str]) -> Optional[str]:
        with self.lock:
            for scen, ids in self.apps.items():
                if labels.get("app_id") and labels["app_id"] in ids:
                    return scen
            pid = labels.get("pid")
            for scen, pids in self.pids.items():
                if pid and pid.isdigit() and int(pid) in pids:
                    return scen
        return None


class _View:
    """The alerts of a watch that ``keep(labels)`` selects, as :func:`evaluate` reads them."""

    def __init__(self, watch: AlertWatch, keep: Callable[[Dict[str, str]], bool]):
        self.fired = {k: v for k, v in list(watch.fired.items()) if keep(v.labels)}

    def first(self, name):
        got = [f for f in self.fired.values() if f.alertname == name]
        return min(got, key=lambda f: f.fired_at) if got else None

    def names(self):
        return sorted({f.alertname for f in self.fired.values()})


def _executor(drv: SparkDriver, timeout: float = 180) -> int:
    from testbed.cluster import executor_pids

    pids = wait_for(f"the executor of {drv.app_id}", lambda: executor_pids(drv.app_id or ""), timeout,
                    alive=drv.proc, logfile=drv.log)
    return pids[0]


def _executor_logs(cl, app_id: str, pid: int) -> List[Path]:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        eid = args[args.index("--executor-id") + 1]
    except (OSError, ValueError, IndexError):
        return []
    d = Path(cl.work_dir) / app_id / eid
    return [d / "stderr", d / "stdout"]


def _grep(paths: List[Path], pattern: str) -> Optional[str]:
    for p in paths:
        try:
            text = p.read_text(errors="replace")
        except OSError:
            continue
        m = re.search(pattern, text)
        if m:
            line = text[text.rfind("\n", 0, m.start()) + 1:text.find("\n", m.end()) if "\n" in text[m.end():]
                        else len(text)]
            return line.strip()[:200]
    return None


def _wait_executor_failure(res: Result, cl, drv: SparkDriver, pid: int, pattern: str, timeout: float) -> None:
    """Until the executor's log shows ``pattern`` or the executor exits: that is the failure."""
    logs = _executor_logs(cl, drv.app_id or "", pid)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = _grep(logs, pattern)
        if line:
            res.failure_at = time.time()
            res.notes.append(f"executor {pid}: {line}")
            break
        if not os.path.exists(f"/proc/{pid}"):
            res.failure_at = time.time()
            line = _grep(logs, pattern)
            res.notes.append(f"executor {pid} exited" + (f": {line}" if line else " (no OutOfMemoryError in its log)"))
            break
        if drv.proc.poll() is not None:
            raise LabError(f"the driver of {drv.app_id} exited" + _tail(drv.log))
        time.sleep(1)
    if res.failure_at is None:
        res.problems.append(f"the executor did not fail within {timeout:.0f}s")
    else:
        log(f"{res.scenario}: the executor failed: {res.notes[-1]}")


def _c3_heap(wd: Path, cl, jar: Path, claims: _Claims, watch: AlertWatch) -> List[Result]:
    res = Result("S3a", "heap leak in an executor, flat state",
                 trouble=f"a stateful query (20 keys: flat state rows) on the cluster whose Java UDF keeps "
                         f"{HEAP_LEAK_BYTES // 1024} KB per row (20 rows/s) in its executor JVM; "
                         f"spark.executor.memory={EXECUTOR_MEMORY}",
                 failure="`OutOfMemoryError: Java heap space` in the executor",
                 lead_meaning="the failure is the first OutOfMemoryError in the executor's log (or its exit)",
                 started_at=time.time())
    with ExitStack() as stack:
        drv = SparkDriver(wd, "healthy", tag="cluster-heap", args=["--master", cl.master_url, "--jars", str(jar),
                                                "--udf", f"heap:{HEAP_LEAK_BYTES}", *_cluster_conf()])
        stack.callback(drv.stop)
        drv.wait_ready()
        res.trouble_at = time.time()
        pid = _executor(drv)
        claims.claim("S3a", drv.app_id, [pid, drv.jvm_pid()])
        _wait_executor_failure(res, cl, drv, pid, r"OutOfMemoryError", 900)
        expects = [Expect("JvmHeapFloorRisingWithFlatState", min_lead_share=0.25)]
        return [evaluate(res, _View(watch, lambda lb: claims.owner(lb) == "S3a"), expects)]


def _c3_threads(wd: Path, cl, jar: Path, claims: _Claims, watch: AlertWatch) -> List[Result]:
    res = Result("S3b", "thread leak in an executor (unclosed clients)",
                 trouble=f"a stateful query on the cluster whose Java UDF starts a thread (parked, never "
                         f"stopped) every {THREAD_LEAK_EVERY}th row (20 rows/s); the executor in a pids cgroup "
                         f"with room for {THREAD_HEADROOM} more threads",
                 failure="`OutOfMemoryError: unable to create native thread` in the executor",
                 lead_meaning="the failure is the first OutOfMemoryError in the executor's log (or its exit)",
                 started_at=time.time())
    with ExitStack() as stack:
        drv = SparkDriver(wd, "healthy", tag="cluster-threads", args=["--master", cl.master_url, "--jars", str(jar),
                                                   "--udf", f"threads:{THREAD_LEAK_EVERY}", *_cluster_conf()])
        stack.callback(drv.stop)
        drv.wait_ready()
        res.trouble_at = time.time()
        pid = _executor(drv)
        claims.claim("S3b", drv.app_id, [pid, drv.jvm_pid()])
        cg = PIDS_CGROUP / f"sparkwatch-lab-{pid}"
        cg.mkdir()
        stack.callback(_remove_cgroup, cg)
        threads = len(os.listdir(f"/proc/{pid}/task"))
        (cg / "pids.max").write_text(str(threads + THREAD_HEADROOM))
        (cg / "cgroup.procs").write_text(str(pid))
        res.notes.append(f"executor {pid}: {threads} threads, pids.max {threads + THREAD_HEADROOM}")
        _wait_executor_failure(res, cl, drv, pid, r"unable to create (new )?native thread", 900)
        expects = [Expect("JvmThreadsPredictedToHitLimit", min_lead_share=0.25), Expect("JvmThreadsLeaking")]
        return [evaluate(res, _View(watch, lambda lb: claims.owner(lb) == "S3b"), expects)]


def _remove_cgroup(cg: Path) -> None:
    for _ in range(30):
        try:
            for pid in (cg / "cgroup.procs").read_text().split():
                try:
                    (PIDS_CGROUP / "cgroup.procs").write_text(pid)
                except OSError:
                    pass
            cg.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(1)


def _c4_query_dies(wd: Path, cl, claims: _Claims, watch: AlertWatch) -> List[Result]:
    res = Result("S4c", "streaming query dies, its driver lives",
                 trouble="on the cluster, the query's foreachBatch raises: the query terminates, its driver "
                         "and SparkContext go on",
                 failure="the query's death (its driver logs it)",
                 lead_meaning="no lead time: the failure is the query's death; the figure is the time to detect it",
                 started_at=time.time())
    with ExitStack() as stack:
        drv = SparkDriver(wd, "die-query", ["--master", cl.master_url, "--stall-after", "60", *_cluster_conf()])
        stack.callback(drv.stop)
        drv.wait_ready()
        claims.claim("S4c", drv.app_id, [drv.jvm_pid()])
        ev = wait_for("the query's death", lambda: drv.event("query-terminated"), 240, alive=drv.proc,
                      logfile=drv.log)
        res.trouble_at = res.failure_at = ev[0]
        watch.wait(["SparkStreamingQueryTerminated"], 120,
                   stop=lambda: drv.proc.poll() is not None)
        if drv.proc.poll() is not None:
            res.problems.append("the driver died with its query")
        return [evaluate(res, _View(watch, lambda lb: claims.owner(lb) == "S4c"),
                         [Expect("SparkStreamingQueryTerminated", "after")])]


def _c5_codecache(wd: Path, cl, claims: _Claims, watch: AlertWatch) -> List[Result]:
    res = Result("S5", "code cache fills in an executor, JIT disabled",
                 trouble=f"on the cluster, a loop of queries with distinct expressions, code-generated and "
                         f"JIT-compiled in the executor (spark.executor.extraJavaOptions={CODE_CACHE})",
                 failure="the executor's JIT disabled (\"CodeCache is full. Compiler has been disabled\")",
                 lead_meaning="the failure is the first time the executor's log says its code cache is full "
                              "and the compiler disabled, or jcmd Compiler.codecache (every 10 s) says so",
                 started_at=time.time())
    with ExitStack() as stack:
        drv = SparkDriver(wd, "codecache", ["--master", cl.master_url,
                                            # no periodic full GC here: it unloads the generated
                                            # classes Spark's codegen cache has evicted, and their
                                            # code with them (S5's fix); S5's war story is code that
                                            # stays referenced
                                            *_cluster_conf({"spark.executor.extraJavaOptions": CODE_CACHE},
                                                           periodic_gc=False)])
        stack.callback(drv.stop)
        drv.wait_ready()
        res.trouble_at = time.time()
        pid = _executor(drv)
        claims.claim("S5", drv.app_id, [pid, drv.jvm_pid()])
        logs = _executor_logs(cl, drv.app_id or "", pid)
        end = time.monotonic() + 720
        n = 0
        while time.monotonic() < end and res.failure_at is None:
            if drv.proc.poll() is not None or not os.path.exists(f"/proc/{pid}"):
                raise LabError("the S5 driver or its executor exited" + _tail(drv.log))
            line = _grep(logs, r"CodeCache is full|[Cc]ompiler has been disabled")
            if line is None and n % 10 == 0 and "compilation: disabled" in jcmd(pid, "Compiler.codecache"):
                line = "jcmd Compiler.codecache: compilation: disabled"
            if line:
                res.failure_at = time.time()
                res.notes.append(f"executor {pid}: {line}")
                log(f"S5: {line}")
            n += 1
            time.sleep(1)
        if res.failure_at is None:
            res.problems.append("the executor's JIT was never disabled")
        watch.wait(["JvmJitCompilationDisabled"], 90)
        view = _View(watch, lambda lb: claims.owner(lb) == "S5")
        return [evaluate(res, view, [Expect("JvmCodeCachePredictedFull", min_lead_share=0.25),
                                     Expect("JvmCodeCacheNearlyFull"),
                                     Expect("JvmJitCompilationDisabled", "after")])]


#: what the cluster's spark-defaults.conf would give every application: the metrics sources
#: sparkwatch reads (the lab's own applications set them in lab/apps/spark_app.py)
SHORT_APP_DEFAULTS = {
    "spark.sql.streaming.metricsEnabled": "true",
    "spark.metrics.conf.*.source.jvm.class": "org.apache.spark.metrics.source.JvmSource",
}


def _short_apps(cl, stop: threading.Event, claims: _Claims, wd: Path, stats: Dict[str, int]) -> None:
    """pyspark's own examples submitted to the cluster one after the other: short applications."""
    from testbed.spark import loopback_env

    home = cl.spark_home
    examples = Path(home) / "examples" / "src" / "main" / "python"
    jobs = [("pi.py", ["4"]), ("pi.py", ["2"])]
    env = loopback_env(home)
    env.update(PYSPARK_PYTHON=str(SPARK_PYTHON), PYSPARK_DRIVER_PYTHON=str(SPARK_PYTHON))
    i = 0
    stop.wait(60)  # not while the scenarios' applications start: a short application is short
    while not stop.is_set():
        script, args = jobs[i % len(jobs)]
        i += 1
        name = f"lab-short-{i}"
        cmd = [os.path.join(home, "bin", "spark-submit"), "--master", cl.master_url, "--name", name,
               "--conf", f"spark.ui.port={free_port()}", "--conf", "spark.driver.host=127.0.0.1",
               *_cluster_conf(SHORT_APP_DEFAULTS), str(examples / script), *args]
        p = start(cmd, wd / "short-apps.log", env=env)
        end = time.monotonic() + 300
        while p.poll() is None and time.monotonic() < end:
            for d in _app_ids_of(name, cl):
                claims.claim("baseline", d)
            time.sleep(1)
        if p.poll() is None:
            stats["stuck"] = stats.get("stuck", 0) + 1
        kill(p)
        stats["ok" if p.returncode == 0 else "failed"] = stats.get("ok" if p.returncode == 0 else "failed", 0) + 1
        stop.wait(40)


def _app_ids_of(name: str, cl) -> List[str]:
    try:
        st = cl.state()
    except Exception:  # noqa: BLE001 - the master is busy: next time
        return []
    return [a["id"] for a in st.get("activeapps", []) + st.get("completedapps", []) if a.get("name") == name]


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


#: the busy service's trigger, seconds: lab/lab-rules.yml's trigger_interval for
#: SparkStreamingBatchSlowerThanTrigger
BUSY_TRIGGER_S = 10


def cluster(wd: Path, minutes: float = 10.0) -> List[Result]:
    """Every cluster scenario at once on one standalone cluster, next to the healthy baseline."""
    from testbed.cluster import lab_udf_jar, standalone_cluster

    base = Result("baseline", "healthy service on the cluster",
                  trouble=f"on the standalone cluster, a busy long-running service (a stateful streaming query, "
                          f"a mix of SQL queries, caching), pyspark's examples submitted one after the other "
                          f"(short applications), and a busy Livy whose clients delete finished sessions, "
                          f"watched for {minutes:g} minutes through discover: standalone and JVM discovery",
                  failure="none",
                  lead_meaning="no alert may fire (false-positive check)",
                  started_at=time.time())
    results: Dict[str, List[Result]] = {}
    with ExitStack() as stack:
        jar = lab_udf_jar(shared_dir(stack, "udfs"))
        _JAR[:] = [jar]
        cl = stack.enter_context(standalone_cluster("4.0", workers=1, worker_cores=8, worker_memory="8g"))
        log(f"cluster: master {cl.master_url}, web UI {cl.web_url}")
        srv = stack.enter_context(livy_server())
        claims = _Claims()
        cfg = {
            "spark": [{"name": "cluster", "url": cl.web_url, "discover": "standalone", "timeout": 5}],
            "jvm": [{"discover": True, "attach": True, "attach_interval": 3}],
            "livy": [{"name": "livy", "url": srv.url, "timeout": 5}],
        }
        st = Stack(stack, wd, cfg)
        # two cores: the SQL mix must not queue the streaming query's tasks (FAIR pools)
        # a 10 s trigger (lab-rules.yml's trigger_interval): the scenarios beside it load the two
        # cores so much that 5 s batches fell behind a 5 s trigger, truly
        busy = SparkDriver(wd, "busy", ["--master", cl.master_url, "--trigger-s", str(BUSY_TRIGGER_S),
                                        *_cluster_conf({"spark.executor.cores": "2", "spark.cores.max": "2",
                                                        "spark.scheduler.mode": "FAIR"})])
        stack.callback(busy.stop)
        busy.wait_ready()
        claims.claim("baseline", busy.app_id, [busy.jvm_pid()])
        base.trouble_at = time.time()
        stop = threading.Event()
        stats: Dict[str, int] = {}
        for target in (lambda: busy_livy(srv, stop), lambda: _short_apps(cl, stop, claims, wd, stats)):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            stack.callback(t.join, 30)
        stack.callback(stop.set)

        def lane(name: str, fns) -> None:
            for n, fn in fns:
                try:
                    results[n] = fn()
                except Exception as e:  # noqa: BLE001 - one scenario's trouble is its own result
                    r = Result(n, n, "", "", "", time.time())
                    r.problems.append(f"could not run: {type(e).__name__}: {e}")
                    results[n] = [r]
                    log(f"{n}: could not run: {e}")

        lanes = [
            ("heap", [("S3a", lambda: _c3_heap(wd, cl, jar, claims, st.watch))]),
            ("threads", [("S3b", lambda: _c3_threads(wd, cl, jar, claims, st.watch))]),
            ("s4-s5", [("S4c", lambda: _c4_query_dies(wd, cl, claims, st.watch)),
                       ("S5", lambda: _c5_codecache(wd, cl, claims, st.watch))]),
        ]
        threads = [threading.Thread(target=lane, args=lane_args, daemon=True) for lane_args in lanes]
        for t in threads:
            t.start()
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            if busy.proc.poll() is not None:
                base.problems.append(f"the healthy driver exited ({busy.proc.returncode})")
                break
            time.sleep(2)
        base.ended_at = time.time()
        for metric in ("spark_streaming_state_rows", "spark_driver_jvm_heap_used_bytes", "jvm_threads_live",
                       "jvm_codecache_used_bytes", "jvm_memory_space_used_bytes", "livy_sessions"):
            if not st.prom.query(f"count_over_time({metric}[{int(minutes * 60)}s])"):
                base.problems.append(f"Prometheus has no {metric}: the silence would prove nothing")
        if not st.prom.query(f'count_over_time(jvm_threads_live{{app_id="{busy.app_id}"}}[{int(minutes * 60)}s])'):
            base.problems.append("Prometheus has no series of the healthy service's executor JVM")
        base.notes.append(f"short applications: {stats.get('ok', 0)} ran to completion, "
                          f"{stats.get('failed', 0)} failed, {stats.get('stuck', 0)} did not end in 5 minutes")
        if not stats.get("ok"):
            base.problems.append("no short application ran to completion")
        # the baseline's alerts: everything no other scenario claims, up to its end
        ended = base.ended_at
        evaluate(base, _View(st.watch, lambda lb: claims.owner(lb) in (None, "baseline")), [], forbid_all=True)
        base.alerts = [a for a in base.alerts if a.fired_at is None or a.fired_at <= ended]
        base.problems = [p for p in base.problems if "false positive" not in p] + [
            f"{a.alertname} fired ({' '.join(f'{k}={v}' for k, v in sorted(a.labels.items()) if k in ('target', 'process', 'app_id', 'app_name', 'pid'))}): a false positive"
            for a in base.alerts if a.fired_at is not None]
        base.ok = not base.problems
        base.ended_at = ended
        stop.set()
        for t in threads:
            while t.is_alive():
                t.join(1)
    order = ["S3a", "S3b", "S4c", "S5"]
    return [r for n in order for r in results.get(n, [])] + [base]


#: every scenario by its command-line name; `all` runs those of lab.__main__.PHASES
SCENARIOS: Dict[str, Callable[[Path], List[Result]]] = {
    "s1": s1,
    "s2": s2,
    "s4": s4,
    "cluster": cluster,
    "s3-heap": s3_heap,
    "s3-threads": s3_threads,
    "s5": s5,
    "baseline": baseline,
}
