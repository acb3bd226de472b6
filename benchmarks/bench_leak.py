#!/usr/bin/env python3
"""Does the exporter leak? Many scrapes of a realistic configuration.

Starts, each in a process of its own:

- the recorded answers of real Spark 3.5 and 4.0 drivers (tests/data), served
  as one UI holding both applications (a history-server view), and a YARN
  ResourceManager stand-in (testbed/yarn.py) whose two running applications
  are those drivers behind its web proxy;
- the Livy stand-in (testbed/livy_server.py) holding ``--livy-sessions``
  sessions (70% succeeded, 10% dead, the rest running or idle);
- one small real JVM (testbed/jvmapps/Workload);
- the exporter (``python -m sparkwatch``) with a spark target for the UI, a spark
  target with ``discover: yarn``, a livy target, and a jvm target matching the
  JVM with ``attach: true``; with ``--discover`` also a ``jvm`` entry with
  ``discover: true`` (every JVM of the host: on a shared machine the other
  JVMs come and go, and so does the memory their series need).

Then it scrapes ``GET /metrics`` ``--scrapes`` times (default 10,000), one
after another, and samples the exporter process (psutil) at scrape 1, 100,
1,000 and every 1,000th: resident memory, threads, open descriptors. Prints
the samples, the growth of each between scrape 1,000 and the last (the goal:
RSS under 1%, threads and descriptors flat), and the exporter's CPU time per
scrape and per 1,000 series exposed over the same span.

Memory that Python frees but glibc's malloc keeps in the per-thread arenas of
the scrape's threads shows as RSS growth too (fragmentation, not objects that
live on); the exporter therefore limits itself to two malloc arenas
(``sparkwatch.cli.limit_malloc_arenas``) unless ``MALLOC_ARENA_MAX`` is set:
``--malloc-arena-max N`` runs it with ``MALLOC_ARENA_MAX=N`` (e.g. 64, glibc's
limit on this machine's 2 cores being 16) to see the difference. ``--exporter-tree`` runs the exporter of another source
tree (e.g. ``git archive`` of an older commit) against the same targets.

    .venv/bin/python benchmarks/bench_leak.py [--scrapes 10000] [--livy-sessions 1000] [--discover]
        [--malloc-arena-max N] [--exporter-tree DIR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testbed.exporter import count_series, exporter_process  # noqa: E402
from testbed.procs import stop_process_group  # noqa: E402


def serve_spark() -> int:
    """(--serve) The Spark UI and the YARN stand-in; prints both URLs, serves until stdin closes."""
    from testbed.spark import ReplayServer, load_recording, merged_routes, recording_dirs, routes_from_recording
    from testbed.yarn import YarnCluster

    dirs = recording_dirs()
    with ReplayServer(merged_routes(dirs)) as ui, YarnCluster(security=True) as rm:
        for i, d in enumerate(dirs):
            rm.add_app(f"app{i}", routes=routes_from_recording(d))
        print(ui.url, rm.url, flush=True)
        sys.stdin.read()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scrapes", type=int, default=10_000)
    ap.add_argument("--livy-sessions", type=int, default=1000)
    ap.add_argument("--discover", action="store_true", help="also watch every JVM of the host")
    ap.add_argument("--malloc-arena-max", type=int, default=None,
                    help="run the exporter with MALLOC_ARENA_MAX set (glibc malloc arenas)")
    ap.add_argument("--exporter-tree", default=str(ROOT),
                    help="the source tree whose exporter runs (to compare two versions; default: this one)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        return serve_spark()

    children = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-leak-"))
    try:
        spark = subprocess.Popen([sys.executable, __file__, "--serve"], cwd=str(ROOT), stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, start_new_session=True)
        children.append(spark)
        ui_url, rm_url = spark.stdout.readline().split()
        n = a.livy_sessions
        livy = subprocess.Popen([sys.executable, "-m", "testbed.livy_server", "--success", str(n * 7 // 10),
                                 "--dead", str(n // 10), "--running", str(n // 10), "--idle", str(n - n * 9 // 10)],
                                cwd=str(ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                start_new_session=True)
        children.append(livy)
        livy_url = livy.stdout.readline().strip()

        from testbed.jvm import compile_apps

        classes = compile_apps(tmp / "classes")
        token = f"benchleak{uuid.uuid4().hex[:8]}"
        jvm = subprocess.Popen(["java", "-Xmx64m", "-XX:+UseSerialGC", "-cp", str(classes), "Workload", token],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)
        children.append(jvm)
        assert re.search(r"pid=\d+", jvm.stdout.readline() or ""), "the JVM did not start"

        config = {
            "exporter": {"scrape_timeout": 10},
            "spark": [{"name": "ui", "url": ui_url},
                      {"name": "yarn", "url": rm_url, "discover": "yarn"}],
            "livy": [{"name": "livy", "url": livy_url, "page_size": 500}],
            "jvm": [{"name": "workload", "match": rf"Workload {token}$", "attach": True}],
        }
        if a.discover:
            config["jvm"].append({"discover": True})
        env = {} if a.malloc_arena_max is None else {"MALLOC_ARENA_MAX": str(a.malloc_arena_max)}
        with exporter_process(config, tree=a.exporter_tree, env=env, log_level="error") as (base, exp):
            proc = psutil.Process(exp.pid)
            session = requests.Session()
            checkpoints = sorted({1, 100, 1000, *range(1000, a.scrapes + 1, 1000), a.scrapes})
            samples = {}
            t0 = time.monotonic()
            print(f"exporter pid {exp.pid}: spark UI (2 applications), spark discover: yarn (2), livy ({n} sessions), "
                  f"jvm (1 JVM, attach){', jvm discover' if a.discover else ''}")
            print(f"{'scrape':>7} {'elapsed':>8} {'RSS MiB':>9} {'threads':>7} {'fds':>4} {'series':>6} {'CPU s':>7}")
            for i in range(1, a.scrapes + 1):
                r = session.get(base + "/metrics", timeout=30)
                r.raise_for_status()
                if i in checkpoints:
                    text = r.text
                    down = re.findall(r'^sparkwatch_target_up\{[^}]*target="([^"]+)"[^}]*\} 0', text, re.M)
                    time.sleep(0.2)  # the scrape's threads end just after it answered
                    cpu = proc.cpu_times()
                    s = (proc.memory_info().rss, proc.num_threads(), proc.num_fds(), count_series(text),
                         cpu.user + cpu.system)
                    samples[i] = s
                    print(f"{i:7d} {time.monotonic() - t0:7.0f}s {s[0] / 2**20:9.2f} {s[1]:7d} {s[2]:4d} {s[3]:6d} "
                          f"{s[4]:7.1f}{'  DOWN: ' + ','.join(down) if down else ''}", flush=True)
            session.close()
            first = min(1000, a.scrapes)
            (rss0, thr0, fd0, _, cpu0), (rss1, thr1, fd1, series, cpu1) = samples[first], samples[a.scrapes]
            growth = (rss1 - rss0) / rss0 * 100
            print(f"between scrape {first} and {a.scrapes}: RSS {growth:+.2f}% ({(rss1 - rss0) / 2**10:+.0f} KiB), "
                  f"threads {thr1 - thr0:+d}, fds {fd1 - fd0:+d}")
            if a.scrapes > first:
                per_scrape = (cpu1 - cpu0) / (a.scrapes - first)
                print(f"exporter CPU: {per_scrape * 1000:.1f} ms per scrape of {series} series, "
                      f"{per_scrape / series * 1e6:.2f} ms per 1,000 series")
            ok = growth < 1.0 and thr1 == thr0 and fd1 == fd0
            print("all goals met" if ok else "GOAL NOT MET")
            return 0 if ok else 1
    finally:
        for p in reversed(children):
            try:
                p.stdin.close()  # the stand-ins end when their stdin closes
            except OSError:
                pass
            stop_process_group(p, grace=10)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
