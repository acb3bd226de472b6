"""The cluster: the signatures where they happened, in the executors of a real
standalone cluster, next to a busy healthy service and short applications
coming and going. One cluster, one exporter (discover: standalone, JVM
discovery) and one Prometheus for all of them, as in production; each alert
belongs to the scenario whose application (app_id) or JVM (pid) it names, and
everything else to the baseline, which must stay silent."""

from __future__ import annotations

import os
import re
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Dict, List, Optional

import psutil

from testbed.livy_server import livy_server
from testbed.spark import loopback_env

from ..core import (
    SPARK_PYTHON,
    TIME_SCALE,
    VIEW_LABEL,
    AlertWatch,
    View,
    Expect,
    LabError,
    Result,
    evaluate,
    free_port,
    kill,
    log,
    start,
    tail,
    wait_for,
)
from .common import SparkDriver, Stack, busy_livy, jcmd, shared_dir

#: the cluster's long baseline: the lab's rules at 1/120, so that the same minutes are twice as
#: many production hours (15 minutes: 30 hours) as at 1/60
LONG_VIEW = View("long", 1 / 120)

EXECUTOR_MEMORY = "512m"
HEAP_LEAK_BYTES = 40 * 1024  # per row, 20 rows/s: about 0.8 MB/s in a 512 MB executor
THREAD_LEAK_EVERY = 10  # one thread every 10th row, 20 rows/s: 2 threads/s
THREAD_HEADROOM = 900  # pids.max of the leaking executor's cgroup: its threads + this
CODE_CACHE = "-XX:ReservedCodeCacheSize=32m -XX:-SegmentedCodeCache -XX:-UseCodeCacheFlushing"
PIDS_CGROUP = Path("/sys/fs/cgroup/pids")


#: the jar of testbed/sparkjars (set by :func:`cluster`)
_JAR: List[Path] = []


def _cluster_conf(extra: Optional[Dict[str, str]] = None) -> List[str]:
    # no periodic GC in the executors: Spark's spark.cleaner.periodicGC runs in the driver only,
    # and production executors have nothing else that forces a collection (issue 21, item 3)
    conf = {"spark.executor.memory": EXECUTOR_MEMORY, "spark.executor.cores": "1", "spark.cores.max": "1",
            "spark.deploy.maxExecutorRetries": "20"}
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

    def of(self, *owners: Optional[str], view: Optional[str] = None):
        """A filter of the alerts whose owner (:meth:`owner`: a scenario, or None for no
        one's) is one of ``owners``, as the lab's rules (or ``view``'s) saw them."""
        return lambda labels: labels.get(VIEW_LABEL) == view and self.owner(labels) in owners

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


def _executor(drv: SparkDriver, timeout: float = 180) -> int:
    from testbed.cluster import executor_pids

    pids = wait_for(f"the executor of {drv.app_id}", lambda: executor_pids(drv.app_id or ""), timeout,
                    alive=drv.proc, logfile=drv.log)
    return pids[0]


def _executor_logs(cl, app_id: str, pid: int) -> List[Path]:
    try:
        args = psutil.Process(pid).cmdline()
        eid = args[args.index("--executor-id") + 1]
    except (psutil.Error, ValueError, IndexError):
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
        if not psutil.pid_exists(pid):
            res.failure_at = time.time()
            line = _grep(logs, pattern)
            res.notes.append(f"executor {pid} exited" + (f": {line}" if line else " (no OutOfMemoryError in its log)"))
            break
        if drv.proc.poll() is not None:
            raise LabError(f"the driver of {drv.app_id} exited" + tail(drv.log))
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
        # the early warning of a leak that kills within half a day: a quarter of its course ahead
        # (issue 21). JvmHeapFloorRisingWithFlatState (6 h apart, then `for: 1h`) is the slow
        # leaks' warning; it usually fires here too, shown "(also)", but is not required: a leak
        # this fast may end before its windows fill
        expects = [Expect("JvmHeapFloorPredictedFull", min_lead_share=0.25)]
        return [evaluate(res, watch.view(claims.of("S3a")), expects)]


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
        threads = psutil.Process(pid).num_threads()
        (cg / "pids.max").write_text(str(threads + THREAD_HEADROOM))
        (cg / "cgroup.procs").write_text(str(pid))
        res.notes.append(f"executor {pid}: {threads} threads, pids.max {threads + THREAD_HEADROOM}")
        _wait_executor_failure(res, cl, drv, pid, r"unable to create (new )?native thread", 900)
        expects = [Expect("JvmThreadsPredictedToHitLimit", min_lead_share=0.25), Expect("JvmThreadsLeaking")]
        return [evaluate(res, watch.view(claims.of("S3b")), expects)]


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
        watch.wait(["SparkStreamingQueryTerminated"], 120, stop=lambda: drv.proc.poll() is not None,
                   keep=claims.of("S4c"))
        if drv.proc.poll() is not None:
            res.problems.append("the driver died with its query")
        return [evaluate(res, watch.view(claims.of("S4c")),
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
                                            *_cluster_conf({"spark.executor.extraJavaOptions": CODE_CACHE})])
        stack.callback(drv.stop)
        drv.wait_ready()
        res.trouble_at = time.time()
        pid = _executor(drv)
        claims.claim("S5", drv.app_id, [pid, drv.jvm_pid()])
        logs = _executor_logs(cl, drv.app_id or "", pid)
        end = time.monotonic() + 720
        n = 0
        while time.monotonic() < end and res.failure_at is None:
            if drv.proc.poll() is not None or not psutil.pid_exists(pid):
                raise LabError("the S5 driver or its executor exited" + tail(drv.log))
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
        watch.wait(["JvmJitCompilationDisabled"], 90, keep=claims.of("S5"))
        view = watch.view(claims.of("S5"))
        # the ticket a quarter of the fill ahead; the page at least an hour (production) ahead
        return [evaluate(res, view, [Expect("JvmCodeCachePredictedFull", min_lead_share=0.25),
                                     Expect("JvmCodeCacheNearlyFull", min_lead_hours=1),
                                     Expect("JvmJitCompilationDisabled", "after")])]


#: what the cluster's spark-defaults.conf would give every application: the metrics sources
#: sparkwatch reads (the lab's own applications set them in lab/apps/spark_app.py)
SHORT_APP_DEFAULTS = {
    "spark.sql.streaming.metricsEnabled": "true",
    "spark.metrics.conf.*.source.jvm.class": "org.apache.spark.metrics.source.JvmSource",
}


def _short_apps(cl, stop: threading.Event, claims: _Claims, wd: Path, stats: Dict[str, int]) -> None:
    """pyspark's own examples submitted to the cluster one after the other: short applications."""
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


#: the busy service's trigger, seconds: lab/lab-rules.yml's trigger_interval for
#: SparkStreamingBatchSlowerThanTrigger
BUSY_TRIGGER_S = 10


def cluster(wd: Path, minutes: float = 15.0) -> List[Result]:
    """Every cluster scenario at once on one standalone cluster, next to the healthy baseline,
    which is judged twice: by the lab's rules (1/60) and by the same rules at 1/120
    (:data:`LONG_VIEW`), which see the same minutes as twice as many production hours."""
    from testbed.cluster import lab_udf_jar, standalone_cluster

    trouble = (f"on the standalone cluster, a busy long-running service (a stateful streaming query, a mix of "
               f"SQL queries, caching; its executor a plain G1 JVM), pyspark's examples submitted one after the "
               f"other (short applications), and a busy Livy whose clients delete finished sessions, watched "
               f"for {minutes:g} minutes through discover: standalone and JVM discovery")
    base = Result("baseline", f"healthy service on the cluster, {minutes / 60 / TIME_SCALE:g} production hours",
                  trouble=trouble + f" (the lab's rules: 1/{1 / TIME_SCALE:g})", failure="none",
                  lead_meaning="no alert may fire (false-positive check)", started_at=time.time())
    hours = minutes * LONG_VIEW.hours_per_minute
    long_base = Result("baseline-long", f"healthy service on the cluster, {hours:g} production hours",
                       trouble=trouble + f" (the same rules at 1/{1 / LONG_VIEW.time_scale:g}: "
                                         f"{hours:g} production hours)", failure="none",
                       lead_meaning="no alert may fire (false-positive check)", started_at=base.started_at)
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
        st = Stack(stack, wd, cfg, views=(LONG_VIEW,))
        # two cores: the SQL mix must not queue the streaming query's tasks (FAIR pools)
        # a 10 s trigger (lab-rules.yml's trigger_interval): the scenarios beside it load the two
        # cores so much that 5 s batches fell behind a 5 s trigger, truly
        busy = SparkDriver(wd, "busy", ["--master", cl.master_url, "--trigger-s", str(BUSY_TRIGGER_S),
                                        *_cluster_conf({"spark.executor.cores": "2", "spark.cores.max": "2",
                                                        "spark.scheduler.mode": "FAIR"})])
        stack.callback(busy.stop)
        busy.wait_ready()
        claims.claim("baseline", busy.app_id, [busy.jvm_pid()])
        base.trouble_at = long_base.trouble_at = time.time()
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
        span = f"{int(minutes * 60)}s"
        gcs = st.prom.query(f'sum by (collector) (increase(jvm_gc_collections_total{{app_id="{busy.app_id}", '
                            f'executor_id!=""}}[{span}]))')
        base.notes.append("the healthy service's executor (G1, no forced collection): " + (", ".join(
            f"{float(g['value'][1]):.0f} {g['metric'].get('collector', '?')}" for g in gcs) or "no collection read"))
        if not gcs:
            base.problems.append("Prometheus has no collections of the healthy service's executor")
        long_base.problems += base.problems + _rules_evaluated(st.prom, LONG_VIEW.name)
        long_base.notes += base.notes
        long_base.ended_at = base.ended_at
        for r, view in ((base, None), (long_base, LONG_VIEW.name)):
            _judge_baseline(r, st.watch, claims, view)
        stop.set()
        for t in threads:
            while t.is_alive():
                t.join(1)
    order = ["S3a", "S3b", "S4c", "S5"]
    return [r for n in order for r in results.get(n, [])] + [base, long_base]


def _rules_evaluated(prom, view: str) -> List[str]:
    """Problems, if the rules of ``view`` were not all loaded and evaluated without error."""
    groups = prom.rule_groups()
    mine = [g for g in groups if g.get("file", "").endswith(f".{view}.yml")]
    if not mine:
        return [f"Prometheus loaded no rules of the {view} view: its silence would prove nothing"]
    bad = [f"{r['name']}: {r.get('lastError')}" for g in mine for r in g.get("rules", [])
           if r.get("health") != "ok" or r.get("lastError")]
    return [f"rules of the {view} view not evaluated: {', '.join(bad[:5])}"] if bad else []


def _judge_baseline(base: Result, watch: AlertWatch, claims: _Claims, view: Optional[str]) -> None:
    """The baseline's alerts (of the lab's rules, or of ``view``): everything no other
    scenario claims, up to the baseline's end; each is a false positive."""
    ended = base.ended_at
    evaluate(base, watch.view(claims.of(None, "baseline", view=view)), [], forbid_all=True)
    base.alerts = [a for a in base.alerts if a.fired_at is None or a.fired_at <= ended]
    base.problems = [p for p in base.problems if "false positive" not in p] + [
        f"{a.alertname} fired ({' '.join(f'{k}={v}' for k, v in sorted(a.labels.items()) if k in ('target', 'process', 'app_id', 'app_name', 'pid'))}): a false positive"
        for a in base.alerts if a.fired_at is not None]
    base.ok = not base.problems
    base.ended_at = ended
