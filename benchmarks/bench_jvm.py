#!/usr/bin/env python3
"""What the jvm collector costs per JVM.

Starts a small JVM (testbed/jvmapps/Workload), then measures:
  - reading and parsing its perf-data file (what every scrape does), against
    `jcmd <pid> PerfCounter.print` for the same counters;
  - one attach: the first (starts the JVM's attach listener) and later ones
    (Compiler.codecache over the existing socket);
  - the /proc pass (once per scrape) and the process stats of one JVM;
  - a whole scrape of one JVM by the collector, without and with attach.

Usage: .venv/bin/python benchmarks/bench_jvm.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sparkwatch import procstats  # noqa: E402
from sparkwatch.collector import MetricSet, ScrapeContext  # noqa: E402
from sparkwatch.collectors.jvm import JvmCollector, JvmTarget  # noqa: E402
from sparkwatch.hotspot import attach, perfdata  # noqa: E402
from testbed.jvm import APPS  # noqa: E402
from testbed.procs import stop_process_group  # noqa: E402

COUNTERS = ("java.cls.loadedClasses", "java.cls.sharedLoadedClasses", "java.cls.unloadedClasses",
            "java.threads.live", "java.threads.daemon", "sun.ci.nmethodCodeSize")


def start_jvm(classes: str):
    p = subprocess.Popen(["java", "-Xmx128m", "-cp", classes, "Workload", "bench"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = p.stdout.readline()
    pid = int(re.search(r"pid=(\d+)", line).group(1))
    return p, pid


def timeit(fn, rounds):
    fn()
    t = time.perf_counter()
    for _ in range(rounds):
        fn()
    return (time.perf_counter() - t) / rounds


def fmt(s):
    return f"{s * 1e6:9.0f} µs" if s < 0.01 else f"{s * 1e3:9.1f} ms"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=200)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-jvm-")
    subprocess.run(["javac", "-d", tmp] + [str(p) for p in APPS.glob("*.java")],
                   check=True)
    proc, pid = start_jvm(tmp)
    try:
        path = f"/tmp/hsperfdata_{os.environ.get('USER', 'root') if os.geteuid() else 'root'}/{pid}"
        if not os.path.exists(path):
            import pwd

            path = f"/tmp/hsperfdata_{pwd.getpwuid(os.geteuid()).pw_name}/{pid}"
        pd = perfdata.read_file(path)
        print(f"JVM pid {pid}: perf-data file {os.path.getsize(path)} bytes, {len(pd.values)} counters")

        def read_perf():
            d = perfdata.read_file(path)
            return [d.values[c] for c in COUNTERS]

        t_perf = timeit(read_perf, a.rounds)

        def via_jcmd():
            out = subprocess.run(["jcmd", str(pid), "PerfCounter.print"], capture_output=True, text=True).stdout
            return [line for line in out.splitlines() if line.split("=")[0] in COUNTERS]

        t_jcmd = timeit(via_jcmd, max(3, a.rounds // 40))

        # the first attach of a fresh JVM starts its listener
        proc2, pid2 = start_jvm(tmp)
        try:
            t = time.perf_counter()
            attach.jcmd(pid2, "Compiler.codecache", timeout=10)
            t_first = time.perf_counter() - t
        finally:
            stop_process_group(proc2, grace=0)
        t_attach = timeit(lambda: attach.parse_codecache(attach.jcmd(pid, "Compiler.codecache", timeout=10)),
                          a.rounds // 4)
        t_snap = timeit(procstats.host_snapshot, max(5, a.rounds // 10))
        snap = procstats.host_snapshot()
        t_pstats = timeit(lambda: procstats.process_stats(pid, snap), a.rounds // 4)

        def scrape(att):
            c = JvmCollector(JvmTarget(name="bench", match=r"Workload bench$", attach=att, attach_interval=0))

            def once():
                out = MetricSet()
                c.collect(out, ScrapeContext.within(10))
                assert not out.errors, out.errors
                return out

            n = len(once())
            return timeit(once, max(5, a.rounds // 10)), n

        t_scrape, n_samples = scrape(False)
        t_scrape_att, n_samples_att = scrape(True)
        nprocs = len(snap.procs)
    finally:
        stop_process_group(proc, grace=0)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"read + parse the perf-data file                 {fmt(t_perf)}")
    print(f"jcmd <pid> PerfCounter.print (same counters)    {fmt(t_jcmd)}   ({t_jcmd / t_perf:.0f}x)")
    print(f"attach, first (starts the listener)             {fmt(t_first)}")
    print(f"attach, Compiler.codecache (listener running)   {fmt(t_attach)}")
    print(f"/proc pass, once per scrape ({nprocs} processes)     {fmt(t_snap)}")
    print(f"process stats of one JVM                        {fmt(t_pstats)}")
    print(f"collector, one JVM, attach: false ({n_samples} samples) {fmt(t_scrape)}")
    print(f"collector, one JVM, attach: true ({n_samples_att} samples)  {fmt(t_scrape_att)}")


if __name__ == "__main__":
    main()
