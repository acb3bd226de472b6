#!/usr/bin/env python3
"""The jvm target of a host where a local user has left garbage perf-data files.

Any local user can create ``/tmp/hsperfdata_<self>/<pid>`` for each of their
own processes. This starts ``--jvms`` small real JVMs (root's) and, as a
throwaway user, ``--files`` minus that many ``sleep`` processes named ``java``,
each with a perf-data file of one of the kinds of testbed/hsperf_garbage.py in
turn: random bytes, HotSpot's magic with another version, a real prologue
over random bytes, truncations, a 16 MiB file, a named pipe, a symbolic link,
an empty file, zeros, a real file not yet accessible, byte-for-byte copies of
a real JVM's file. Then it runs the real jvm collector with the default
configuration (``discover: true``) in this process, as the exporter does,
``--scrapes`` times under a ``--deadline`` (each scrape with its own pass over
/proc), and prints:

- wall time per scrape: the first (nothing known yet about the files) and the
  others (median, p95, max), CPU time per scrape;
- how many scrapes reported every real JVM, how many ended down (timeout);
- warnings logged per scrape, and the files skipped in one scrape by reason.

Goals: every scrape within the deadline (2 s), every real JVM reported in
every scrape, at most one warning per scrape.

    flock /tmp/sparkwatch-heavy.lock .venv/bin/python benchmarks/bench_perfdata.py
        [--files 1000] [--jvms 4] [--scrapes 20] [--deadline 2] [--tree DIR]

``--tree DIR`` runs the collector of another source tree (a checkout of an
older commit) against the same files, for a before/after figure. Needs root (a
user is created and removed) and a JDK.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000, help="perf-data files of live processes, real ones included")
    ap.add_argument("--jvms", type=int, default=4)
    ap.add_argument("--scrapes", type=int, default=20)
    ap.add_argument("--deadline", type=float, default=2.0)
    ap.add_argument("--tree", help="the source tree whose collector runs (default: this one)")
    a = ap.parse_args()
    import tempfile

    from testbed import hsperf_garbage as garbage
    from testbed.jvm import compile_apps, have_java, os_user, running_jvm

    if a.tree:  # its exporter package is imported instead of this one's (the testbed stays this one's)
        sys.path.insert(0, str(Path(a.tree).resolve()))
    from sparkwatch.collector import MetricSet, ScrapeContext, TargetError
    from sparkwatch.collectors.jvm import JvmCollector, JvmTarget

    if not have_java():
        print("needs a JDK (java, javac, jcmd)")
        return 2
    if os.geteuid() != 0:
        print("needs root (creates a user)")
        return 2
    import sparkwatch

    print(f"collector: {Path(sparkwatch.__file__).resolve().parent.parent}")

    warnings = []

    class Count(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())

    handler = Count(logging.WARNING)
    logging.getLogger().addHandler(handler)

    ok = True
    with ExitStack() as stack:
        classes = compile_apps(Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-perfdata-"))))
        t0 = time.monotonic()
        jvms = [stack.enter_context(running_jvm(classes, "Workload", args=[f"bench-perfdata-{i}"],
                                                jvm_opts=["-Xmx32m", "-XX:+UseSerialGC",
                                                          "-XX:TieredStopAtLevel=1"]))
                for i in range(a.jvms)]
        jvms[0].command("counts")  # idle: its file is copied whole
        user = stack.enter_context(os_user("swbench"))
        sleeps = stack.enter_context(garbage.sleepers(user, a.files - a.jvms, argv0="java"))
        made = stack.enter_context(garbage.garbage_dir(user, [p.pid for p in sleeps], garbage.KINDS,
                                                       f"/tmp/hsperfdata_root/{jvms[0].pid}"))
        kinds = {k: list(made.values()).count(k) for k in garbage.KINDS}
        print(f"{a.jvms} real JVMs and {len(made)} garbage files of live processes ready in "
              f"{time.monotonic() - t0:.0f}s; host: {os.cpu_count()} CPUs, "
              f"{len(psutil.pids())} processes; garbage: "
              + ", ".join(f"{n} {k}" for k, n in kinds.items()))
        real = {str(j.pid) for j in jvms}

        c = JvmCollector(JvmTarget(discover=True))
        walls, cpus, down, complete, per_scrape_warnings = [], [], 0, 0, []
        skipped_once = None
        for i in range(a.scrapes):
            before = len(warnings)
            out = MetricSet({"target": c.name})
            c0, w0 = time.process_time(), time.perf_counter()
            try:
                c.collect(out, ScrapeContext.within(a.deadline))
                failed = None
            except TargetError as e:
                failed = e.reason
            wall = time.perf_counter() - w0
            walls.append(wall)
            cpus.append(time.process_time() - c0)
            per_scrape_warnings.append(len(warnings) - before)
            if failed or wall > a.deadline:
                down += 1
                continue
            # the pid label is empty unless two JVMs would share their series (one real JVM: empty),
            # so the real JVMs are told by their main class; a garbage copy reported as one of them
            # would make the count too high, a lost one too low
            reported = [key for d, ss in out.samples.items() if d.name == "jvm" for key in ss
                        if key[4] == "Workload"]
            complete += len(reported) == len(real) and {k[3] for k in reported if k[3]} <= real
            if skipped_once is None:
                skipped_once = {key[0]: int(v) for d, ss in out.samples.items()
                                if d.name == "jvm_perfdata_files_skipped_total" for key, v in ss.items()}

    logging.getLogger().removeHandler(handler)
    rest = sorted(walls[1:]) or walls
    p95 = rest[min(len(rest) - 1, math.ceil(0.95 * len(rest)) - 1)]
    print(f"{a.scrapes} scrapes, deadline {a.deadline:g}s:")
    print(f"  wall: first {walls[0] * 1000:.0f} ms; the others median {statistics.median(rest) * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms, max {max(rest) * 1000:.0f} ms; "
          f"CPU median {statistics.median(cpus) * 1000:.0f} ms")
    print(f"  every real JVM reported: {complete} of {a.scrapes} scrapes; down (timeout): {down}")
    print(f"  warnings logged: {sum(per_scrape_warnings)} in {a.scrapes} scrapes "
          f"(first scrape {per_scrape_warnings[0]}, at most {max(per_scrape_warnings)} in one)")
    if skipped_once is not None:
        print("  files skipped in the first complete scrape: "
              + ", ".join(f"{n} {r}" for r, n in sorted(skipped_once.items())))
    if warnings:
        print(f"  e.g. {warnings[0][:300]}")
    ok &= down == 0 and complete == a.scrapes and max(walls) < a.deadline and max(per_scrape_warnings) <= 1
    print("all goals met" if ok else "GOAL NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
