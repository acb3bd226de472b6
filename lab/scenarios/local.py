"""The scenarios that each run on their own: S1 and S2 (Livy, its recovery store
in ZooKeeper, a JVM standing in for the Livy server), S4 (a local-mode driver
whose query stalls, then dies), and the local-mode versions of S3, S5 and the
healthy baseline (the cluster, :mod:`lab.scenarios.cluster`, supersedes them;
they run when named)."""

from __future__ import annotations

import json
import os
import pwd
import re
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import List, Optional

from testbed.jvm import compile_apps, os_user, running_jvm, threads_of_uid
from testbed.livy_server import livy_server
from testbed.zookeeper import ZooKeeperServer, batch_record, write_livy_store

from ..core import AlertWatch, Expect, LabError, Result, evaluate, log, tail, wait_for
from .common import SparkDriver, Stack, busy_livy, jcmd, shared_dir, spark_targets

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
                raise LabError("the S5 driver exited" + tail(drv.log))
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
        seen = [f.labels for f in list(st.watch.fired.values())]
        st.watch.wait(["SparkTargetDown"], 120)
        # the alerts of the first case are not those of the second: those the watch saw since
        evaluate(dead, st.watch.view(lambda labels: labels not in seen), [Expect("SparkTargetDown", "after")])
        return [stall, dead]


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
        t = threading.Thread(target=busy_livy, args=(srv, stop), daemon=True)
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
