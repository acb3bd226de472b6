#!/usr/bin/env python3
"""The jvm target of a host running many JVMs (a Kubernetes node with dozens of
executors).

Starts ``--jvms`` small real JVMs (testbed/jvmapps/Workload, 32 MB heap, serial
GC, C1 only; each one's command line carries a token of this run), then runs
the real jvm collector on them in this process, as the exporter does, with one
``match`` entry for the token:

- without attach: ``--scrapes`` scrapes (each with its own pass over /proc, as
  every scrape has), wall and CPU time per scrape, series, errors;
- with ``attach: true`` and ``attach_interval`` (``--attach-interval``, default
  60 s): ``--scrapes`` scrapes, one every ``--scrape-interval`` seconds, and
  how many times the collector attached to
  each JVM (``Compiler.codecache`` through the attach socket), counted by
  wrapping the attach call; at most once per JVM per interval is the goal;
- with ``--profile``: the ten costliest functions of a scrape without attach.

    flock /tmp/sparkwatch-heavy.lock .venv/bin/python benchmarks/bench_jvm_fleet.py
        [--jvms 200] [--scrapes 20] [--attach-interval 60] [--scrape-interval 0] [--deadline 10] [--profile]

Needs a JDK and about 40 MB of memory per JVM; starting 200 JVMs takes a minute
or two on 2 cores. Every JVM started is killed at the end (also on failure).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sparkwatch.collector import MetricSet, ScrapeContext  # noqa: E402
from sparkwatch.collectors import jvm as jvm_collector  # noqa: E402
from sparkwatch.collectors.jvm import JvmCollector, JvmTarget  # noqa: E402
from testbed.jvm import compile_apps, have_java  # noqa: E402
from testbed.procs import stop_process_group  # noqa: E402

JVM_OPTS = ["-Xms8m", "-Xmx32m", "-Xss256k", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-XX:ReservedCodeCacheSize=16m", "-XX:CICompilerCount=1"]


def start_jvms(classes: Path, n: int, token: str, parallel: int = 4):
    """n Workload JVMs, each started and ready ("ready pid=N"); returns the Popen objects."""
    procs = []

    def one(i):
        p = subprocess.Popen(["java", *JVM_OPTS, "-cp", str(classes), "Workload", f"{token}-{i}"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             start_new_session=True, cwd="/")
        procs.append(p)
        line = p.stdout.readline()
        if not re.search(r"pid=(\d+)", line or ""):
            raise RuntimeError(f"JVM {i} did not start: {line!r}")
        return p

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(one, range(n)))
    return procs


def kill_all(procs):
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: stop_process_group(p, grace=0), procs))


def scrape(c: JvmCollector, deadline: float):
    out = MetricSet({"target": c.name})
    c0, t0 = time.process_time(), time.perf_counter()
    c.collect(out, ScrapeContext.within(deadline))
    return time.perf_counter() - t0, time.process_time() - c0, out


def jvms_of(out: MetricSet) -> int:
    return int(next(iter(out.samples[jvm_collector.PROCESSES].values())))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jvms", type=int, default=200)
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--attach-interval", type=float, default=60.0)
    ap.add_argument("--scrape-interval", type=float, default=0.0,
                    help="seconds from one attach scrape's start to the next (as Prometheus' scrape_interval)")
    ap.add_argument("--deadline", type=float, default=10.0)
    ap.add_argument("--profile", action="store_true")
    a = ap.parse_args()
    if not have_java():
        print("needs a JDK (java, javac, jcmd)")
        return 2

    token = f"benchfleet{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-jvm-fleet-"))
    procs = []
    ok = True
    try:
        classes = compile_apps(tmp / "classes")
        t0 = time.monotonic()
        procs = start_jvms(classes, a.jvms, token)
        print(f"{a.jvms} JVMs started in {time.monotonic() - t0:.0f}s; host: {os.cpu_count()} CPUs, "
              f"{len(psutil.pids())} processes")
        match = rf"Workload {token}-\d+$"

        c = JvmCollector(JvmTarget(name="fleet", match=match, attach=False))
        scrape(c, a.deadline)  # warm-up
        walls, cpus = [], []
        for _ in range(a.scrapes):
            wall, cpu, out = scrape(c, a.deadline)
            walls.append(wall)
            cpus.append(cpu)
        n = jvms_of(out)
        print(f"attach: false, {a.scrapes} scrapes: {n} JVMs read, {len(out)} series, errors {sorted(set(out.errors)) or '-'}")
        print(f"  wall per scrape: median {statistics.median(walls) * 1000:.0f} ms, max {max(walls) * 1000:.0f} ms; "
              f"CPU per scrape: median {statistics.median(cpus) * 1000:.0f} ms "
              f"({statistics.median(cpus) / max(1, n) * 1000:.2f} ms per JVM)")
        ok &= n == a.jvms and statistics.median(walls) < 1.0 and not out.errors

        if a.profile:
            pr = cProfile.Profile()
            pr.enable()
            scrape(c, a.deadline)
            pr.disable()
            pstats.Stats(pr).sort_stats("tottime").print_stats(10)

        # attach: count the attaches per JVM
        attaches = {}
        real_jcmd = jvm_collector.hs_attach.jcmd

        def counting_jcmd(pid, *args, **kw):
            attaches[pid] = attaches.get(pid, 0) + 1
            return real_jcmd(pid, *args, **kw)

        jvm_collector.hs_attach.jcmd = counting_jcmd
        try:
            ca = JvmCollector(JvmTarget(name="fleet-attach", match=match, attach=True,
                                        attach_interval=a.attach_interval))
            rows = []
            t_start = time.monotonic()
            for i in range(a.scrapes):
                before = sum(attaches.values())
                wall, cpu, out = scrape(ca, a.deadline)
                rows.append((wall, cpu, sum(attaches.values()) - before, len(out), sorted(set(out.errors))))
                if i + 1 < a.scrapes:
                    time.sleep(max(0.0, t_start + (i + 1) * a.scrape_interval - time.monotonic()))
            elapsed = time.monotonic() - t_start
        finally:
            jvm_collector.hs_attach.jcmd = real_jcmd
        print(f"attach: true, attach_interval {a.attach_interval:.0f}s, {a.scrapes} scrapes in {elapsed:.0f}s:")
        for i, (wall, cpu, n_att, n_series, errs) in enumerate(rows):
            if i < 3 or i == len(rows) - 1 or n_att:
                print(f"  scrape {i + 1:3d}: {wall * 1000:6.0f} ms wall, {cpu * 1000:5.0f} ms CPU, {n_att:3d} attaches, "
                      f"{n_series} series, errors {errs or '-'}")
        most = max(attaches.values()) if attaches else 0
        allowed = 1 + int(elapsed // a.attach_interval) if a.attach_interval > 0 else a.scrapes
        print(f"  attaches: {sum(attaches.values())} in all, to {len(attaches)} JVMs, at most {most} per JVM "
              f"(allowed: {allowed} per JVM in {elapsed:.0f}s)")
        later = [r[0] for r in rows[1:]] or [rows[0][0]]
        print(f"  wall per scrape after the first: median {statistics.median(later) * 1000:.0f} ms")
        ok &= most <= allowed and len(attaches) == a.jvms
    finally:
        kill_all(procs)
        shutil.rmtree(tmp, ignore_errors=True)
    print("all goals met" if ok else "GOAL NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
